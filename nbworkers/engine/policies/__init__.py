"""Policies: small objects that act on a worker's messages at named moments, in the manner of
dramatiq's middleware. Each is one file; the runtime lists them in the order they act.

Every hook runs with the engine's lock held, on the thread where the moment happens, so it
must be quick and must not call user code:

- ``after_enqueue(w, count)``: ``count`` messages were queued for ``w``;
- ``before_run(w, run)``: ``run`` is about to start (a time limit sets its deadline);
- ``after_failure(w, run, trace) -> bool``: ``run`` failed; True means this policy took its
  message (it runs again later), so it does not become a dead letter.

A policy overrides only the hooks it needs: the engine calls, for each moment, just the
policies that override that hook (``Hooks``), so a hook no one uses costs a drain nothing.
"""

from __future__ import annotations

from ...trace import Trace
from ..worker import Run, WorkerState

HOOKS = ("after_enqueue", "before_run", "after_failure")


class RunPolicy:
    """The base of every policy: each hook does nothing."""

    def after_enqueue(self, w: WorkerState, count: int) -> None:
        """``count`` messages were queued for ``w``."""

    def before_run(self, w: WorkerState, run: Run) -> None:
        """``run`` is about to start."""

    def after_failure(self, w: WorkerState, run: Run, trace: Trace) -> bool:
        """``run`` failed (``trace`` says how); True if this policy took its message."""
        return False


class Hooks:
    """For each hook, the bound methods of the policies that override it, in order."""

    def __init__(self, policies: list[RunPolicy]):
        self.policies = list(policies)
        for hook in HOOKS:
            base = getattr(RunPolicy, hook)
            methods = [getattr(p, hook) for p in policies if getattr(type(p), hook) is not base]
            setattr(self, hook, methods)

    def after_failure_took(self, w: WorkerState, run: Run, trace: Trace) -> bool:
        """Call every ``after_failure``; True if one of them took the run's message."""
        took = False
        for hook in self.after_failure:
            took = hook(w, run, trace) or took
        return took
