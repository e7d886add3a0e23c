"""The handler's code, made ready for live values.

The handler is compiled again from its source, the same way it was first, except that every
bare expression statement ``f(x)`` becomes ``__nw_live__(LINE, f(x))``: the hook records the
value and returns it, so the code does what it did. The recompiled code is checked against the
handler's (without the hook they must be the same bytecode); when the source cannot be found or
has changed since, the handler's own code runs, and bare expressions are not shown.

The source's AST also says, per line, which statement a line belongs to (``owner``), which
lines start a statement (those never reached are faded) and which names a statement assigns.
"""

from __future__ import annotations
import __future__

import ast
import copy
import inspect
import linecache
import textwrap
import types
from dataclasses import dataclass, field

from .. import handlers
from ..handlers import Handler

HOOK = "__nw_live__"
# Their frames are not traced: a comprehension's loop, and a lambda's calls (a sort key, say),
# are part of one run of their line, whose value their runs would hide
COMPREHENSIONS = frozenset({"<listcomp>", "<setcomp>", "<dictcomp>", "<genexpr>", "<lambda>"})
_FUTURE_FLAGS = 0
for _name in __future__.all_feature_names:
    _FUTURE_FLAGS |= getattr(__future__, _name).compiler_flag


@dataclass
class Prepared:
    """What ``live`` runs and how to read its lines."""

    call: object  # call(event, message), as Handler.call
    lines: list[str]  # the source shown, one string a line
    first_lineno: int  # the number of lines[0] (a function's line in its file)
    filename: str | None
    codes: frozenset = frozenset()  # the code objects traced (a function's)
    top: frozenset = frozenset()  # the handler's own code: traced even if it is a lambda
    owner: dict[int, int] = field(default_factory=dict)  # line -> its statement's first line
    statements: frozenset = frozenset()  # lines where a statement starts
    targets: dict[int, tuple[str, ...]] = field(default_factory=dict)  # line -> names assigned
    returns: frozenset = frozenset()  # lines of a ``return VALUE``, whose value is shown
    quiet: frozenset = frozenset()  # lines of a def or class: what they bind is not shown
    notes: list[str] = field(default_factory=list)

    def traced(self, code) -> bool:
        """Whether frames of ``code`` are the handler's (and traced line by line)."""
        if code.co_name in COMPREHENSIONS:
            return code in self.top
        if self.codes:
            return code in self.codes
        return self.filename is not None and code.co_filename == self.filename


def user_function(handler: Handler):
    """The function a handler calls: a cell's compiled body, or the decorated function
    (``handlers`` wraps some in a ``call(event, message, _fn=fn)``)."""
    call = handler.call
    code = getattr(call, "__code__", None)
    if code is not None and code.co_filename == handlers.__file__ and call.__defaults__:
        return call.__defaults__[-1]
    return call


def prepare(handler: Handler, hook) -> Prepared:
    """The handler ready to run under the tracer, with ``hook(line, value)`` for bare
    expressions when its source allows."""
    fn = user_function(handler)
    code = getattr(fn, "__code__", None)
    if not isinstance(fn, types.FunctionType) or code is None:
        prepared = Prepared(handler.call, handler.source.splitlines(), 1, handler.filename)
        prepared.notes.append(
            f"the handler is a {type(fn).__name__}, not a Python function: no values per line"
        )
        return prepared
    if handler.kind == "cell":
        python = "".join(linecache.getlines(code.co_filename))
        lines, first = python.splitlines(), 1
        if len(handler.source.splitlines()) == len(lines):
            lines = handler.source.splitlines()  # as written: %magic and !cmd, not their Python
        tree = _cell_function(python, code) if python else None
    else:
        inner = inspect.unwrap(fn)
        if inner is not fn and isinstance(inner, types.FunctionType):
            return _wrapped(handler, inner)
        try:
            lines, first = inspect.getsourcelines(fn)
            lines = [line.rstrip("\n").rstrip("\r") for line in lines]
            tree = _source_function(lines, first, fn)
        except (OSError, TypeError, SyntaxError):
            lines, first, tree = handler.source.splitlines(), code.co_firstlineno, None
    prepared = Prepared(
        handler.call, lines, first, code.co_filename, codes=_nested(code) | {code}, top={code}
    )
    if tree is None:
        prepared.notes.append("the handler's source was not found: bare expressions not shown")
        return prepared
    _read_statements(tree, prepared)
    try:
        new = _recompile(tree, fn, hook)
    # The source no longer matches the code (edited since), or compiles differently
    except (_Mismatch, SyntaxError, ValueError) as exc:
        prepared.notes.append(f"bare expressions not shown: {exc}")
        return prepared
    # The handler's own code too: a recursive handler calls itself by its global name
    prepared.codes |= _nested(new.__code__) | {new.__code__}
    prepared.top |= {new.__code__}
    prepared.call = _caller(handler, fn, new)
    return prepared


class _Mismatch(Exception):
    pass


def _wrapped(handler: Handler, inner: types.FunctionType) -> Prepared:
    """A function under another decorator (``functools.wraps``): the wrapper calls ``inner``
    through its closure, so ``inner``'s own code is traced and left as it is (no hook)."""
    code = inner.__code__
    prepared = Prepared(
        handler.call,
        [],
        code.co_firstlineno,
        code.co_filename,
        codes=_nested(code) | {code},
        top={code},
    )
    try:
        lines, prepared.first_lineno = inspect.getsourcelines(inner)
        prepared.lines = [line.rstrip("\n").rstrip("\r") for line in lines]
        tree = _source_function(prepared.lines, prepared.first_lineno, inner)
    except (OSError, TypeError, SyntaxError):
        prepared.lines, tree = handler.source.splitlines(), None
    if tree is not None:
        _read_statements(tree, prepared)
    prepared.notes.append(
        f"{inner.__qualname__} is wrapped by another decorator: its lines are shown, not the "
        "wrapper's, and bare expressions are not"
    )
    return prepared


def _cell_function(python: str, code) -> ast.FunctionDef:
    """The function ``handlers.from_cell`` made of a cell, as an AST."""
    tree = ast.parse(python, filename=code.co_filename)
    params = list(code.co_varnames[: code.co_argcount])
    return handlers.function_of_cell(tree, code.co_name, params)


def _source_function(lines: list[str], first: int, fn) -> ast.FunctionDef | None:
    tree = ast.parse(textwrap.dedent("\n".join(lines)))
    if not tree.body or not isinstance(tree.body[0], ast.FunctionDef):
        return None  # a lambda, or an async function
    node = tree.body[0]
    if node.name != fn.__name__:
        return None
    ast.increment_lineno(node, first - 1)
    node.decorator_list = []  # @nw.worker would define the worker again
    return node


def _read_statements(func: ast.FunctionDef, prepared: Prepared) -> None:
    owner: dict[int, int] = {}
    targets: dict[int, list[str]] = {}
    starts = set()
    returns = set()
    quiet = set()
    # Preorder: a statement nested in another (a loop's body) takes its lines back
    for node in _preorder(func.body):
        if not isinstance(node, ast.stmt):
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue  # a docstring: no code runs there
        if isinstance(node, ast.Global | ast.Nonlocal):
            continue
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            quiet.add(node.lineno)
        starts.add(node.lineno)
        if isinstance(node, ast.Return) and node.value is not None:
            returns.add(node.lineno)
        for line in range(node.lineno, (node.end_lineno or node.lineno) + 1):
            owner[line] = node.lineno
        names = targets.setdefault(node.lineno, [])
        for name in _assigned(node):
            if name not in names:
                names.append(name)
    prepared.owner = owner
    prepared.statements = frozenset(starts)
    prepared.returns = frozenset(returns)
    prepared.quiet = frozenset(quiet)
    prepared.targets = {line: tuple(names) for line, names in targets.items() if names}


def _preorder(body):
    for node in body:
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _preorder([child])
            elif isinstance(child, ast.excepthandler | ast.match_case):
                yield from _preorder(child.body)


def _assigned(node: ast.stmt):
    """The names a statement binds or changes in place (``d[k] = v`` changes ``d``)."""
    if isinstance(node, ast.Assign):
        found = node.targets
    elif isinstance(node, ast.AugAssign | ast.AnnAssign):
        found = [node.target]
    elif isinstance(node, ast.For | ast.AsyncFor):
        found = [node.target]
    elif isinstance(node, ast.With | ast.AsyncWith):
        found = [item.optional_vars for item in node.items if item.optional_vars is not None]
    else:
        return
    for target in found:
        yield from _target_names(target)


def _target_names(target: ast.expr):
    """The names a target binds: ``a``, each of ``a, (b, *c)``, and the base of ``d[k]`` or
    ``o.x`` (changed in place), not the names in its subscript (``k`` is only read)."""
    while isinstance(target, ast.Subscript | ast.Attribute | ast.Starred):
        target = target.value
    if isinstance(target, ast.Name):
        yield target.id
    elif isinstance(target, ast.Tuple | ast.List):
        for element in target.elts:
            yield from _target_names(element)


class _Hook(ast.NodeTransformer):
    def visit_Expr(self, node: ast.Expr):
        self.generic_visit(node)
        if isinstance(node.value, ast.Constant):
            return node  # a docstring, or ``...``
        call = ast.Call(
            func=ast.Name(id=HOOK, ctx=ast.Load()),
            args=[ast.Constant(node.lineno), node.value],
            keywords=[],
        )
        return ast.copy_location(ast.Expr(value=ast.copy_location(call, node.value)), node)


def _compile(func: ast.FunctionDef, params: list[str], filename: str, flags: int):
    """``func`` compiled inside an outer function of ``params`` (its free variables)."""
    end = max((getattr(n, "end_lineno", None) or n.lineno for n in func.body), default=func.lineno)
    outer = ast.FunctionDef(
        name="__nw_live_outer__",
        args=ast.arguments(
            posonlyargs=[],
            args=[ast.arg(arg=p) for p in params],
            kwonlyargs=[],
            kw_defaults=[],
            defaults=[],
        ),
        body=[func, ast.Return(value=ast.Name(id=func.name, ctx=ast.Load()))],
        decorator_list=[],
        returns=None,
        type_params=[],
        lineno=func.lineno,
        end_lineno=end,
        col_offset=0,
        end_col_offset=0,
    )
    outer.body[1].lineno = outer.body[1].end_lineno = end
    if func.name not in params:
        # The function's own name stays a global in it, as it is in the handler (a recursive
        # handler calls itself through its module). The outer function never runs.
        outer.body.insert(0, ast.Global(names=[func.name], lineno=func.lineno))
    module = ast.Module(body=[outer], type_ignores=[])
    ast.fix_missing_locations(module)
    code = compile(module, filename, "exec", flags=flags, dont_inherit=True)
    outer_code = next(c for c in code.co_consts if isinstance(c, types.CodeType))
    inner = next(
        c for c in outer_code.co_consts if isinstance(c, types.CodeType) and c.co_name == func.name
    )
    return _unnest(inner, outer.name + ".<locals>.")


def _unnest(code, prefix: str):
    """``code`` with the outer function left out of its qualified names (and of those of the
    functions and classes it defines), as the handler's own code has them."""
    consts = tuple(
        _unnest(c, prefix)
        if isinstance(c, types.CodeType)
        else c.removeprefix(prefix)
        if isinstance(c, str) and c.startswith(prefix)  # a class body's __qualname__
        else c
        for c in code.co_consts
    )
    return code.replace(co_consts=consts, co_qualname=code.co_qualname.removeprefix(prefix))


def _recompile(func: ast.FunctionDef, fn: types.FunctionType, hook) -> types.FunctionType:
    code = fn.__code__
    free = list(code.co_freevars)
    flags = code.co_flags & _FUTURE_FLAGS
    plain = _compile(copy.deepcopy(func), free, code.co_filename, flags)
    if plain.co_code != code.co_code or plain.co_freevars != code.co_freevars:
        raise _Mismatch("its source does not compile to its code (changed since defined?)")
    hooked = _compile(_Hook().visit(copy.deepcopy(func)), [HOOK, *free], code.co_filename, flags)
    cells = dict(zip(code.co_freevars, fn.__closure__ or (), strict=True))
    cells[HOOK] = types.CellType(hook)
    new = types.FunctionType(
        hooked,
        fn.__globals__,
        fn.__name__,
        fn.__defaults__,
        tuple(cells[n] for n in hooked.co_freevars),
    )
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__qualname__ = fn.__qualname__
    return new


def _caller(handler: Handler, fn, new):
    """``call(event, message)`` for ``new`` as the handler's was for ``fn``: the same wrapper
    (``user_function``), with ``new`` as its ``_fn``."""
    call = handler.call
    if call is fn:
        return new
    defaults = (*call.__defaults__[:-1], new)
    return types.FunctionType(
        call.__code__, call.__globals__, call.__name__, defaults, call.__closure__
    )


def _nested(code) -> set:
    found = set()
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            found.add(const)
            found |= _nested(const)
    return found
