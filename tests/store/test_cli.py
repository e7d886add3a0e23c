"""python -m nbworkers status, run as a user runs it: on files made by a real runtime, a file a
live kernel holds, a file left by a killed process, bad paths; it never changes the file."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import textwrap

import duckdb
import pytest

from nbworkers.store import read_status


def status(path, *args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "nbworkers", "status", str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
    )


def snapshot(folder) -> dict:
    """Every file of ``folder`` with its content hash, size and modification time."""
    return {
        p.name: (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in sorted(folder.iterdir())
    }


def row(out: str, *cells) -> bool:
    """True if a line of ``out`` holds ``cells`` in order, separated by spaces only."""
    pattern = r"^\s+" + r"\s+".join(re.escape(str(c)) for c in cells) + r"(\s|$)"
    return re.search(pattern, out, re.M) is not None


@pytest.fixture
def made_db(fresh_runtime, tmp_path):
    """A database written by a real runtime: a worker with failures, retries and dead letters
    (paused, one message queued), an interval cron, a paused cron, an unhandled name."""
    nw = fresh_runtime
    folder = tmp_path / "db"
    nw.config().db_path = str(folder / "q.duckdb")

    @nw.worker("resize", retries=1, backoff=0)
    def resize(event):
        if event % 3 == 0:
            raise ValueError(f"cannot resize image {event}: not a PNG")
        return event * 2

    @nw.cron("hourly", name="report")
    def report():
        print("report sent")

    @nw.cron("daily", name="cleanup", at="03:00", paused=True)
    def cleanup():
        pass

    nw.emit_many(range(7), "resize")
    nw.emit({"to": "a@example.org"}, "emails")
    nw.emit({"to": "b@example.org"}, "emails")
    assert nw.wait(timeout=30)
    nw.pause("resize")
    nw.emit(99, "resize")
    # nw.sql's connections must not keep the file open once the runtime stops.
    assert nw.sql("select count(*) from messages").fetchall() == [(3,)]
    nw.shutdown()
    return folder / "q.duckdb"


def test_status_shows_workers_crons_unhandled_and_failures_and_changes_nothing(made_db):
    before = snapshot(made_db.parent)

    done = status(made_db)

    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    out = done.stdout
    assert out.startswith(f"nbworkers database {made_db}\n")
    assert "last written" in out
    # name, kind, state, queued, done, failed, dead, retried, skipped
    assert row(out, "resize", "worker", "paused", 1, 4, 3, 3, 3, "-"), out
    assert row(out, "report", "cron", "-", 0, 1, 0, 0, 0, 0), out
    assert row(out, "cleanup", "cron", "paused", 0, 0, 0, 0, 0, 0), out
    assert "resize is paused: by hand" in out
    unhandled = out.split("Unhandled:")[1].split("\n\n")[0]
    assert row(unhandled, "emails", 2) and "resize" not in unhandled
    failures = out.split("Latest failures")[1]
    assert failures.count("ValueError: cannot resize image") == 6  # 3 messages, 2 attempts each
    assert re.search(r"resize\s+t\d+\s+m\d+\s+2\s+ValueError: cannot resize image 6", failures)
    assert "3 dead letters kept" in out
    assert snapshot(made_db.parent) == before


def test_status_can_show_fewer_failures(made_db):
    done = status(made_db, "--failures", "2")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("Latest failures")[1].count("ValueError") == 2


def test_status_of_a_new_database(fresh_runtime, tmp_path):
    nw = fresh_runtime
    nw.runtime()  # creates the file, with nothing in it
    nw.shutdown()
    done = status(tmp_path / "q.duckdb")
    assert done.returncode == 0, done.stderr
    assert "No workers, crons or messages yet." in done.stdout


def bare_status(cwd, env_db=None):
    """``python -m nbworkers status`` with no PATH, in ``cwd``, NBWORKERS_DB set or not."""
    env = {k: v for k, v in os.environ.items() if k != "NBWORKERS_DB"}
    if env_db is not None:
        env["NBWORKERS_DB"] = str(env_db)
    return subprocess.run(
        [sys.executable, "-m", "nbworkers", "status"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


def test_status_without_a_path_reads_the_file_nbworkers_db_names(made_db, tmp_path):
    # (as the README's API table shows it: python -m nbworkers status)
    done = bare_status(tmp_path, env_db=made_db)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"nbworkers database {made_db}\n")


def test_status_without_a_path_reads_the_one_database_of_the_folder(made_db, tmp_path):
    project = tmp_path / "project"
    (project / ".nbworkers").mkdir(parents=True)
    made_db.rename(project / ".nbworkers" / "analysis.duckdb")
    done = bare_status(project)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("nbworkers database .nbworkers/analysis.duckdb\n")
    assert row(done.stdout, "resize", "worker", "paused"), done.stdout
    # With two, it names both and reads neither
    (project / ".nbworkers" / "other.duckdb").write_bytes(b"")
    two = bare_status(project)
    assert two.returncode == 2 and "analysis.duckdb" in two.stderr and "other.duckdb" in two.stderr


def test_status_without_a_path_or_a_database_here_says_where_one_would_be(tmp_path):
    done = bare_status(tmp_path)
    assert done.returncode == 2
    assert "there is no file" in done.stderr and ".nbworkers/<notebook name>.duckdb" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_status_reads_the_log_a_killed_process_left_without_touching_it(tmp_path):
    folder = tmp_path / "db"
    script = textwrap.dedent(
        f"""
        import os, signal
        import nbworkers as nw
        from nbworkers import api
        api.config().db_path = {str(folder / "q.duckdb")!r}
        nw.worker("w")(lambda e: None)
        nw.pause("w")
        nw.emit_many(range(5), "w")
        nw.flush()
        os.kill(os.getpid(), signal.SIGKILL)  # a crash: the file is never closed
        """
    )
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    assert (folder / "q.duckdb.wal").exists()
    before = snapshot(folder)

    done = status(folder / "q.duckdb")

    assert done.returncode == 0, done.stderr
    assert row(done.stdout, "w", "worker", "paused", 5, 0, 0, 0, 0, "-"), done.stdout
    assert "q.duckdb.wal is beside it" in done.stdout
    assert snapshot(folder) == before


def test_status_of_a_file_a_live_kernel_holds_names_the_kernel_and_what_to_do(kernel, tmp_path):
    kernel.ok("nw.pause('w')\nemit(1, 'w')\nnw.flush()")
    pid = kernel.eval("__import__('os').getpid()")

    done = status(tmp_path / "q.duckdb")

    assert done.returncode == 1
    assert done.stdout == ""
    message = done.stderr
    assert message.startswith("nbworkers status: ")
    assert f"PID {pid}" in message and "ipykernel" in message
    assert "in use by another process" in message
    assert "nw.sql(" in message and "%nbworkers" in message
    assert "shut the kernel down" in message
    # The kernel is not disturbed
    assert kernel.eval("nw.counts('w')['queued']") == 1
    assert kernel.eval("nw.sql('select queued from workers').fetchall()") == [(1,)]


def test_status_of_a_missing_file_says_so_and_creates_nothing(tmp_path):
    done = status(tmp_path / "nope" / "q.duckdb")
    assert done.returncode == 2
    assert "there is no file" in done.stderr and ".nbworkers/<notebook name>.duckdb" in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_status_of_a_folder_lists_its_databases(tmp_path):
    (tmp_path / "a.duckdb").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("x")
    done = status(tmp_path)
    assert done.returncode == 2
    assert "is a folder" in done.stderr and "a.duckdb" in done.stderr
    assert "notes.txt" not in done.stderr
    # and what to run instead (a new user's two databases in .nbworkers/ left them guessing)
    assert f"Give one as PATH: python -m nbworkers status {tmp_path / 'a.duckdb'}" in done.stderr


@pytest.mark.parametrize("content", [b"", b"not a database\n", b'{"cells": []}'])
def test_status_of_a_file_that_is_not_a_database(tmp_path, content):
    path = tmp_path / "analysis.ipynb"
    path.write_bytes(content)
    before = snapshot(tmp_path)
    done = status(path)
    assert done.returncode == 2
    assert "cannot be read as a DuckDB database" in done.stderr
    assert ".nbworkers/<notebook name>.duckdb" in done.stderr
    assert snapshot(tmp_path) == before


def test_status_of_a_duckdb_file_that_is_not_nbworkers(tmp_path):
    path = tmp_path / "sales.duckdb"
    con = duckdb.connect(str(path))
    con.execute("create table sales (amount double); insert into sales values (1)")
    con.close()
    before = snapshot(tmp_path)
    done = status(path)
    assert done.returncode == 2
    assert "is a DuckDB database but not an nbworkers one" in done.stderr
    assert snapshot(tmp_path) == before


def test_help_explains_the_command_and_its_exit_codes():
    done = subprocess.run(
        [sys.executable, "-m", "nbworkers", "status", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0
    text = done.stdout
    assert "read-only" in text and "never changed" in text
    assert "exit codes: 0 shown; 1 the file is held by another process; 2" in text
    top = subprocess.run(
        [sys.executable, "-m", "nbworkers"], capture_output=True, text=True, timeout=120
    )
    assert top.returncode == 2 and "status" in top.stderr


def test_the_views_read_a_file_from_before_the_newer_columns(tmp_path):
    """A file of the first schema (no dead_letters table, no retry or kind columns) reads
    through the same views, read-only; kinds are guessed from what ran."""
    path = str(tmp_path / "old.duckdb")
    con = duckdb.connect(path)
    con.execute(
        """CREATE TABLE meta (key VARCHAR, value VARCHAR);
           CREATE TABLE messages (seq BIGINT, worker VARCHAR, enqueued_at DOUBLE,
                                  attempt INTEGER, data BLOB);
           CREATE TABLE workers (name VARCHAR, paused BOOLEAN, done BIGINT, failed BIGINT,
                                 last_run DOUBLE, skipped BIGINT);
           CREATE TABLE traces (seq BIGINT, worker VARCHAR, message_seq BIGINT,
                                started_at DOUBLE, duration DOUBLE, input BLOB, result BLOB,
                                result_repr VARCHAR, stdout VARCHAR, error VARCHAR,
                                replay BOOLEAN);
           INSERT INTO meta VALUES ('next_seq', '9');
           INSERT INTO messages VALUES (5, 'w', 1700000000, 1, 'x'::BLOB),
                                       (6, 'orphan', 1700000001, 1, 'y'::BLOB);
           INSERT INTO workers VALUES ('w', false, 3, 1, NULL, 0),
                                      ('tick', true, 2, 0, 1700000100, 4);
           INSERT INTO traces VALUES (7, 'w', 4, 1700000050, 0.5, NULL, NULL, 'None', '',
                                      'Traceback...\nKeyError: ''k''\n', false);"""
    )
    con.close()
    before = (tmp_path / "old.duckdb").read_bytes()

    status = read_status(path)

    by_name = {w.name: w for w in status.workers}
    assert by_name["w"].kind == "worker" and by_name["w"].queued == 1
    assert by_name["tick"].kind == "cron" and by_name["tick"].skipped == 4
    assert by_name["orphan"].kind is None and by_name["orphan"].queued == 1
    assert by_name["w"].dead == 0 and by_name["w"].retried == 0
    (failure,) = status.failures
    assert (failure.trace_id, failure.message_id, failure.error_line) == (
        "t7",
        "m4",
        "KeyError: 'k'",
    )
    assert status.schema_version is None
    assert (tmp_path / "old.duckdb").read_bytes() == before


# ----- issue #14.9: status runs no SQL a file defines, and its time is bounded ------------------

NBWORKERS_TABLES = {
    "meta": "key VARCHAR, value VARCHAR",
    "messages": "seq BIGINT, worker VARCHAR, enqueued_at DOUBLE, attempt INTEGER, data BLOB",
    "workers": "name VARCHAR, paused BOOLEAN, done BIGINT, failed BIGINT, last_run DOUBLE, "
    "skipped BIGINT",
    "traces": "seq BIGINT, worker VARCHAR, message_seq BIGINT, started_at DOUBLE, "
    "duration DOUBLE, input BLOB, result BLOB, result_repr VARCHAR, stdout VARCHAR, "
    "error VARCHAR, replay BOOLEAN",
}


def crafted(path, *statements, replace=()):
    """An nbworkers-looking file: its tables, except those in ``replace``, then ``statements``."""
    con = duckdb.connect(str(path))
    try:
        for table, columns in NBWORKERS_TABLES.items():
            if table not in replace:
                con.execute(f"CREATE TABLE {table} ({columns})")
        for statement in statements:
            con.execute(statement)
    finally:
        con.close()


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_text("the-password-is-hunter2")
    return path


def test_status_never_reads_a_workers_view_that_reads_a_local_file(tmp_path, secret):
    path = tmp_path / "sent.duckdb"
    crafted(
        path,
        f"""CREATE VIEW workers AS SELECT content AS name, false AS paused, 0::BIGINT AS done,
                   0::BIGINT AS failed, NULL::DOUBLE AS last_run, 0::BIGINT AS skipped
            FROM read_text('{secret}')""",
        replace=("workers",),
    )
    before = snapshot(tmp_path)

    done = status(path)

    assert "hunter2" not in done.stdout + done.stderr
    assert done.returncode == 2
    assert "'workers' is a view, not a table" in done.stderr
    assert "runs no SQL a file defines" in done.stderr
    assert snapshot(tmp_path) == before


def test_status_never_runs_a_slow_view(tmp_path):
    path = tmp_path / "slow.duckdb"
    crafted(
        path,
        """CREATE VIEW messages AS SELECT a.range AS seq, 'w' AS worker, 0::DOUBLE AS enqueued_at,
                  1 AS attempt, NULL::BLOB AS data
           FROM range(1000000) a, range(1000000) b""",
        replace=("messages",),
    )

    done = status(path)  # the helper's own bound: 120 s

    assert done.returncode == 2
    assert "'messages' is a view, not a table" in done.stderr


def test_status_never_calls_a_function_the_file_defines(tmp_path, secret):
    """A macro in the file named like a built-in function status uses (trim, in a failure's
    error line) is not called: status reads the file as an attached database, never searched
    for functions."""
    path = tmp_path / "macro.duckdb"
    crafted(
        path,
        f"CREATE MACRO trim(x) AS (SELECT content FROM read_text('{secret}'))",
        "INSERT INTO workers VALUES ('w', false, 0, 1, NULL, 0)",
        "INSERT INTO traces VALUES (1, 'w', 1, 1700000000, 0.1, NULL, NULL, 'None', '', "
        "'Traceback...\nValueError: bad\n', false)",
    )

    done = status(path)

    assert "hunter2" not in done.stdout + done.stderr
    assert done.returncode == 0, done.stderr
    assert "ValueError: bad" in done.stdout


def test_status_refuses_a_generated_column(tmp_path, secret):
    path = tmp_path / "generated.duckdb"
    crafted(
        path,
        "CREATE TABLE workers (name VARCHAR GENERATED ALWAYS AS (repeat('x', 3)), "
        "paused BOOLEAN, done BIGINT, failed BIGINT, last_run DOUBLE, skipped BIGINT)",
        replace=("workers",),
    )
    done = status(path)
    assert done.returncode == 2
    assert "'workers' has a computed column (name)" in done.stderr


def test_status_gives_up_after_its_time_limit(tmp_path):
    """Reading is bounded: a file too big to read within --timeout is refused, saying how to
    wait longer."""
    path = tmp_path / "big.duckdb"
    crafted(
        path,
        "INSERT INTO messages SELECT range, 'w' || (range % 1000), range, 1, NULL "
        "FROM range(20000000)",
    )

    done = status(path, "--timeout", "0.01")

    assert done.returncode == 3, done.stderr
    assert "took longer than 0.01 s" in done.stderr and "--timeout" in done.stderr


def test_status_of_a_file_whose_tables_were_changed_by_hand_says_so_with_exit_2(tmp_path):
    # nbworkers' table names, with columns of other types (a file changed by hand, or another
    # tool's): status says the file is not one it can read (exit 2), no DuckDB traceback and
    # not exit 1, which means "held by another process".
    path = tmp_path / "odd.duckdb"
    con = duckdb.connect(str(path))
    con.execute(
        """create table meta (key integer);
           create table messages (seq varchar, worker integer, data varchar);
           create table traces (seq varchar, error integer);
           create table workers (name integer, paused varchar, done varchar);
           insert into workers values (1, 'maybe', 'lots')"""
    )
    con.close()
    done = subprocess.run(
        [sys.executable, "-m", "nbworkers", "status", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert str(path) in done.stderr and "cannot be read" in done.stderr
