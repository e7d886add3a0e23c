"""The panel shown under a ``%%worker`` or ``%%cron`` cell: state, counts, controls, traces."""

from __future__ import annotations

import threading
import time

import ipywidgets as widgets

from .. import api
from ..develop import live_view
from ..engine.events import NOTIFY_IDLE_S, NOTIFY_RUNNING_S
from ..errors import NBWorkersError
from . import render, state
from .hub import register
from .view import WorkerView

# While runs come and go, the Stop button's choice of runs follows at most this often.
STOP_CHOICE_S = 3.0
# The traces table shows at most the newest this many of the traces kept (--keep may keep
# thousands): each new trace sends the rows again, and the browser draws each in the timeline.
TABLE_ROWS = 50


def _action(panel, fn):
    """A button callback that shows its error in the panel instead of losing it in a log."""

    def callback(*_):
        try:
            fn()
            panel.notice.value = ""
        except Exception as exc:  # noqa: BLE001 - shown to the user in the panel
            # as text (a Label): an error's message may hold anything, the user's data too
            panel.notice.value = f"{type(exc).__name__}: {exc}"
        panel.refresh()

    return callback


class Panel(widgets.VBox):
    """Live view of one worker or cron. Widget callbacks may run on a subshell thread while
    the runtime refreshes the panel from its notifier thread: ``_lock`` orders them."""

    def __init__(self, name: str, removable: bool = False, **kwargs):
        self.name = name
        self._removable = removable  # a Remove button (the dashboard's rows)
        self._running_ids: tuple[str, ...] = ()  # as the Stop button shows them
        self._running_attempts: dict[str, int] = {}  # their attempts, as shown
        self._stop_shown_at = 0.0
        self._lock = threading.RLock()
        self._traces: dict[str, object] = {}
        self._shown: object = None  # the trace whose detail the view shows
        self._clickable: dict[str, object] = {}  # the traces of the rows lately shown, by id
        self._kind = "worker"
        self._running = False  # a run was going at the last refresh
        self._timeout_s = None  # the worker's time limit, for live values
        self._live_token = 0  # the live values being computed (or shown), to drop stale ones
        self._refreshed = 0.0  # time.monotonic() of the last refresh
        self.notice = widgets.Label(style={"text_color": render.RED})
        self.notice.add_class("nbw-notice-label")  # wraps (nbworkers.css): read whole
        self.pause_button = widgets.Button(layout=widgets.Layout(width="auto"))
        self.run_now_button = widgets.Button(
            description="Run now",
            icon="bolt",
            tooltip="Run this cron once now (even while paused); its schedule does not move",
            layout=widgets.Layout(width="auto", display="none"),
        )
        self.requeue_button = widgets.Button(
            description="Requeue dead letters",
            icon="undo",
            tooltip="Queue every dead letter again as a new message, attempts from 1",
            layout=widgets.Layout(width="auto", display="none"),
        )
        self.discard_button = widgets.Button(
            description="Discard dead letters",
            icon="trash",
            tooltip="Drop every dead letter of this worker for good",
            layout=widgets.Layout(width="auto", display="none"),
        )
        # Stop: the running run (a choice of them when several go); Remove: two clicks.
        self.stop_choice = widgets.Dropdown(
            options=[],
            tooltip="The running message to stop",
            layout=widgets.Layout(width="8em", display="none"),
        )
        self.stop_button = widgets.Button(
            description="Stop",
            icon="stop",
            tooltip="Stop this run now (nw.stop): a failed attempt, retried if the worker has "
            "retries",
            layout=widgets.Layout(width="auto", display="none"),
        )
        self.remove_button = widgets.Button(
            description="Remove",
            icon="times",
            tooltip="Remove this handler (nw.remove): no new runs; its queued messages wait, "
            "unhandled. Asks to confirm",
            layout=widgets.Layout(width="auto", display="none"),
        )
        self.keep_button = widgets.Button(
            description="Keep it",
            tooltip="Do not remove it",
            layout=widgets.Layout(width="auto", display="none"),
        )
        self._confirming = False  # the first click of Remove was made
        self.view = WorkerView()  # header, counts, sparklines, timeline, traces (static/)
        # the traces table's rows, made once a trace: id -> (trace, row)
        self._rows: dict[str, tuple[object, dict]] = {}
        self.pause_button.on_click(_action(self, self._toggle_pause))
        self.run_now_button.on_click(_action(self, lambda: api.run_now(self.name)))
        self.requeue_button.on_click(_action(self, lambda: api.requeue(self.name)))
        self.discard_button.on_click(_action(self, lambda: api.discard(self.name)))
        self.stop_button.on_click(_action(self, self._stop))
        self.remove_button.on_click(_action(self, self._remove))
        self.keep_button.on_click(_action(self, lambda: self._confirm(False)))
        self.view.observe(self._on_select, "selected")
        self.view.on_msg(self._on_view_message)
        super().__init__(
            [
                widgets.HBox(
                    [
                        self.pause_button,
                        self.run_now_button,
                        self.requeue_button,
                        self.discard_button,
                        self.stop_choice,
                        self.stop_button,
                        self.remove_button,
                        self.keep_button,
                    ]
                ),
                self.notice,  # a line of its own: the buttons keep their places and widths
                self.view,
            ],
            # (the theme's own border colour: light or dark)
            layout=widgets.Layout(
                border="1px solid var(--jp-border-color2, #ddd)", padding="4px 8px", margin="4px 0"
            ),
            **kwargs,
        )
        # Stable hooks for styling and for the browser tests
        self.add_class("nbw-panel")
        self.pause_button.add_class("nbw-pause")
        self.run_now_button.add_class("nbw-run-now")
        self.stop_button.add_class("nbw-stop")
        self.stop_choice.add_class("nbw-stop-choice")
        self.remove_button.add_class("nbw-remove")
        self.refresh()
        register(self)

    def wants(self, names: set[str]) -> bool:
        """Whether a change to ``names`` (empty: time passed) concerns this panel: relative
        times change for a cron, and for a worker with a run going (how long it has taken)."""
        if self.name in names:
            return True
        ticking = self._kind == "cron" or self._running
        # Other workers' changes may keep the runtime from ever being idle: tick anyway
        every_s = NOTIFY_RUNNING_S if self._running else NOTIFY_IDLE_S
        stale = time.monotonic() - self._refreshed >= every_s
        return ticking and (not names or stale)

    def refresh(self) -> None:
        """Show the runtime's current state; sends only what changed."""
        rt = api.running()
        if rt is None:
            return
        with self._lock:
            # Read under the panel's lock: a refresh from a button's callback and one from the
            # notifier thread then show their snapshots in the order they were read, never an
            # older one over a newer one (nothing may change after to put it right).
            snap = rt.snapshot(self.name)
            self._kind = snap.kind
            self._timeout_s = snap.policy.timeout_s
            self._running = bool(snap.counts["running"])
            self._refreshed = time.monotonic()
            self._traces = {t.id: t for t in snap.traces}
            self.view.header = state.header(snap)
            samples = state.history(snap)
            if samples != self.view.history:  # a new sample: at most once a second
                self.view.history = samples
            paused = snap.paused
            self.pause_button.description = "Play" if paused else "Pause"
            self.pause_button.icon = "play" if paused else "pause"
            self.pause_button.button_style = "warning" if paused else ""
            self.pause_button.tooltip = (
                "Resume: start runs again"
                if paused
                else "Pause: start no new runs; queued messages wait (kept across restarts)"
            )
            self.run_now_button.layout.display = None if snap.kind == "cron" else "none"
            dead = snap.counts.get("dead", 0)
            for button in (self.requeue_button, self.discard_button):
                button.layout.display = None if dead else "none"
            self._show_stop(snap.running_ids, snap.running_attempts)
            removable = self._removable and snap.defined
            self.remove_button.layout.display = None if removable else "none"
            if not removable and self._confirming:
                self._confirm(False)
            self.requeue_button.description = f"Requeue {dead:,} dead"
            self.discard_button.description = f"Discard {dead:,} dead"
            self._show_rows(snap.traces)
            self._show(self.view.selected)

    def _show_rows(self, traces) -> None:
        """The traces table; a trace's row is made once (showing its input runs user code:
        its unpickling and repr)."""
        rows, kept = self._rows, {}
        for trace in traces[:TABLE_ROWS]:
            made = rows.get(trace.id)
            # (the same trace: after a move to another file, its ids may be another's)
            kept[trace.id] = (
                made if made and made[0] is trace else (trace, state.row(trace, self._kind))
            )
        # the rows the browser showed until now too: a row clicked as it left is still known
        self._clickable = {
            **{i: t for i, (t, _) in rows.items()},
            **{i: t for i, (t, _) in kept.items()},
        }
        self._rows = kept
        shown = [row for _, row in kept.values()]
        if shown != self.view.traces:
            self.view.traces = shown

    def _show_stop(self, ids: tuple[str, ...], attempts: tuple[int, ...] = ()) -> None:
        """The Stop button while runs go: of the one running, or of the one chosen. While
        runs come and go (a drain), the choice follows at most every STOP_CHOICE_S, so that
        the panel stays a few messages a second; what it shows is what Stop stops."""
        now = time.monotonic()
        shape = min(len(ids), 2)  # none, one, several: shown at once when it changes
        if shape == min(len(self._running_ids), 2) and now - self._stop_shown_at < STOP_CHOICE_S:
            return
        self._running_ids = ids
        self._running_attempts = dict(zip(ids, attempts, strict=False))
        self._stop_shown_at = now
        self.stop_button.layout.display = None if ids else "none"
        self.stop_choice.layout.display = None if len(ids) > 1 else "none"
        if tuple(self.stop_choice.options) != ids:
            chosen = self.stop_choice.value
            with self.stop_choice.hold_sync():
                self.stop_choice.options = ids
                self.stop_choice.value = chosen if chosen in ids else (ids[0] if ids else None)
        self.stop_button.description = f"Stop {ids[0]}" if len(ids) == 1 else "Stop"

    def _stop(self) -> None:
        ids = self._running_ids
        target = ids[0] if len(ids) == 1 else self.stop_choice.value
        # The attempt shown: a second click, once a retry of it started, stops nothing.
        attempt = self._running_attempts.get(target)
        if target is None or not api.stop(target, attempt=attempt):
            raise NBWorkersError(f"{target or 'that run'} is not running any more")

    def _confirm(self, confirming: bool) -> None:
        self._confirming = confirming
        self.remove_button.description = f"Confirm: remove {self.name}" if confirming else "Remove"
        self.remove_button.button_style = "danger" if confirming else ""
        self.keep_button.layout.display = None if confirming else "none"

    def _remove(self) -> None:
        if not self._confirming:
            self._confirm(True)  # the first click only asks
            return
        self._confirm(False)
        api.remove(self.name)

    def _on_select(self, change) -> None:
        with self._lock:
            self._show(change["new"])

    def _show(self, trace_id) -> None:
        trace = self._traces.get(trace_id)
        shown = self._shown
        gone = trace is None and bool(trace_id)
        if gone:
            # Runs went on and it left the traces kept (before or after it was clicked):
            # shown as it was, and said so
            same = shown is not None and shown.id == trace_id
            trace = shown if same else self._clickable.get(trace_id)
        if trace is not None and trace is shown:
            # A trace never changes, and showing its input runs user code (its unpickling
            # and repr): not again on every refresh of the notifier thread.
            if gone and not self.view.detail.get("gone"):
                self.view.detail = {**self.view.detail, "gone": True}
            return
        self._shown = trace
        if trace is None:  # (an id no row showed lately: say so, rather than wait for it)
            self.view.detail = {"id": trace_id, "missing": True} if trace_id else {}
        else:
            self.view.detail = {**state.detail(trace, self._kind), "gone": gone}
        self._live_token += 1  # live values of the trace shown before are stale
        self.view.live = {}

    def _on_view_message(self, _view, content, _buffers) -> None:
        """A button of the view, clicked in the browser: the selected trace's, or a failure
        group's."""
        if not isinstance(content, dict):
            return
        action, trace_id, group = content.get("action"), content.get("id"), content.get("group")
        if action == "send-again":
            _action(self, lambda: self._send_again(trace_id))()
        elif action == "live":
            _action(self, lambda: self._live(trace_id))()
        elif action == "requeue-group":
            _action(self, lambda: api.requeue(self.name, group=group))()
        elif action == "discard-group":
            _action(self, lambda: api.discard(self.name, group=group))()

    def _toggle_pause(self) -> None:
        if api.is_paused(self.name):
            api.resume(self.name)
        else:
            api.pause(self.name)

    def _send_again(self, trace_id: str | None) -> None:
        """Queue the trace's input again as a new message (counted in ``done`` like any)."""
        if trace_id:
            api.runtime().resend(self.name, trace_id)

    def _live(self, trace_id: str | None) -> None:
        """Live values of the selected trace, computed on an engine thread (user code must not
        run on the widget's thread) and shown below the trace when done."""
        if not trace_id:
            return
        with self._lock:
            self._live_token += 1
            token = self._live_token
            self.view.live = {"state": "running", "trace_id": trace_id, "limit_s": self._timeout_s}
        rt = api.runtime()
        timeout_s = self._timeout_s
        rt.registry.spawn(self._compute_live, "nbworkers-live", trace_id, token, timeout_s, rt)

    def _compute_live(self, trace_id: str, token: int, timeout_s: float | None, rt=None) -> None:
        rt = rt if rt is not None else api.runtime()

        def unwanted() -> bool:  # another trace or Live values asked for, or nbworkers stopping
            return token != self._live_token or rt.stopping

        try:
            live = api.live(self.name, trace_id, timeout_s=timeout_s, stop=unwanted)
            shown = {"state": "done", **live_view.data(live)}
        # On this thread nobody else would see it: shown in the panel, whatever it is
        except BaseException as exc:  # noqa: BLE001
            shown = {
                "state": "error",
                "trace_id": trace_id,
                "error": f"{type(exc).__name__}: {exc}",
            }
        with self._lock:
            if token == self._live_token:
                self.view.live = shown

    def _repr_mimebundle_(self, **kwargs):
        """The widget, and for front ends without widgets (nbconvert, a terminal) one line of
        plain text."""
        bundle = super()._repr_mimebundle_(**kwargs)
        rt = api.running()
        if isinstance(bundle, dict) and rt is not None:
            bundle["text/plain"] = render.status_text(rt.snapshot(self.name))
        return bundle

    def close(self) -> None:
        """Close the panel and every widget in it (live values being computed stop)."""
        with self._lock:
            self._live_token += 1
        for child in _descendants(self):
            child.close()
        super().close()


def _descendants(widget):
    for child in getattr(widget, "children", ()):
        yield from _descendants(child)
        yield child
