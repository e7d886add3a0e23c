"""Failures grouped by cause (nw.failures), and acting on a group (requeue / discard group=),
through the thread and process executors, across a restart and from an older file."""

from __future__ import annotations

import pickle

import duckdb
import pytest

from nbworkers import api, handlers
from nbworkers.engine.policy import Policy
from nbworkers.errors import ArgumentValueError, NBWorkersError
from nbworkers.store import SCHEMA_VERSION
from tests.conftest import open_runtime

SOURCE = "row = event\nrow['text'].upper() if row.get('n', 0) >= 0 else 1 / 0\n"


def cell(source: str = SOURCE, name: str = "w"):
    return handlers.from_cell(name, source, {"__name__": "__main__"})


def emit_and_wait(rt, events, name="w"):
    ids = rt.emit_many(events, name)
    assert rt.wait(name, timeout=60)
    return ids


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_failures_are_grouped_by_cause_and_most_numerous_first(fresh_runtime, executor):
    rt = api.runtime()
    rt.define("w", cell(), 2, policy=Policy(executor=executor))
    # Given 5 events without 'text' (KeyError at line 2), 2 with n < 0 (ZeroDivisionError,
    # same line) and 3 that run
    emit_and_wait(rt, [{"n": i} for i in range(5)] + [{"n": -1, "text": "a"}] * 2)
    emit_and_wait(rt, [{"text": "ok"}] * 3)
    groups = api.failures("w")
    # Then two groups, the bigger first, with their counts and titles
    assert [(g.title, g.count) for g in groups] == [
        ("KeyError: 'text' at line 2", 5),
        ("ZeroDivisionError: division by zero at line 2", 2),
    ]
    key_error = groups[0]
    assert len(key_error.fingerprint) == 12
    assert "KeyError: 'text'" in key_error.traceback and "line 2" in key_error.traceback
    dead = {d["id"] for d in api.dead_letters("w")}
    assert set(key_error.example_ids) <= dead and len(key_error.example_ids) == 5
    assert key_error.first_seen <= key_error.last_seen
    assert str(key_error).startswith("5 \u00d7 KeyError: 'text' at line 2")
    # (its repr, as a notebook shows nw.failures: readable, the traceback by its length only)
    lines = len(key_error.traceback.splitlines())
    first = key_error.first_seen.isoformat(sep=" ", timespec="seconds")
    assert repr(key_error) == (
        f"Failure(fingerprint='{key_error.fingerprint}', title=\"KeyError: 'text' at line 2\", "
        f"count=5, first_seen={first}, last_seen="
        f"{key_error.last_seen.isoformat(sep=' ', timespec='seconds')}, "
        f"example_ids={key_error.example_ids!r}, traceback=<{lines} lines>)"
    )
    assert lines > 2 and "\n" not in repr(key_error)
    assert rt.counts("w")["done"] == 3


def test_threads_and_processes_give_the_same_fingerprint_for_the_same_cause(fresh_runtime):
    rt = api.runtime()
    rt.define("t", cell(name="t"), 1, policy=Policy(executor="threads"))
    rt.define("p", cell(name="p"), 1, policy=Policy(executor="processes"))
    emit_and_wait(rt, [{"n": 1}], "t")
    emit_and_wait(rt, [{"n": 2}], "p")
    (t,), (p,) = api.failures("t"), api.failures("p")
    assert (t.fingerprint, t.title) == (p.fingerprint, p.title)


@pytest.mark.parametrize("executor", ["threads", "processes"])
def test_requeue_a_group_after_fixing_the_cell_and_discard_another(fresh_runtime, executor):
    rt = api.runtime()
    rt.define("w", cell(), 2, policy=Policy(executor=executor))
    emit_and_wait(rt, [{"n": i} for i in range(4)] + [{"n": -1, "text": "a"}] * 3)
    key_error, zero = api.failures("w")
    # When the cell is fixed and the KeyError group requeued
    rt.define("w", cell("event.get('text', 'none').upper()\n"), 2, policy=Policy(executor=executor))
    new = api.requeue("w", group=key_error.fingerprint)
    assert len(new) == 4
    assert rt.wait("w", timeout=60)
    # Then they ran, and only the other group is left
    assert rt.counts("w")["done"] == 4
    assert [(g.fingerprint, g.count) for g in api.failures("w")] == [(zero.fingerprint, 3)]
    # And discarding that group leaves no dead letter
    assert api.discard("w", group=zero.fingerprint) == 3
    assert api.failures("w") == [] and api.dead_letters("w") == []
    assert rt.counts("w")["dead"] == 0


def test_an_unknown_group_or_ids_with_a_group_are_refused_and_change_nothing(rt):
    rt.define("w", cell(), 1)
    emit_and_wait(rt, [{"n": 1}, {"n": 2}])
    (group,) = rt.failures("w")
    with pytest.raises(NBWorkersError, match=r"nw.failures\('w'\) lists its groups"):
        rt.requeue("w", None, "0123456789ab")
    with pytest.raises(NBWorkersError, match="no dead letters in the failure group"):
        rt.discard("w", None, "0123456789ab")
    with pytest.raises(NBWorkersError, match="no dead letters in the failure group"):
        rt.discard("nobody", None, group.fingerprint)
    with pytest.raises(ArgumentValueError, match="give ids or group, not both"):
        rt.requeue("w", group.example_ids[0], group.fingerprint)
    with pytest.raises(TypeError, match="group must be a failure group's fingerprint"):
        rt.discard("w", None, group)  # the Failure itself, not its fingerprint
    assert [g.count for g in rt.failures("w")] == [2] and rt.counts("w")["dead"] == 2


def test_counts_follow_requeue_and_discard_by_id(rt):
    rt.define("w", cell(), 1)
    ids = emit_and_wait(rt, [{"n": i} for i in range(6)])
    rt.discard("w", ids[:2])
    assert [g.count for g in rt.failures("w")] == [4]
    rt.pause("w")
    rt.requeue("w", ids[2:3])
    assert [g.count for g in rt.failures("w")] == [3]
    rt.resume("w")
    assert rt.wait("w", timeout=30)
    assert [g.count for g in rt.failures("w")] == [4]  # it failed again: back in its group


def test_groups_survive_a_restart_and_show_in_the_failures_view(make_runtime):
    rt = make_runtime()
    rt.define("w", cell(), 2)
    emit_and_wait(rt, [{"n": i} for i in range(3)] + [{"n": -5, "text": "x"}])
    before = [(g.fingerprint, g.title, g.count, g.example_ids) for g in rt.failures("w")]
    rt.flush()
    rt.stop()
    # When the file is opened again
    rt = make_runtime()
    after = rt.failures("w")
    assert [(g.fingerprint, g.title, g.count, g.example_ids) for g in after] == before
    assert "KeyError: 'text'" in after[0].traceback
    # And the SQL view groups them the same way
    rows = rt.store.sql(
        "SELECT worker, fingerprint, title, count, example_ids, traceback LIKE '%KeyError%'"
        " FROM failures ORDER BY count DESC"
    ).fetchall()
    assert [r[:5] for r in rows] == [("w", *b[:3], list(b[3])) for b in before]
    assert rows[0][5] is True
    # And a group can be requeued after the restart
    rt.define("w", cell("event\n"), 2)
    assert len(rt.requeue("w", None, before[0][0])) == 3
    assert rt.wait("w", timeout=30) and rt.counts("w")["done"] == 3


def test_a_dead_letter_keeps_its_own_line_on_disk_and_its_group_the_whole_traceback(
    make_runtime, tmp_path
):
    # Given 200 failures of one cause (each with its own message) and 1 of another
    rt = make_runtime()
    rt.define("w", cell("row = event\nrow[row['k']]\n"), 1)
    emit_and_wait(rt, [{"k": f"key{i}"} for i in range(200)] + [{"k": 0}])
    whole = {g.fingerprint: g.traceback for g in rt.failures("w")}
    zero = next(g.fingerprint for g in rt.failures("w") if g.count == 1)
    rt.flush()
    # Then each dead letter's row keeps its own error line, and each group one traceback
    con = rt.store.con
    lines = con.execute("SELECT error FROM dead_letters ORDER BY seq").fetchall()
    assert [e for (e,) in lines] == [f"KeyError: 'key{i}'" for i in range(200)] + ["KeyError: 0"]
    groups = con.execute("SELECT worker, fingerprint, traceback FROM failure_groups").fetchall()
    assert sorted((w, fp) for w, fp, _ in groups) == sorted(
        ("w", g.fingerprint) for g in rt.failures("w")
    )
    for _, _, traceback in groups:  # the first failure's of each group
        assert traceback.startswith("Traceback (most recent call last):")
        assert traceback.endswith(("KeyError: 'key0'\n", "KeyError: 0\n"))
        assert "<worker w #" in traceback and "row[row['k']]" in traceback
    rt.stop()
    # And read back, the groups give the whole traceback, a dead letter its own line
    rt = make_runtime()
    again = {g.fingerprint: g.traceback for g in rt.failures("w")}
    assert set(again) == set(whole)
    assert again[zero] == whole[zero]
    assert rt.dead_letters("w")[5]["error"] == "KeyError: 'key5'"
    (view,) = rt.store.sql(
        "SELECT traceback FROM failures WHERE fingerprint = ?", [zero]
    ).fetchall()
    assert view[0] == whole[zero]
    # And a group left without dead letters loses its row when the file is opened again
    rt.discard("w", None, zero)
    rt.flush()
    rt.stop()
    rt = make_runtime()
    assert rt.store.con.execute("SELECT count(*) FROM failure_groups").fetchall() == [(1,)]
    rt.stop()


# The dead_letters table of schema version 4 (before failure groups).
SCHEMA_4_DEAD = """
CREATE TABLE meta (key VARCHAR, value VARCHAR);
CREATE TABLE dead_letters (seq BIGINT, worker VARCHAR, enqueued_at DOUBLE, attempt INTEGER,
    data BLOB, key VARCHAR, error VARCHAR, died_at DOUBLE, reason VARCHAR,
    priority INTEGER DEFAULT 0, expires_at DOUBLE);
INSERT INTO meta VALUES ('schema_version', '4'), ('next_seq', '10');
"""
OLD_ERROR = (
    "Traceback (most recent call last):\n"
    '  File "<worker w #1>", line 2, in worker_w\n'
    "    row['text']\n"
    "KeyError: 'text'\n"
)


def test_a_schema_4_file_opens_and_its_dead_letters_gain_their_groups(tmp_path):
    path = str(tmp_path / "q.duckdb")
    con = duckdb.connect(path)
    con.execute(SCHEMA_4_DEAD)
    data = pickle.dumps({"n": 1})
    for seq in (3, 4, 5):
        error = OLD_ERROR if seq < 5 else "TimeoutError: the run took longer than 2 s\n"
        con.execute(
            "INSERT INTO dead_letters VALUES (?, 'w', 1.0, 1, ?, NULL, ?, ?, 'failed', 0, NULL)",
            [seq, data, error, float(seq)],
        )
    con.close()
    rt = open_runtime(path)
    try:
        assert [(g.title, g.count, g.example_ids) for g in rt.failures("w")] == [
            ("KeyError: 'text' at line 2", 2, ("m3", "m4")),
            ("TimeoutError: the run took longer than 2 s", 1, ("m5",)),
        ]
        rows = rt.store.sql("SELECT fingerprint, count FROM failures ORDER BY count DESC")
        assert rows.fetchall() == [(g.fingerprint, g.count) for g in rt.failures("w")]
    finally:
        rt.stop()
    con = duckdb.connect(path)
    try:
        columns = {r[0] for r in con.execute("DESCRIBE dead_letters").fetchall()}
        assert {"fingerprint", "title"} <= columns
        version = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        assert version == [(str(SCHEMA_VERSION),)] and SCHEMA_VERSION == 5
    finally:
        con.close()


def test_a_group_emptied_then_failing_again_keeps_the_new_traceback_on_disk(make_runtime):
    # Its row kept the first traceback ever (the cell before the fix) while the same cause
    # failed again in the fixed cell: read back, nw.failures showed the old code.
    rt = make_runtime()
    rt.define("w", cell("event['text']  # the old code\n"), 1)
    emit_and_wait(rt, [{}])
    (old,) = rt.failures("w")
    rt.flush()  # its group's row written
    rt.discard("w", None, old.fingerprint)
    rt.flush()
    rt.define("w", cell("event['text']  # the new code\n"), 1)
    emit_and_wait(rt, [{}])
    (new,) = rt.failures("w")
    assert new.fingerprint == old.fingerprint and "the new code" in new.traceback
    rt.flush()
    rt.stop()
    # When the file is opened again
    rt = make_runtime()
    (again,) = rt.failures("w")
    assert "the new code" in again.traceback and "the old code" not in again.traceback
    rt.stop()
