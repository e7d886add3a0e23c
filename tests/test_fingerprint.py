"""Fingerprints of failures (nbworkers/fingerprint.py): which failures share a cause."""

from __future__ import annotations

import json
import string
import traceback

from hypothesis import example, given
from hypothesis import strategies as st

from nbworkers import fingerprint as fingerprints
from nbworkers import handlers, tracebacks
from nbworkers.fingerprint import digest_of, fingerprint, normalise, parse
from tests.test_tracebacks import caught


def traceback_of(source: str, event, name: str = "w", **names) -> str:
    """The traceback a cell's handler leaves, formatted as a thread run formats it."""
    handler = handlers.from_cell(name, source, {"json": json, **names})
    try:
        handler.call(event, None)
    except Exception as exc:  # noqa: BLE001
        return handlers.format_error(exc)
    raise AssertionError("the cell did not fail")


def text(type_: str, message: str, line: int, cell: str = "<worker w #3>") -> str:
    """A traceback as every executor formats one."""
    return (
        "Traceback (most recent call last):\n"
        f'  File "{cell}", line {line}, in worker_w\n'
        "    something(event)\n"
        "    ^^^^^^^^^^^^^^^^\n"
        '  File "/usr/lib/python3.11/site-packages/lib/mod.py", line 99, in something\n'
        "    raise Oops\n"
        f"{type_}: {message}\n"
    )


def test_a_cell_key_error_is_named_by_type_message_and_cell_line():
    error = traceback_of("x = 1\nevent['text']\n", {})
    f = fingerprint(error)
    assert f.title == "KeyError: 'text' at line 2"
    assert len(f.digest) == 12 and int(f.digest, 16) >= 0


def test_the_handler_line_is_the_cells_not_the_librarys():
    error = traceback_of("import json\n\njson.loads(event)\n", "{bad")
    parsed = parse(error)
    assert parsed.type == "json.decoder.JSONDecodeError"
    assert parsed.where == "line 3"


def test_the_same_cause_in_another_version_of_the_cell_is_the_same_group():
    # The cell's version (#N) changes when it runs again; the group does not
    first = traceback_of("event['text']\n", {})
    again = traceback_of("event['text']\n", {})
    assert "#" in first and first != again
    assert fingerprint(first) is fingerprint(again)


def test_other_keys_ids_numbers_and_addresses_are_one_group():
    a = fingerprint(text("ValueError", "bad row 12 of m345 at 0x7f00aa 'x'", 4))
    b = fingerprint(text("ValueError", "bad row 99 of m7 at 0xdeadbeef 'other value'", 4))
    assert a.digest == b.digest
    assert a.title == "ValueError: bad row 12 of m345 at 0x7f00aa 'x' at line 4"


def test_a_one_line_error_without_frames_is_grouped_by_its_words():
    timeout = (
        "TimeoutError: the run took longer than its time limit of {} s (--timeout) and was "
        "abandoned. A Python thread cannot be stopped.\n"
    )
    a, b = fingerprint(timeout.format(5)), fingerprint(timeout.format(0.3))
    assert a is b and a.title.startswith("TimeoutError: the run took longer")
    assert fingerprint(None).title == "an error"


def test_a_chained_exception_is_grouped_by_the_last_raised():
    error = traceback_of(
        "try:\n    event['a']\nexcept KeyError:\n    raise ValueError('no a')\n", {}
    )
    assert "During handling" in error
    assert fingerprint(error).title == "ValueError: no a at line 4"


def test_a_function_handlers_line_names_its_file():
    def handler(event):
        raise RuntimeError("nope")

    h = handlers.from_function("w", handler)
    try:
        h.call(1, None)
    except RuntimeError as exc:
        error = handlers.format_error(exc)
    where = parse(error).where
    assert where.startswith("test_fingerprint.py line ") and where.endswith(", in handler")


# ----- properties of the normaliser -------------------------------------------------------------

_types = st.sampled_from(["KeyError", "ValueError", "TypeError", "mymod.ParseError"])
_words = st.text(alphabet=string.ascii_letters + " ,;:()-", min_size=0, max_size=30)
_quoted = st.text(alphabet=string.ascii_letters + string.digits + " _.-/", max_size=20)
_numbers = st.one_of(
    st.integers(-(10**12), 10**12), st.floats(allow_nan=False, allow_infinity=False)
)


def _message(words: str, number, quoted: str, quote: str) -> str:
    return f"{words} {number} {quote}{quoted}{quote} in m{abs(int(number))} at {hex(id(words))}"


@given(_types, _words, _numbers, _numbers, _quoted, _quoted, st.sampled_from(["'", '"']))
def test_numbers_and_quoted_values_do_not_change_the_group(type_, words, n1, n2, q1, q2, quote):
    a = text(type_, _message(words, n1, q1, quote), 2)
    b = text(type_, _message(words, n2, q2, quote), 2)
    assert fingerprint(a).digest == fingerprint(b).digest
    assert normalise(_message(words, n1, q1, quote)) == normalise(_message(words, n2, q2, quote))


@given(_types, _types, _words, st.integers(1, 500), st.integers(1, 500))
def test_another_type_or_line_is_another_group(type1, type2, words, line1, line2):
    same = fingerprint(text(type1, words, line1)).digest
    assert (fingerprint(text(type2, words, line2)).digest == same) == (
        type1 == type2 and line1 == line2
    )


# Messages whose digits and hex-looking parts are what the cache of fingerprints by shape
# (the message's digits 2-9 read as 1) could get wrong: "0x1f" is hex, "1x1f" is not.
_digits_and_hex = st.text(alphabet="0123456789abcdefxXeE.,_-+ 'm", max_size=40)


@given(_digits_and_hex, st.lists(st.sampled_from("123456789"), min_size=40, max_size=40))
def test_digits_one_to_nine_never_change_the_normalised_message(message, others):
    # What the cache by shape relies on: every such digit is replaced, whatever it is
    changed = iter(others)
    other = "".join(next(changed) if c in "123456789" else c for c in message)
    assert normalise(message) == normalise(other)


@given(_digits_and_hex, st.lists(st.sampled_from("0123456789"), min_size=40, max_size=40))
@example("at 0x1f", ["1"] * 40)  # hex, then a number: "<hex>" and "<n>x<n>f"
@example("1e5 -1.5 m12", ["0"] * 40)
def test_a_cached_fingerprint_is_the_one_made_from_scratch(message, others):
    # The message, then the same with other digits (0 included): the second may be found in
    # the cache the first filled, and must still be its own group
    fingerprints._by_shape.clear()
    changed = iter(others)
    other = "".join(next(changed) if c.isdigit() else c for c in message)
    for each in (message, other):
        error = text("ValueError", each, 4)
        assert fingerprint(error).digest == digest_of(parse(error))


class Custom(Exception):
    pass


def _raise_it(kind, message):
    raise kind(message)


# Own lines a failure's group could be mistaken on when found by shape: digits of every kind,
# quotes, lines, and messages holding what parse() takes for frames or a traceback's header
_own = st.one_of(
    _digits_and_hex,
    st.text(max_size=60),
    st.sampled_from(
        [
            'see\n  File "x.py", line 12, in f',
            'see\n  File "x.py", line 13, in f',
            "Traceback (most recent call last):\n  oops",
            "  | Exception Group Traceback (most recent call last):",
            "a\nb 17",
            "",
        ]
    ),
)


@given(st.lists(st.tuples(st.sampled_from([KeyError, ValueError, Custom]), _own), max_size=25))
@example(
    [
        (ValueError, 'x\n  File "a.py", line 12, in f'),
        (ValueError, 'x\n  File "a.py", line 13, in f'),
    ]
)
def test_a_failure_found_by_its_shape_gets_the_group_its_text_gives(failures):
    # A thread run's failure is found by its shape and own line (tracebacks.py): the same
    # group as parsing its whole text from scratch, one failure after another on one thread
    tracebacks.forget()
    for kind, message in failures:
        error = handlers.format_error(caught(_raise_it, kind, message))
        found = fingerprint(error)
        assert found.digest == digest_of(parse(error)), (kind, message)


def test_a_failure_of_a_known_shape_is_found_without_parsing_its_text(monkeypatch):
    tracebacks.forget()
    first = handlers.format_error(caught(_raise_it, KeyError, "texts of 1"))
    group = fingerprint(first)
    assert group.digest == digest_of(parse(first))
    parsed = []
    monkeypatch.setattr(fingerprints, "parse", lambda e: parsed.append(e) or parse(e))
    for i in range(2, 200):
        error = handlers.format_error(caught(_raise_it, KeyError, f"texts of {i}"))
        assert tracebacks.last_formatted()[0] is error
        assert fingerprint(error) is group
    # Parsed once per skeleton of its own line (digits 1-9 as 1): 10, 11, 100, 101, 110, 111
    assert [e.rsplit(" ", 1)[1] for e in parsed] == [
        "10'\n",
        "11'\n",
        "100'\n",
        "101'\n",
        "110'\n",
        "111'\n",
    ]


@given(st.text(max_size=300))
def test_any_text_gets_a_fingerprint(error):
    f = fingerprint(error)
    assert len(f.digest) == 12 and f.title
    assert fingerprint(error) == f  # stable


def test_an_exception_group_is_grouped_by_its_type_message_and_line():
    # An ExceptionGroup's traceback is drawn in a box ("  | " before each line): every group a
    # handler raised was one failure group titled "Traceback (most recent call last):", and a
    # dead letter kept the whole box as its "error line".
    from nbworkers.fingerprint import error_line

    source = (
        "if event == 1:\n"
        "    raise ExceptionGroup('batch', [ValueError(event), KeyError(event)])\n"
        "raise ExceptionGroup('other', [TypeError(event)])\n"
    )
    one, two, other = (traceback_of(source, event) for event in (1, 1, 2))
    assert parse(one) == parse(two)
    assert parse(one).type == "ExceptionGroup" and parse(one).where == "line 2"
    assert fingerprint(one).title == "ExceptionGroup: batch (2 sub-exceptions) at line 2"
    assert fingerprint(one).digest != fingerprint(other).digest
    assert error_line(one) == "ExceptionGroup: batch (2 sub-exceptions)"
    assert error_line(other) == "ExceptionGroup: other (1 sub-exception)"


def test_a_plain_exception_raised_while_handling_a_group_is_grouped_by_itself():
    source = (
        "try:\n"
        "    raise ExceptionGroup('batch', [ValueError(event)])\n"
        "except ExceptionGroup:\n"
        "    raise KeyError(event)\n"
    )
    error = traceback_of(source, "k")
    assert fingerprint(error).title == "KeyError: 'k' at line 4"


def test_a_dead_letters_line_keeps_the_sentence_nbworkers_put_before_the_traceback():
    # A stopped run's error and an event that could not be unpickled begin with nbworkers'
    # own sentence; their dead letters kept "nbworkers.errors.RunStopped" and "the event
    # cannot be unpickled, so the handler did not run:" once only that line was on disk.
    from nbworkers.fingerprint import error_line

    frames = 'Traceback (most recent call last):\n  File "<worker w #1>", line 2, in handler\n'
    stopped = (
        "Stopped: nw.stop('m7') stopped this run at 10:00:00; the worker's --retries apply "
        "(retry=True).\nWhere the handler was when it stopped:\n"
        + frames
        + "nbworkers.errors.RunStopped\n"
    )
    assert error_line(stopped).startswith("Stopped: nw.stop('m7') stopped this run at 10:00")
    unpickled = "the event cannot be unpickled, so the handler did not run:\nSystemExit: 3\n"
    assert error_line(unpickled) == (
        "the event cannot be unpickled, so the handler did not run: SystemExit: 3"
    )
    assert error_line(frames + "KeyError: 'text'\n") == "KeyError: 'text'"
    chained = (
        frames + "KeyError: 'a'\n\nDuring handling of the above exception, another exception "
        "occurred:\n\n" + frames + "ValueError: b\n"
    )
    assert error_line(chained) == "ValueError: b"
    # A cause that was never raised comes first, before its own frames: not a sentence of ours
    try:
        raise ValueError("b") from KeyError("a")
    except ValueError as exc:
        cause_first = "".join(traceback.format_exception(exc))
    assert cause_first.startswith("KeyError: 'a'")
    assert error_line(cause_first) == "ValueError: b"


@given(st.lists(st.tuples(st.sampled_from([KeyError, ValueError, Custom]), _own), max_size=25))
def test_a_thread_runs_own_line_is_the_line_its_text_gives(failures):
    # A dead letter's own line, taken from what the run thread just formatted (fingerprint.
    # own_line), is error_line of its text whenever it is given; the text alone gives none
    tracebacks.forget()
    for kind, message in failures:
        error = handlers.format_error(caught(_raise_it, kind, message))
        line = fingerprints.own_line(error)
        assert line is None or line == fingerprints.error_line(error), (kind, message)
        # An equal text that is not the one formatted gives none: it is cut from the text
        assert fingerprints.own_line(("x" + error)[1:]) is None


def test_a_plain_failures_own_line_is_known_without_reading_its_text():
    tracebacks.forget()
    error = handlers.format_error(caught(_raise_it, KeyError, "texts of 7\nand more"))
    assert fingerprints.own_line(error) == "KeyError: 'texts of 7\\nand more'"
    error = handlers.format_error(caught(_raise_it, ValueError, "bad 7\nand more"))
    assert fingerprints.own_line(error) == "ValueError: bad 7" == fingerprints.error_line(error)
