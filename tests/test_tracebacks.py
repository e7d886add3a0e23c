"""``nbworkers/tracebacks.py``: a failure's traceback is formatted once per shape (the same
frames at the same instructions), and the text is the very one ``traceback`` would give."""

from __future__ import annotations

import traceback

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nbworkers import handlers, tracebacks
from nbworkers.errors import ArgumentValueError


def raise_key(key):
    return {}[key]


def raise_at_two_lines(n):
    if n % 2:
        raise ValueError(f"odd {n}")
    raise ValueError(f"even {n}")


def caught(fn, *args) -> BaseException:
    try:
        fn(*args)
    except BaseException as exc:  # noqa: BLE001 - the test looks at it
        return exc
    raise AssertionError("did not raise")


def plain(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


@given(st.lists(st.one_of(st.text(max_size=20), st.integers()), min_size=1, max_size=20))
def test_the_text_is_what_traceback_gives_however_often_a_shape_comes_back(keys):
    for key in keys:
        exc = caught(raise_key, key)
        assert tracebacks.formatted(exc, exc.__traceback__) == plain(exc)
    for n in range(4):
        exc = caught(raise_at_two_lines, n)
        assert tracebacks.formatted(exc, exc.__traceback__) == plain(exc)


def test_a_shape_is_formatted_once_and_its_messages_each_time(monkeypatch):
    tracebacks.forget()
    calls = []
    real = traceback.format_exception
    monkeypatch.setattr(
        traceback, "format_exception", lambda *a, **k: calls.append(1) or real(*a, **k)
    )
    texts = [handlers.format_error(caught(raise_key, f"k{i}")) for i in range(100)]
    assert len(calls) == 1
    assert [t.splitlines()[-1] for t in texts] == [f"KeyError: 'k{i}'" for i in range(100)]
    assert len(set(t.rsplit("\n", 2)[0] for t in texts)) == 1  # one head: the frames


def chained():
    try:
        raise_key("inner")
    except KeyError as exc:
        raise RuntimeError("outer") from exc


def context():
    try:
        raise_key("inner")
    except KeyError:
        raise RuntimeError("during")  # noqa: B904 - the implicit context is the point


def with_note():
    exc = ValueError("noted")
    exc.add_note("a note")
    raise exc


def syntax():
    compile("x = (", "<cell>", "exec")


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("no str")


def unprintable():
    raise Unprintable()


def empty():
    raise ValueError()


def group():
    raise ExceptionGroup("two", [ValueError("a"), KeyError("b")])


@pytest.mark.parametrize("fn", [chained, context, with_note, syntax, unprintable, empty, group])
def test_what_is_not_one_plain_exception_is_formatted_whole_and_right(fn):
    for _ in range(3):  # cached or not, the same text
        exc = caught(fn)
        assert tracebacks.formatted(exc, exc.__traceback__) == plain(exc)


def test_an_nbworkers_error_still_shows_the_users_frames_only():
    def handler():
        raise ArgumentValueError("bad value")

    for _ in range(2):
        text = handlers.format_error(caught(handler))
        assert "in handler" in text and text.endswith("ArgumentValueError: bad value\n")


def test_the_cache_is_bounded():
    tracebacks.forget()
    for i in range(tracebacks.SHAPES_MAX + 50):
        code = compile(f"raise ValueError({i})", f"<shape {i}>", "exec")
        exc = caught(exec, code)
        tracebacks.formatted(exc, exc.__traceback__)
    assert len(tracebacks._shapes) <= tracebacks.SHAPES_MAX


def test_two_versions_of_one_cell_keep_their_own_names():
    # Code objects compare equal whatever their file: the cell's version must not be cached
    texts = []
    for _ in range(2):
        handler = handlers.from_cell("w", "event['text']\n", {})
        try:
            handler.call({}, None)
        except KeyError as exc:
            texts.append(handlers.format_error(exc))
    assert texts[0] != texts[1]
    assert [t.count(handler.filename) for t in texts] == [0, 1]


def test_a_traceback_limit_set_later_is_obeyed(monkeypatch):
    # sys.tracebacklimit limits the frames traceback shows: a shape formatted before it was set
    # must not bring back the frames it hides (or hide those it shows once unset).
    import sys

    tracebacks.forget()
    for limit in (None, 1, 0, None):
        if limit is None:
            monkeypatch.delattr(sys, "tracebacklimit", raising=False)
        else:
            monkeypatch.setattr(sys, "tracebacklimit", limit, raising=False)
        exc = caught(raise_key, "k")
        assert tracebacks.formatted(exc, exc.__traceback__) == plain(exc), limit


def raise_with_notes(notes):
    exc = ValueError("x")
    exc.__notes__ = notes
    raise exc


def test_odd_notes_are_shown_as_traceback_shows_them():
    # traceback shows any __notes__ that is not None (a non-sequence by its repr), falsy or not
    tracebacks.forget()
    for notes in ("", [], None, 0, False, ["n"], ()):
        exc = caught(raise_with_notes, notes)
        assert tracebacks.formatted(exc, exc.__traceback__) == plain(exc), notes


class StrExits(Exception):
    def __str__(self):
        raise SystemExit("from __str__")


def test_a_str_that_raises_a_base_exception_is_told_as_traceback_tells_it():
    # traceback catches anything str() raises; the formatting must not let a SystemExit out
    for _ in range(2):
        exc = caught(lambda: (_ for _ in ()).throw(StrExits()))
        assert tracebacks.formatted(exc, exc.__traceback__) == plain(exc)
