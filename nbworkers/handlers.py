"""Turning a cell, or a plain function, into a handler the runtime can call.

A cell body becomes the body of a real function ``(event, message)`` whose globals are the
notebook's namespace: its assignments stay local to one run, comprehensions and closures see
them, ``global x`` still reaches the notebook, and a last bare expression is returned.
"""

from __future__ import annotations

import ast
import collections
import inspect
import linecache
import os
import re
import types
from collections.abc import Callable
from typing import Any

from . import tracebacks
from .errors import ArgumentTypeError, ArgumentValueError, NBWorkersError, without_our_frames

NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")  # whole names only: fullmatch
# Each worker's and cron's cells, numbered from 1 in the kernel (the number is in their
# filename, which keeps an old version's source readable in its tracebacks).
_versions: collections.Counter[tuple[str, str]] = collections.Counter()


def check_name(name: object) -> str:
    """``name`` if it is a valid worker or cron name, else ArgumentValueError (a ValueError)
    saying what is allowed. The whole name must match: ``'resize\\n'`` is not ``'resize'``."""
    if isinstance(name, str) and NAME_RE.fullmatch(name):
        return name
    raise ArgumentValueError(
        f"{name!r} is not a valid worker name: use 1 to 64 letters, digits, '-', '_' or '.' "
        "(for example 'resize' or 'fetch-prices')"
    )


def format_error(exc: BaseException, *skip_files: str) -> str:
    """The traceback of an exception a handler raised, from the handler's own frame: frames of
    ``skip_files`` and of the function wrappers in this module are left out, and for an
    NBWorkersError (the handler called nbworkers wrongly) every frame inside nbworkers."""
    ours = (__file__, *skip_files)  # (a tuple of two or three: quicker made than a set)
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in ours:
        tb = tb.tb_next
    if isinstance(exc, NBWorkersError):
        tb = without_our_frames(tb)
    else:
        tb = _without_recorded(tb)
        chained, seen = exc.__cause__ or exc.__context__, {id(exc)}
        while chained is not None and id(chained) not in seen:  # (raise ... from, except:)
            seen.add(id(chained))
            chained.__traceback__ = _without_recorded(chained.__traceback__)
            chained = chained.__cause__ or chained.__context__
    return tracebacks.formatted(exc, tb)  # the frames formatted once per shape


# @nw.recorded's wrapper (develop/recorded.py): its frames sit between the handler's and the
# recorded function's, and are nbworkers', not the user's.
_RECORDED = os.path.join(os.path.dirname(__file__), "develop", "recorded.py")


def _without_recorded(tb):
    """``tb`` without the frames of @nw.recorded's wrapper (unlinked in place: %debug of a
    replay steps from the handler's frame to the recorded function's too)."""
    head, last, node = tb, None, tb
    while node is not None:
        if node.tb_frame.f_code.co_filename == _RECORDED:
            if last is None:
                head = node.tb_next
            else:
                last.tb_next = node.tb_next
        else:
            last = node
        node = node.tb_next
    return head


class Handler:
    """The code one worker runs: ``call(event, message)`` returns the run's result.

    ``filename`` is where its code says it comes from (a cell's ``<worker NAME #N>``): the
    executors send that source along, so tracebacks in another process show the lines.
    """

    def __init__(
        self,
        name: str,
        call: Callable[[Any, Any], Any],
        source: str,
        kind: str,
        filename: str | None = None,
    ):
        self.name = name
        self.call = call
        self.source = source
        self.kind = kind  # "cell" or "function"
        self.filename = filename

    def __repr__(self) -> str:
        return f"<Handler {self.name!r} ({self.kind})>"


def function_of_cell(tree: ast.Module, name: str, params: list[str]) -> ast.FunctionDef:
    """The function a cell becomes: its statements in a ``def name(*params)``, a last bare
    expression returned (the run's result). Live values rebuild it the same way."""
    body = tree.body or [ast.Pass()]
    if isinstance(body[-1], ast.Expr):
        last = body[-1]
        body[-1] = ast.copy_location(ast.Return(value=last.value), last)
    return ast.FunctionDef(
        name=name,
        args=ast.arguments(
            posonlyargs=[],
            args=[ast.arg(arg=p) for p in params],
            kwonlyargs=[],
            kw_defaults=[],
            defaults=[],
        ),
        body=body,
        decorator_list=[],
        returns=None,
        type_params=[],
        lineno=1,
        col_offset=0,
    )


def from_cell(
    name: str, source: str, namespace: dict, transform=None, kind: str = "worker"
) -> Handler:
    """Compile a ``%%worker`` (or, with ``kind="cron"``, ``%%cron``) cell body.

    SyntaxError if it does not compile. ``transform`` turns IPython syntax (``!cmd``,
    ``%magic``) into Python; the shell's ``transform_cell`` in a notebook. A cron cell gets
    ``message`` but no ``event``.
    """
    python = transform(source) if transform else source
    _versions[kind, name] += 1
    filename = f"<{kind} {name} #{_versions[kind, name]}>"
    params = ["message"] if kind == "cron" else ["event", "message"]
    tree = ast.parse(python, filename=filename)
    _refuse_generators(tree, filename)
    func = function_of_cell(tree, f"{kind}_{re.sub(r'[^A-Za-z0-9_]', '_', name)}", params)
    module = ast.Module(body=[func], type_ignores=[])
    ast.fix_missing_locations(module)
    code = compile(module, filename, "exec")
    func_code = next(c for c in code.co_consts if isinstance(c, types.CodeType))
    # Tracebacks, %debug and inspect read the source through linecache.
    linecache.cache[filename] = (len(python), None, python.splitlines(True), filename)
    fn = types.FunctionType(func_code, namespace, func.name)
    if kind == "cron":

        def call(event, message, _fn=fn):
            return _fn(message)

        return Handler(name, call, source, "cell", filename)
    return Handler(name, fn, source, "cell", filename)


def _positional_count(fn: Callable, default: int) -> int:
    """How many positional arguments ``fn`` takes (99 for *args; ``default`` if unknown)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return default
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return 99
    return sum(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in params)


def _refuse_generators(tree: ast.Module, filename: str) -> None:
    """A cell with a top-level ``yield`` or ``await`` would never run its body: say so."""
    scopes = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.Yield, ast.YieldFrom, ast.Await)):
            word = "await" if isinstance(node, ast.Await) else "yield"
            raise SyntaxError(
                f"a handler cell cannot use '{word}' at its top level (it runs as a plain "
                "function on a thread); move it into a function the cell calls",
                (filename, node.lineno, node.col_offset + 1, None),
            )
        if not isinstance(node, scopes):
            todo.extend(ast.iter_child_nodes(node))


def from_function(name: str, fn: Callable, kind: str = "worker") -> Handler:
    """Wrap ``fn(event)`` or ``fn(event, message)``; for a cron, ``fn()`` or ``fn(message)``."""
    if not callable(fn):
        raise ArgumentTypeError(f"a {kind} must be a function, not {type(fn).__name__}")
    takes = _positional_count(fn, 1 if kind == "worker" else 0)

    if kind == "cron":

        def call(event, message, _fn=fn):
            return _fn(message) if takes >= 1 else _fn()

    elif takes >= 2:
        call = fn
    else:

        def call(event, message, _fn=fn):
            return _fn(event)

    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = repr(fn)
    code = getattr(fn, "__code__", None)
    return Handler(name, call, source, "function", code.co_filename if code else None)


def from_batch(handler: Handler, messages: list) -> Handler:
    """The handler of one batch run (``--batch``): ``call(events, message)`` runs ``handler``
    with the batch's list of events and ``messages``, the list of its messages."""

    def call(events, message, _fn=handler.call, _messages=messages):
        return _fn(events, _messages)

    return Handler(handler.name, call, handler.source, handler.kind, handler.filename)
