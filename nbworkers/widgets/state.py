"""What a panel's browser view is sent, as plain data made from a runtime snapshot: pure
functions, so the kernel's side of the panel is tested without a browser.

Times go as absolute timestamps (seconds since the epoch, with the kernel's ``now``), so that
the browser computes "in 12 min" and "3 s ago" itself and ticks them every second. Text from
events, results, output and tracebacks goes as strings the browser shows as text.
"""

from __future__ import annotations

from datetime import datetime

from .. import progress
from ..engine.snapshot import WorkerSnapshot
from ..fingerprint import error_line
from ..trace import Trace, preview

# Longest text of one block of a trace's detail (input, result, printed, traceback)
MAX_TEXT = 4000
INPUT_PREVIEW = 60  # characters of a trace's input shown in its row
LONG_RUN_S = 10.0  # a run going for longer is called out, with how long it has taken


def facts(snap: WorkerSnapshot) -> list[str]:
    """The worker's settings at a glance: executor, concurrency, retries, time limit, rate..."""
    if not snap.defined:
        return []
    policy = snap.policy
    shown = [f"runs in {policy.executor}"]
    if snap.kind == "worker":
        shown.append(f"concurrency {snap.concurrency}")
    if policy.retries:
        shown.append(f"retries {policy.retries} (backoff {policy.backoff_s:g} s)")
    if policy.timeout_s is not None:
        shown.append(f"time limit {policy.timeout_s:g} s")
    if policy.rate is not None:
        shown.append(f"rate {policy.rate}")
    if policy.batch is not None:
        shown.append(f"batches of {policy.batch:,} (wait {policy.batch_wait_s:g} s)")
    if policy.ttl_s is not None:
        shown.append(f"ttl {policy.ttl_s:g} s")
    if policy.keep is not None:
        shown.append(f"keeps {policy.keep:,} traces")
    return shown


def badge(snap: WorkerSnapshot) -> str:
    if not snap.defined:
        return "removed" if snap.removed else "not defined"
    return "paused" if snap.paused else "running"


def notices(snap: WorkerSnapshot) -> list[dict]:
    """Lines under the counts, each with a tone ("warn", "error" or "muted")."""
    shown = []
    if snap.removed:
        shown.append(
            _notice(
                "removed (nw.remove): no run starts; its queued messages wait, unhandled, "
                "until it is defined again (run its cell)",
                "muted",
            )
        )
    if snap.stopping_ids:
        shown.append(
            _notice(
                f"stop asked: {', '.join(snap.stopping_ids)} (a run on a thread stops at its "
                "next Python line; message.stopping is True)",
                "warn",
            )
        )
    if snap.paused and snap.pause_reason:
        shown.append(_notice(snap.pause_reason, "warn"))
    if snap.failing:
        shown.append(_notice(f"failing: its last {snap.failing:,} runs failed in a row", "error"))
    if snap.policy.rate is not None and snap.defined and not snap.paused:
        # a line while the rate applies, whether a run waits for it or not: it does not come
        # and go (and move what is below) with each token
        rate_wait_s = snap.counts.get("rate_wait_s")
        shown.append(
            _notice(
                f"rate limit {snap.policy.rate}: "
                + (
                    "a run may start now"
                    if rate_wait_s is None
                    else f"waiting for it, the next run may start in {rate_wait_s:.1f} s"
                ),
                "muted" if rate_wait_s is None else "warn",
            )
        )
    if any(snap.priorities):  # a priority other than 0
        by = " · ".join(f"{n:,} at {p}" for p, n in snap.priorities.items())
        shown.append(_notice(f"ready by priority (higher first): {by}", "muted"))
    if snap.schedule_error:
        shown.append(_notice(f"no next run: {snap.schedule_error}", "error"))
    if snap.last_error:
        shown.append(_notice(f"latest error: {error_line(snap.last_error)}", "error"))
    return shown


def _notice(text: str, tone: str) -> dict:
    return {"text": text, "tone": tone}


def header(snap: WorkerSnapshot) -> dict:
    """Everything above the traces: name, badge, settings, counts, times, runs going."""
    counts = snap.counts
    shown_counts = {k: counts[k] for k in ("queued", "running", "done", "failed")}
    for extra in ("retried", "dead", "expired", "skipped"):
        if counts.get(extra):
            shown_counts[extra] = counts[extra]
    zone = snap.zone
    return {
        "name": snap.name,
        "kind": snap.kind,
        "badge": badge(snap),
        "facts": facts(snap),
        "concurrency": snap.concurrency,
        "counts": shown_counts,
        "now": snap.now,
        "oldest_at": snap.oldest_s if counts["queued"] else None,
        "delayed": snap.delayed,
        "next_due_at": snap.next_due_s if snap.delayed else None,
        "schedule": snap.schedule,
        "next_run_at": snap.next_run_s,
        # its time of day in the cron's zone (the browser's may be another)
        "next_run_clock": None if snap.next_run_s is None else clock(snap.next_run_s, zone),
        "last_run_at": snap.last_run_s,
        "long_run_s": LONG_RUN_S,
        "notices": notices(snap),
        "running": [
            {"id": id_, "started_at": started, **_progress(shown)}
            for id_, started, shown in zip(
                snap.running_ids, snap.running_started, snap.running_progress, strict=False
            )
        ],
        "failures": [
            {"fingerprint": fingerprint, "title": title, "count": count}
            for fingerprint, title, count in snap.failures
        ],
    }


def _progress(shown: progress.Progress | None) -> dict:
    """A run's progress as the browser draws it: the numbers (a bar), and in words."""
    if shown is None:
        return {"progress": None, "progress_text": None}
    return {"progress": shown.as_dict(), "progress_text": shown.text()}


def history(snap: WorkerSnapshot) -> list[list]:
    """The sparklines' samples, oldest first: [at, queued, running, done, failed]."""
    return [list(sample) for sample in snap.history]


def clock(ts: float, zone=None) -> str:
    """The time of day at ``ts`` in ``zone`` (a cron's) or the kernel's local time."""
    return datetime.fromtimestamp(ts, zone).strftime("%H:%M:%S")


def status(trace: Trace) -> str:
    """How a run ended: "ok", "error", "timeout" or "stopped"."""
    if trace.ok:
        return "ok"
    if trace.timed_out:
        return "timeout"
    return "stopped" if (trace.error or "").startswith("Stopped:") else "error"


def shown_input(trace: Trace, kind: str) -> str:
    """A trace's input as text; unpickling it runs user code, so it is asked once a trace."""
    if kind == "cron":
        return "(no input: a cron run)"
    try:
        return preview(trace.input)
    except Exception as exc:  # noqa: BLE001 - an input whose class is gone still shows
        return f"(cannot be shown: {exc})"


def row(trace: Trace, kind: str) -> dict:
    """One row of the traces table."""
    text = shown_input(trace, kind)
    if len(text) > INPUT_PREVIEW:
        text = text[: INPUT_PREVIEW - 1] + "…"
    return {
        "id": trace.id,
        "message_id": trace.message_id,
        "status": status(trace),
        "started_at": trace.started_at_s,
        "duration": trace.duration,
        "attempt": trace.attempt,
        "replay": trace.replay,
        "batch": trace.batch_size,
        "input": text,
    }


def _cut(text: str) -> str:
    if len(text) > MAX_TEXT:
        return text[:MAX_TEXT] + f"\n… ({len(text) - MAX_TEXT:,} more characters)"
    return text


def detail(trace: Trace, kind: str) -> dict:
    """A selected trace: its facts and blocks of text (input, result, printed, traceback),
    and its recorded calls."""
    blocks = [{"title": "input", "text": _cut(shown_input(trace, kind)), "tone": ""}]
    if trace.ok:
        blocks.append({"title": "result", "text": _cut(trace.result_repr), "tone": ""})
    if trace.stdout:
        blocks.append({"title": "printed", "text": _cut(trace.stdout), "tone": ""})
    if trace.error:
        blocks.append({"title": "traceback", "text": _cut(trace.error), "tone": "error"})
    shown = progress.shown(trace.progress, [trace.stdout])
    return {
        **row(trace, kind),
        "message_ids": trace.message_ids if trace.batch_size is not None else [],
        **_progress(shown),
        "blocks": blocks,
        "calls": None if trace.calls is None else calls(trace.calls),
    }


def calls(recorded) -> dict:
    """A trace's ``@nw.recorded`` calls, in call order: what each returned or raised, whether
    a replay took it from the trace, why a value was not kept; and how many were not kept."""
    return {
        "calls": [
            {
                "name": call.name,
                "args": call.args,
                "result": None if call.error is not None else call.result,
                "error": call.error,
                "replayed": bool(call.replayed),
                "note": call.note,
            }
            for call in recorded
        ],
        "note": recorded.note,
        "dropped": recorded.dropped,
    }


def graph(
    defined: list[tuple[str, str, bool, dict]],
    unhandled: list[tuple[str, int]],
    flows: dict[tuple[str, str], int],
) -> dict:
    """The dashboard's pipeline: ``defined`` (name, kind, paused, counts) in definition order,
    then the names nobody handles (``unhandled``: name, queued; and any name emitted to), and
    an edge per (worker, name it emitted to) with its count."""
    nodes = [
        {
            "name": name,
            "kind": kind,
            "defined": True,
            "paused": paused,
            **{k: counts.get(k, 0) for k in ("queued", "running", "done", "failed")},
        }
        for name, kind, paused, counts in defined
    ]
    known = {node["name"] for node in nodes}
    waiting = dict(unhandled)
    for (_, target), _count in sorted(flows.items()):
        waiting.setdefault(target, 0)
    for name, queued in waiting.items():
        if name not in known:
            known.add(name)
            nodes.append(
                {
                    "name": name,
                    "kind": "worker",
                    "defined": False,
                    "paused": False,
                    "queued": queued,
                    "running": 0,
                    "done": 0,
                    "failed": 0,
                }
            )
    edges = [
        {"from": source, "to": target, "count": count}
        for (source, target), count in sorted(flows.items())
        if source in known
    ]
    return {"nodes": nodes, "edges": edges}
