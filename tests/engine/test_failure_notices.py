"""The "keeps failing" notices under the next cell stay readable however many runs fail: a new
failure group is told of once, then failures of groups told of are counted (one line a group
after each cell)."""

from __future__ import annotations

from nbworkers import handlers

SOURCE = "if event < 0:\n    raise ValueError(f'negative {event}')\n{}[event]\n"


def define(rt, name="w", source=SOURCE, concurrency=1):
    rt.define(name, handlers.from_cell(name, source, {}), concurrency)


def test_a_thousand_failures_of_one_cause_are_one_notice_then_one_count(make_runtime):
    rt = make_runtime(failure_notice_after=3)
    define(rt, concurrency=4)
    rt.emit_many(range(1000), "w")
    assert rt.wait("w", 60)
    notices = rt.take_notices()
    assert len(notices) == 2, notices
    streak, counted = notices
    (group,) = rt.failures("w")
    assert "'w' has failed 3 runs in a row" in streak and group.fingerprint in streak
    assert group.title.startswith("KeyError: ") and group.title.endswith(" at line 3")
    assert counted == (
        f"nbworkers: worker 'w' failed 997 more runs for {group.title} "
        f"(group {group.fingerprint}; see nw.failures('w'))"
    )
    # Nothing more until more runs fail
    assert rt.take_notices() == []
    rt.emit_many(range(5), "w")
    assert rt.wait("w", 30)
    assert rt.take_notices() == [
        f"nbworkers: worker 'w' failed 5 more runs for {group.title} "
        f"(group {group.fingerprint}; see nw.failures('w'))"
    ]


def test_a_new_cause_is_told_of_once_then_counted(make_runtime):
    rt = make_runtime(failure_notice_after=2)
    define(rt)
    rt.emit_many([1, 2, 3], "w")
    assert rt.wait("w", 30)
    streak, counted = rt.take_notices()
    assert "has failed 2 runs in a row" in streak and "1 more run for KeyError" in counted
    # When the worker fails for another cause, in the same streak
    rt.emit_many([-1, -2, -3], "w")
    assert rt.wait("w", 30)
    new, counted = rt.take_notices()
    value_error = next(g for g in rt.failures("w") if g.title.startswith("ValueError"))
    assert new == (
        "nbworkers: worker 'w' fails for a new cause: ValueError: negative -1 at line 2 "
        f"(group {value_error.fingerprint}; see nw.failures('w'))"
    )
    assert counted.startswith("nbworkers: worker 'w' failed 2 more runs for ValueError")
    # Then only counts, one line a group, whichever order they fail in
    rt.emit_many([4, -4, 5, -5, -6], "w")
    assert rt.wait("w", 30)
    lines = sorted(rt.take_notices())
    assert len(lines) == 2
    assert "failed 2 more runs for KeyError" in lines[0]
    assert "failed 3 more runs for ValueError" in lines[1]


def test_failures_below_the_streak_are_not_told(make_runtime):
    rt = make_runtime(failure_notice_after=3)
    define(rt, source="event['x']\n")
    for _ in range(3):
        rt.emit_many([{}, {}], "w")
        assert rt.wait("w", 30)
        define(rt, source="event\n")
        rt.emit(1, "w")  # a success ends the streak
        assert rt.wait("w", 30)
        define(rt, source="event['x']\n")
    assert rt.take_notices() == []


def test_the_streak_notice_names_the_latest_exception_not_its_groups_box_or_notes(make_runtime):
    # The notice said "the latest: +------------------------------------" for an ExceptionGroup
    # (its traceback's last line) and a note's text for an exception with notes.
    rt = make_runtime(failure_notice_after=2)
    source = (
        "if event == 'group':\n"
        "    raise ExceptionGroup('batch', [ValueError(event)])\n"
        "exc = KeyError(event)\n"
        "exc.add_note('a note')\n"
        "raise exc\n"
    )
    define(rt, "g", source)
    define(rt, "n", source)
    rt.emit_many(["group", "group"], "g")
    rt.emit_many(["noted", "noted"], "n")
    assert rt.wait("g", 30) and rt.wait("n", 30)
    notices = rt.take_notices()
    streaks = sorted(n for n in notices if "in a row" in n)
    assert "the latest: ExceptionGroup: batch (1 sub-exception)  (see" in streaks[0], streaks
    assert "the latest: KeyError: 'noted'  (see" in streaks[1], streaks
