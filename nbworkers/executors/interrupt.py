"""Stopping a run on a thread: ``RunStopped`` raised in the run's thread at its next bytecode
(CPython's ``PyThreadState_SetAsyncExc``), and only while the handler itself runs.

An exception raised into a thread lands wherever that thread is. Landing in nbworkers' own
code (in a critical section of the engine, an emit half done) would break a lock or lose a
message, so each run thread has one ``Interrupt``, and:

- it is *armed* for a run only while that run's handler runs (``arm`` / ``disarm``, both
  inside the ``try`` that catches what the handler raises);
- ``fire`` raises the exception only while it is armed for that run, not masked, and at most
  once a run, all under the interrupt's own lock, which ``disarm`` takes too: once disarmed,
  nothing more is raised, and the one exception possibly still pending is absorbed there
  (``_land`` lets it land in a loop made for it, and it is dropped);
- an nbworkers call made by the handler (``emit``, ``nw.counts``...) is *masked*
  (``shielded``): no exception is raised inside it (one pending is cleared on the way in), and
  a stop asked meanwhile is raised when the call returns, back in the handler's code.

So the exception is raised at most once a run, and either it lands in the handler's code (or
in the thin wrappers around it: ``arm``, ``disarm``, the handler's call), is absorbed, or never
was raised; the ``try`` around all of it catches it.

A pending exception is never *cleared* with ``PyThreadState_SetAsyncExc(id, NULL)``: CPython
3.11 signals the interpreter's eval breaker for that too, and with no exception left to
handle nothing resets it. From then on every Python call of every thread takes the slow path,
and under a trace function (coverage.py, a debugger) a call loops forever at its first
instruction: the kernel hung (tests/executors/test_interrupt.py reproduces it).
"""

from __future__ import annotations

import ctypes
import functools
import threading
import time

from ..errors import RunStopped

_set_async_exc = ctypes.pythonapi.PyThreadState_SetAsyncExc


class _Local(threading.local):
    interrupt = None  # this run thread's Interrupt (a class default: no failed lookup elsewhere)


thread_local = _Local()


def _raise_in(thread_id: int) -> None:
    """Make RunStopped raise in thread ``thread_id`` at its next check (a call or a loop's
    jump back)."""
    _set_async_exc(ctypes.c_ulong(thread_id), ctypes.py_object(RunStopped))


def _tick() -> None:
    """A Python call: the interpreter checks for an exception raised into this thread on entry."""


def _land() -> None:
    """Let a RunStopped raised into this thread and still pending land (raise) here; if it
    already landed, nothing happens. It lands at this thread's next check, and the interpreter
    signals it again whenever this thread takes the GIL (``sleep(0)`` gives the GIL up): so
    before this returns. Call it inside a ``try``: the first check is on entry, before any
    ``try`` of its own could start."""
    for _ in range(3):
        _tick()
        time.sleep(0)
    _tick()


class Interrupt:
    """The one place an exception may be raised into a run thread from outside."""

    __slots__ = ("fired", "lock", "masked", "run", "thread_id")

    def __init__(self, thread_id: int):
        self.thread_id = thread_id
        self.lock = threading.Lock()
        self.run = None  # the run whose handler runs now (armed), else None
        self.fired = False  # the exception was raised for this run (at most once)
        self.masked = 0  # nbworkers calls of the handler going on (nested)

    def arm(self, run) -> None:
        """The handler of ``run`` is about to run on this thread; if a stop was already
        asked, RunStopped at once (the handler does not start)."""
        # No lock: ``fire`` acts only once ``self.run is run``, set last (a new run object).
        self.fired = False
        self.masked = 0
        self.run = run
        run.interrupt = self  # after: ``fire`` finds it only armed (ordered by the GIL)
        if run.stop is not None:
            raise RunStopped()

    def disarm(self) -> None:
        """The handler returned or raised: nothing is raised into this thread any more (and
        one still pending is absorbed). May itself raise that pending RunStopped once, before
        absorbing it."""
        self.run = None  # from now on a ``fire`` that takes the lock raises nothing
        # The usual case, without taking the lock (a drain's hot path). In this order: a
        # ``fire`` not holding the lock now either ended before (``fired`` says if it raised)
        # or takes it after ``run`` was cleared; one holding it may still raise: wait for it.
        if not self.lock.locked() and not self.fired:
            return
        with self.lock:
            fired = self.fired
        if fired:
            try:
                _land()
            except RunStopped:
                pass  # absorbed: the outcome is "stopped" already (run.stop)

    def fire(self, run) -> bool:
        """Raise RunStopped in this thread if it runs ``run``'s handler (and not inside an
        nbworkers call: then when that call returns). True if raised now."""
        with self.lock:
            if self.run is not run or self.fired or self.masked:
                return False
            self.fired = True
            # Inside the lock: ``disarm`` must not clear before this is raised.
            _raise_in(self.thread_id)
            return True

    def call_masked(self, fn, args, kwargs):
        """``fn(*args, **kwargs)`` with no exception raised into this thread meanwhile; a stop
        asked meanwhile raises RunStopped once it has returned."""
        with self.lock:
            self.masked += 1
            fired_before = self.fired
        if fired_before:
            # Raised before the mask: it landed in the handler already (which may be cleaning
            # up after it), lands here before ``fn`` starts, or is absorbed now. Never in ``fn``.
            try:
                _land()
            except RunStopped:
                pass  # absorbed: the run ends "stopped" anyway (run.stop)
        try:
            return fn(*args, **kwargs)
        finally:
            with self.lock:
                self.masked -= 1
                run = self.run
                stop_now = (
                    not fired_before
                    and not self.fired
                    and not self.masked
                    and run is not None
                    and run.stop is not None
                )
                if stop_now:
                    self.fired = True  # raised here: ``fire`` raises nothing more
            if stop_now:
                raise RunStopped()  # back in the handler's code, the call done


def this_thread() -> Interrupt:
    """The Interrupt of this run thread (made on its first run)."""
    interrupt = thread_local.interrupt
    if interrupt is None:
        interrupt = thread_local.interrupt = Interrupt(threading.get_ident())
    return interrupt


def shielded(fn):
    """``fn`` (a public method of the runtime) made safe to call from a handler running on a
    thread: a stop never lands inside it (see ``Interrupt.call_masked``). Elsewhere, one
    attribute lookup more."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        interrupt = thread_local.interrupt
        if interrupt is None or interrupt.run is None:
            return fn(*args, **kwargs)
        return interrupt.call_masked(fn, args, kwargs)

    return call
