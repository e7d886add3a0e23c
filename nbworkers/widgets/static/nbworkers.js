// The browser side of nbworkers' views (nbworkers/widgets/view.py): a worker's or cron's panel
// (header, counts, sparklines, drain bar, runs going with their progress, timeline, traces
// table and the selected trace) and the dashboard's pipeline graph. Everything from events, results, output, tracebacks or names is set with
// textContent, never as HTML. Relative times are computed here from absolute timestamps and
// tick every second.

const SVG = "http://www.w3.org/2000/svg";
const WINDOW_S = 300; // the sparklines' span, at most
const MIN_WINDOW_S = 30; // ...and at least (a short history is drawn over this much)
const RATE_S = 10; // the drain rate is measured over this much of the latest history
const MAX_LANES = 8; // timeline lanes drawn (more are counted)
const MAX_RUNS = 4; // runs going listed one a line (more are counted)

export function num(n) {
  return Number(n).toLocaleString("en-US");
}

export function ago(seconds) {
  const s = Math.max(0, seconds);
  for (const [size, unit] of [[86400, "d"], [3600, "h"], [60, "min"]]) {
    if (s >= size) return `${Math.round(s / size)} ${unit}`;
  }
  return `${Math.round(s)} s`;
}

export function relative(at, now) {
  const d = at - now;
  if (Math.abs(d) < 0.5) return d >= 0 ? "now" : "just now";
  return d > 0 ? `in ${ago(d)}` : `${ago(-d)} ago`;
}

export function duration(s) {
  if (Math.round(s * 1e6) < 1000) return `${Math.round(s * 1e6)} µs`;
  if (s < 0.00999) return `${(s * 1e3).toFixed(2)} ms`;
  if (s < 0.99995) return `${(s * 1e3).toFixed(1)} ms`;
  if (s < 9.995) return `${s.toFixed(2)} s`;
  if (s < 119.95) return `${s.toFixed(1)} s`;
  return ago(s);
}

export function clock(ts) {
  const d = new Date(ts * 1000);
  return [d.getHours(), d.getMinutes(), d.getSeconds()]
    .map((v) => String(v).padStart(2, "0"))
    .join(":");
}

function day(ts) {
  const d = new Date(ts * 1000);
  return [d.getFullYear(), d.getMonth() + 1, d.getDate()].map((v) => String(v).padStart(2, "0")).join("-");
}

function make(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

// Runs drawn on lanes: each goes on the first lane free when it starts.
export function lanes(runs) {
  const ends = [];
  const placed = [...runs]
    .sort((a, b) => a.start - b.start)
    .map((run) => {
      let lane = ends.findIndex((end) => end <= run.start);
      if (lane < 0) lane = ends.push(0) - 1;
      ends[lane] = run.end;
      return { ...run, lane };
    });
  return { placed, count: ends.length };
}

// How fast the queue drains, from the history [at, queued, running, done, failed], oldest first.
export function drain(history) {
  if (!history.length) return { rate: 0, left: 0, fraction: 0 };
  const last = history[history.length - 1];
  const ended = (s) => s[3] + s[4];
  const rate = recentRate(history, 3) + recentRate(history, 4);
  const left = last[1] + last[2];
  let base = ended(history[0]); // what had ended when the backlog began
  for (const s of history.slice(0, -1)) {
    if (s[1] + s[2] === 0) base = ended(s);
  }
  const doneSince = Math.max(0, ended(last) - base);
  // nothing left: full once something ended lately (drained), empty when idle
  const fraction = left === 0 ? (rate > 0 ? 1 : 0) : doneSince / (left + doneSince);
  return { rate, left, fraction };
}

// The rate of a counter column over the latest RATE_S of the history.
export function recentRate(history, column) {
  if (history.length < 2) return 0;
  const last = history[history.length - 1];
  let first = history[0];
  for (const s of history) {
    if (s[0] <= last[0] - RATE_S) first = s;
  }
  const span = Math.max(1, last[0] - first[0]); // (one failure in 0.2 s is not "5/s")
  return Math.max(0, last[column] - first[column]) / span;
}

function sparkline(history, now, pick, cls, label, unit, current) {
  const w = 120;
  const h = 24;
  const box = make("span", `nbw-spark-box ${cls}`);
  const chart = svg("svg", { viewBox: `0 0 ${w} ${h}`, class: "nbw-spark", preserveAspectRatio: "none" });
  const points = pick(history);
  const span = Math.min(WINDOW_S, Math.max(MIN_WINDOW_S, history.length ? now - history[0][0] : 0));
  const tip = svg("title");
  tip.textContent = `${label}, the last ${ago(span)}`;
  chart.appendChild(tip);
  const top = Math.max(1, ...points.map((p) => p[1]));
  const x = (at) => Math.max(0, Math.min(w, w - ((now - at) / span) * w));
  const y = (v) => h - 1 - (v / top) * (h - 2);
  let d = "";
  points.forEach(([at, v], i) => {
    d += i === 0 ? `M${x(at).toFixed(1)},${y(v).toFixed(1)}` : `H${x(at).toFixed(1)}V${y(v).toFixed(1)}`;
  });
  if (points.length) d += `H${w}`;
  chart.appendChild(svg("path", { d, class: "nbw-spark-line" }));
  const last = current;
  const value = unit ? `${last.toFixed(last < 10 ? 1 : 0)}${unit}` : num(last);
  box.append(make("span", "nbw-spark-label", label), chart, make("span", "nbw-spark-value", value));
  return box;
}

// Done and failed per second between samples, as steps.
function perSecond(history, column) {
  const out = [];
  for (let i = 1; i < history.length; i++) {
    const dt = history[i][0] - history[i - 1][0];
    if (dt > 0) out.push([history[i - 1][0], Math.max(0, history[i][column] - history[i - 1][column]) / dt]);
  }
  if (history.length) out.push([history[history.length - 1][0], out.length ? out[out.length - 1][1] : 0]);
  return out;
}

function bar(fraction, cls) {
  const outer = make("div", `nbw-bar ${cls || ""}`);
  const inner = make("div", "nbw-bar-fill");
  if (fraction === null || fraction === undefined) {
    outer.classList.add("nbw-bar-unknown");
  } else {
    inner.style.width = `${(Math.max(0, Math.min(1, fraction)) * 100).toFixed(1)}%`;
  }
  outer.appendChild(inner);
  return outer;
}

function progressLine(progress, text) {
  const line = make("span", "nbw-progress");
  const fraction = progress.total ? progress.done / progress.total : null;
  line.append(bar(fraction, "nbw-progress-bar"), make("span", "nbw-progress-text", text));
  return line;
}

// Keeps ``parent``'s first children in step with ``items``: an element per key, made once by
// ``create`` (which returns its parts, ``el`` the element) and kept while its key is wanted, so
// that a click, the keyboard focus or a bar's transition survives the updates; ``update``
// refreshes its parts in place. An element is moved only when out of place (a move restarts
// its transitions). Children no key owns stay after them.
export function keyed(parent, kept, items, key, create, update) {
  const wanted = new Set(items.map(key));
  for (const [k, parts] of kept) {
    if (!wanted.has(k)) {
      parts.el.remove();
      kept.delete(k);
    }
  }
  items.forEach((item, i) => {
    const k = key(item);
    let parts = kept.get(k);
    if (!parts) {
      parts = create(item);
      kept.set(k, parts);
    }
    if (update) update(parts, item);
    if (parent.children[i] !== parts.el) parent.insertBefore(parts.el, parent.children[i] || null);
  });
}

const OUTCOME = { ok: "ok", error: "ERROR", timeout: "TIMEOUT", stopped: "STOPPED" };

function renderPanel({ model, el }) {
  const root = make("div", "nbw-view");
  const status = make("div", "nbw-status");
  const head = make("div", "nbw-head");
  const counts = make("div", "nbw-counts");
  const times = make("div", "nbw-times");
  const notices = make("div", "nbw-notices");
  const failures = make("div", "nbw-failures");
  status.append(head, counts, times, notices, failures);
  const flow = make("div", "nbw-flow");
  const running = make("div", "nbw-running");
  const timeline = make("div", "nbw-timeline");
  const table = make("table", "nbw-table nbw-traces");
  const detail = make("div", "nbw-detail nbw-trace-view");
  const liveBox = make("div", "nbw-live-view");
  root.append(status, flow, running, timeline, make("div", "nbw-caption", "Last traces, newest first: select one to see it"), table, detail, liveBox);
  el.appendChild(root);
  let skew = 0; // browser clock minus kernel clock
  let wentOn = false; // runs were going at the last tick
  const kernelNow = () => Date.now() / 1000 - skew;

  function drawHead() {
    const h = model.get("header") || {};
    if (!h.name) return;
    skew = Date.now() / 1000 - h.now;
    const badge = { running: "▶ running", paused: "❚❚ paused" }[h.badge] || h.badge;
    head.replaceChildren(
      make("b", "nbw-name", h.name),
      make("span", "nbw-kind", h.kind),
      make("span", `nbw-badge nbw-badge-${String(h.badge).replace(/\W/g, "-")}`, badge),
      make("span", "nbw-facts", (h.facts || []).join(" · ")),
    );
    counts.replaceChildren(
      ...Object.entries(h.counts || {}).map(([label, n]) => {
        const c = make("span", `nbw-count nbw-count-${label}${n && ["failed", "dead"].includes(label) ? " nbw-bad" : ""}`);
        c.append(make("span", "nbw-count-label", label), " ", make("span", "nbw-count-num", num(n)));
        return c;
      }),
    );
    notices.replaceChildren(...(h.notices || []).map((n) => make("div", `nbw-notice nbw-${n.tone}`, n.text)));
    drawFailures(h.failures || []);
    tick();
  }

  // The biggest groups of dead letters by cause, each with its Requeue and Discard. A group's
  // row is kept while it is shown (its count changes in place), so a button keeps its focus.
  const groupRows = new Map();
  function drawFailures(groups) {
    const focused = failures.contains(document.activeElement) ? document.activeElement : null;
    keyed(
      failures,
      groupRows,
      groups,
      (g) => g.fingerprint,
      (g) => {
        const el = make("div", "nbw-failure");
        el.dataset.group = g.fingerprint;
        const title = make("span", "nbw-failure-title");
        el.append(
          button("Requeue", "nbw-requeue-group", "Queue this group's dead letters again as new messages (after fixing the cell): nw.requeue(name, group=...)", { action: "requeue-group", group: g.fingerprint }),
          button("Discard", "nbw-discard-group", "Drop this group's dead letters for good: nw.discard(name, group=...)", { action: "discard-group", group: g.fingerprint }),
          title,
          make("span", "nbw-muted", ` [${g.fingerprint}]`),
        );
        return { el, title };
      },
      (parts, g) => {
        parts.title.textContent = `${num(g.count)} \u00d7 ${g.title}`;
      },
    );
    if (focused && failures.contains(focused) && document.activeElement !== focused) focused.focus();
  }

  // The history (engine/history.py) up to now: nothing changed since its last sample that the
  // kernel would have told (it sends a new header at once when something changes).
  function historyNow(now) {
    const history = model.get("history") || [];
    if (!history.length) return history;
    const c = (model.get("header") || {}).counts || {};
    const current = [now, c.queued || 0, c.running || 0, c.done || 0, c.failed || 0];
    return history[history.length - 1][0] < now ? [...history, current] : history;
  }

  function drawFlow(now) {
    const history = historyNow(now);
    const { rate, left, fraction } = drain(history);
    let words = "idle: nothing queued or running";
    if (left && rate > 0) words = `${num(left)} left · ${rate.toFixed(rate < 10 ? 1 : 0)} msg/s · empty in ~${ago(left / rate)}`;
    else if (left) words = `${num(left)} left · none ended in the last ${RATE_S} s`;
    else if (rate > 0) words = `drained · ${rate.toFixed(rate < 10 ? 1 : 0)} msg/s`;
    const drainBox = make("div", "nbw-drain");
    drainBox.title = "Drain: the share of the current backlog done, how fast it goes and when it will be empty";
    drainBox.append(bar(fraction, "nbw-drain-bar"), make("span", "nbw-drain-text", words));
    flow.replaceChildren(
      sparkline(history, now, (s) => s.map((x) => [x[0], x[1]]), "nbw-spark-queued", "queued", "", history.length ? history[history.length - 1][1] : 0),
      sparkline(history, now, (s) => perSecond(s, 3), "nbw-spark-done", "done", "/s", recentRate(history, 3)),
      sparkline(history, now, (s) => perSecond(s, 4), "nbw-spark-failed", "failed", "/s", recentRate(history, 4)),
      drainBox,
    );
  }

  function tick() {
    const h = model.get("header") || {};
    if (!h.name) return;
    const now = kernelNow();
    const parts = [];
    if (h.oldest_at) parts.push(`oldest queued ${relative(h.oldest_at, now)}`);
    if (h.delayed) parts.push(`${num(h.delayed)} waiting for a delay or a retry, the next due ${h.next_due_at ? relative(h.next_due_at, now) : "later"}`);
    if (h.schedule) {
      let s = h.schedule;
      if (h.next_run_at) s += ` · next run ${relative(h.next_run_at, now)} (${h.next_run_clock})`;
      else if (h.badge === "paused") s += " · paused: no next run";
      if (h.last_run_at) s += ` · last run ${relative(h.last_run_at, now)}`;
      parts.push(s);
    }
    times.textContent = parts.length ? parts.join(" · ") : "\u00a0";
    drawRunning(h.running || [], now, h.long_run_s, h.concurrency || 1);
    drawFlow(now);
    const going = (h.running || []).length;
    if (going || wentOn || !timeline.firstChild) drawTimeline(now); // (bars grow; once more at the end)
    wentOn = going > 0;
  }

  // The runs going, a line each, updated in place (a bar keeps its element, so it slides).
  const runLines = new Map();
  function makeRunLine(r) {
    const el = make("div", "nbw-run");
    const took = make("span", "nbw-run-took");
    const fill = make("div", "nbw-bar-fill");
    const progressBar = make("div", "nbw-bar nbw-progress-bar");
    progressBar.appendChild(fill);
    const text = make("span", "nbw-progress-text");
    const progress = make("span", "nbw-progress");
    progress.append(progressBar, text);
    el.append(make("span", "nbw-run-id", r.id), took, progress);
    return { el, took, fill, progressBar, text, progress };
  }
  const idle = make("div", "nbw-run nbw-muted", "no run going");
  const more = make("div", "nbw-more");
  running.append(idle, more); // the run lines go before them
  function drawRunning(runs, now, longRunS, concurrency) {
    // as many lines as runs may go at once (up to MAX_RUNS, and one for "more"): reserved
    running.style.minHeight = `${1.6 * (Math.min(concurrency, MAX_RUNS) + (concurrency > MAX_RUNS ? 1 : 0))}em`;
    keyed(running, runLines, runs.slice(0, MAX_RUNS), (r) => r.id, makeRunLine, (parts, r) => {
      const took = Math.max(0, now - r.started_at);
      parts.took.textContent = took < 1 ? "running" : `running ${ago(took)}`;
      parts.took.classList.toggle("nbw-warn", took >= longRunS);
      parts.progress.hidden = !r.progress;
      if (r.progress) {
        const known = r.progress.total ? Math.max(0, Math.min(1, r.progress.done / r.progress.total)) : null;
        parts.progressBar.classList.toggle("nbw-bar-unknown", known === null);
        parts.fill.style.width = known === null ? "" : `${(known * 100).toFixed(1)}%`;
        parts.text.textContent = r.progress_text;
      }
    });
    more.textContent = runs.length > MAX_RUNS ? `and ${num(runs.length - MAX_RUNS)} more running` : "";
    idle.hidden = runs.length > 0;
  }

  function drawTimeline(now) {
    const h = model.get("header") || {};
    const runs = (model.get("traces") || []).map((t) => ({ start: t.started_at, end: t.started_at + t.duration, status: t.status, tip: `${t.message_id} attempt ${t.attempt} · ${OUTCOME[t.status]} · ${duration(t.duration)}` }));
    for (const r of h.running || []) runs.push({ start: r.started_at, end: Math.max(now, r.started_at), status: "running", tip: `${r.id} · running` });
    if (!runs.length) {
      timeline.replaceChildren(make("div", "nbw-muted", "Timeline: runs appear here, one lane per run going at once."));
      return;
    }
    const { placed, count } = lanes(runs);
    const t0 = Math.min(...runs.map((r) => r.start));
    const t1 = Math.max(...runs.map((r) => r.end), t0 + 0.001);
    const w = 600;
    const laneH = 10;
    const shown = Math.min(Math.max(count, h.concurrency || 1), MAX_LANES); // (reserved)
    const box = svg("svg", { viewBox: `0 0 ${w} ${shown * (laneH + 2)}`, class: "nbw-timeline-svg", preserveAspectRatio: "none" });
    for (const r of placed) {
      if (r.lane >= MAX_LANES) continue;
      const x = ((r.start - t0) / (t1 - t0)) * w;
      const rect = svg("rect", { x: x.toFixed(2), y: r.lane * (laneH + 2), width: Math.max(1.5, ((r.end - r.start) / (t1 - t0)) * w).toFixed(2), height: laneH, class: `nbw-tl nbw-tl-${r.status}`, "data-lane": r.lane });
      const tip = svg("title");
      tip.textContent = r.tip;
      rect.appendChild(tip);
      box.appendChild(rect);
    }
    const caption = make("div", "nbw-timeline-caption");
    caption.append(make("span", "", clock(t0)), make("span", "nbw-timeline-lanes", `${num(count)} lane${count === 1 ? "" : "s"}: at most ${num(count)} at once${count > MAX_LANES ? ` (${MAX_LANES} drawn)` : ""}`), make("span", "", `+${duration(t1 - t0)}`));
    timeline.replaceChildren(box, caption);
  }

  function markSelected() {
    const selected = model.get("selected");
    for (const tr of table.querySelectorAll("tr.nbw-row")) {
      tr.classList.toggle("nbw-selected", tr.dataset.id === selected);
      tr.setAttribute("aria-selected", String(tr.dataset.id === selected));
    }
  }

  // The traces table. A row is made once per trace and kept while its trace is shown (a trace
  // never changes): a click or the keyboard focus on a row survives the table's updates.
  const thead = make("thead");
  const headRow = make("tr");
  for (const [title, cls] of [["started", ""], ["outcome", ""], ["took", "nbw-num"], ["message", ""], ["attempt", "nbw-num"], ["input", ""], ["", ""]]) headRow.appendChild(make("th", cls, title));
  thead.appendChild(headRow);
  const tbody = make("tbody");
  const empty = make("tr");
  const emptyCell = make("td", "nbw-muted", "No traces yet: each run's trace appears here when it ends.");
  emptyCell.colSpan = 7;
  empty.appendChild(emptyCell);
  table.append(thead, tbody);
  const rowsById = new Map();

  const rowKey = (t) => `${t.id}@${t.started_at}`; // (another file may number traces alike)

  function makeRow(t) {
    const tr = make("tr", `nbw-row nbw-row-${t.status}`);
    tr.tabIndex = 0;
    tr.dataset.id = t.id;
    tr.title = `${t.id}: select to see its input, result, output and traceback`;
    tr.append(
      make("td", "nbw-clock", clock(t.started_at)),
      make("td", "nbw-outcome", OUTCOME[t.status]),
      make("td", "nbw-num", duration(t.duration)),
      make("td", "", t.batch ? `${t.message_id} +${num(t.batch - 1)}` : t.message_id),
      make("td", "nbw-num", t.attempt),
      make("td", "nbw-input", t.input),
      make("td", "nbw-marker", t.replay ? "↻ replay" : ""),
    );
    const choose = () => {
      model.set("selected", t.id);
      model.save_changes();
    };
    tr.addEventListener("click", choose);
    tr.addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        choose();
      }
    });
    return tr;
  }

  function drawTable() {
    const rows = model.get("traces") || [];
    keyed(tbody, rowsById, rows, rowKey, (t) => ({ el: makeRow(t) }));
    if (!rows.length) tbody.appendChild(empty);
    else empty.remove();
    markSelected();
  }

  function button(label, cls, tip, message) {
    const b = make("button", `nbw-button ${cls}`, label);
    b.type = "button";
    b.title = tip;
    b.addEventListener("click", () => model.send(message));
    return b;
  }

  function drawDetail() {
    const d = model.get("detail") || {};
    const selected = model.get("selected");
    if (!selected) {
      detail.replaceChildren(make("div", "nbw-muted", "Select a trace to see its input, result and output."));
      return;
    }
    if (d.missing && d.id === selected) {
      detail.replaceChildren(make("div", "nbw-muted", `${selected} is no longer among the traces kept (newer runs pushed it out).`));
      return;
    }
    if (d.id !== selected) {
      detail.replaceChildren(make("div", "nbw-muted", `Loading ${selected}…`));
      return;
    }
    const facts = [d.id, `message ${d.message_id}`, `started ${day(d.started_at)} ${clock(d.started_at)}`, duration(d.duration), `attempt ${d.attempt}`];
    if (d.status !== "ok") facts.push(OUTCOME[d.status]);
    if (d.replay) facts.push("a replay");
    if (d.batch) facts.push(`batch of ${num(d.batch)} (${d.message_ids.length <= 3 ? d.message_ids.join(", ") : `${d.message_ids[0]} … ${d.message_ids[d.message_ids.length - 1]}`})`);
    const name = (model.get("header") || {}).name || "";
    const actions = make("div", "nbw-actions");
    actions.append(
      button("Send again", "nbw-replay", "Queue this trace's input again as a new message, in the background (it counts in done like any message; its trace appears in the table)", { action: "send-again", id: d.id }),
      button("Live values", "nbw-live-values", "Run the current code on this trace's input, line by line, and show the values beside each line (records no trace; uses the worker's time limit)", { action: "live", id: d.id }),
      make("span", "nbw-muted", "or, in the foreground where %debug works: "),
      make("code", "", `nw.replay(${JSON.stringify(name)}, ${JSON.stringify(d.id)})`),
    );
    const parts = [make("div", "nbw-detail-facts", facts.join(" · "))];
    // a trace no longer kept cannot be sent again or run for live values: said, no buttons
    if (d.gone) parts.unshift(make("div", "nbw-warn", "No longer among the traces kept (newer runs pushed it out): shown as it was selected. Send again and Live values need a kept trace (--keep N keeps more)."));
    else parts.push(actions);
    if (d.progress) parts.push(progressLine(d.progress, d.progress_text));
    for (const block of d.blocks || []) {
      const b = make("div", "nbw-block");
      b.append(make("b", "", block.title), make("pre", block.tone ? `nbw-${block.tone}` : "", block.text));
      parts.push(b);
    }
    if (d.calls) {
      const calls = make("div", "nbw-block nbw-calls");
      calls.appendChild(make("b", "", `recorded calls (${num(d.calls.calls.length + (d.calls.dropped || 0))})`));
      const list = make("div", "nbw-calls-list");
      for (const c of d.calls.calls) {
        const line = make("div", "", `${c.name}(${c.args}) `);
        line.appendChild(c.error !== null ? make("span", "nbw-error", `raised ${c.error}`) : make("span", "", `→ ${c.result}`));
        if (c.replayed) line.appendChild(make("span", "nbw-muted", " [replayed]"));
        if (c.note) line.appendChild(make("span", "nbw-warn", ` [not kept: ${c.note}]`));
        list.appendChild(line);
      }
      if (d.calls.note) list.appendChild(make("div", "nbw-warn", `calls not kept: ${d.calls.note}`));
      if (d.calls.dropped) list.appendChild(make("div", "nbw-warn", `… ${num(d.calls.dropped)} more calls, not kept`));
      calls.appendChild(list);
      parts.push(calls);
    }
    detail.replaceChildren(...parts);
  }

  const onHeader = () => drawHead();
  const onTraces = () => {
    drawTable();
    drawTimeline(kernelNow());
  };
  const onSelect = () => {
    markSelected();
    drawDetail();
  };
  // Live values of the selected trace (develop/live_view.py's data): each line of the handler
  // with what it did beside it; lines not reached faded; a line run more than once opens its
  // kept runs.
  function drawLive() {
    const v = model.get("live") || {};
    if (!v.state) {
      liveBox.replaceChildren();
      return;
    }
    if (v.state === "running") {
      const limit = v.limit_s ? ` (stopped after the worker's time limit, ${v.limit_s} s)` : "";
      liveBox.replaceChildren(make("div", "nbw-muted", `Computing live values of ${v.trace_id}: running the current code on its input${limit}…`));
      return;
    }
    if (v.state === "error") {
      liveBox.replaceChildren(make("div", "nbw-error", `Live values of ${v.trace_id} failed: ${v.error}`));
      return;
    }
    const head = make("div", "nbw-live-head");
    head.append("live values of ", make("b", "", v.name), ` on trace ${v.trace_id}: `, make("span", v.ok ? "nbw-ok" : "nbw-error", v.ok ? "ok" : `failed: ${v.error}`), make("span", "nbw-muted", ` · ${v.duration_ms} ms${v.selected !== null ? ` · run ${v.selected} of each line` : ""}`));
    const rows = make("table", "nbw-live-table");
    for (const line of v.lines) {
      const tr = make("tr", `nbw-live-line${line.kind === "faded" ? " nbw-live-unreached" : ""}`);
      let shown;
      if (line.kind === "faded") {
        shown = make("span", "nbw-muted nbw-live-faded-note", "not reached");
      } else if (line.count) {
        shown = make("details", "nbw-live-runs");
        const summary = make("summary");
        summary.title = "show the runs kept: the first and the last few";
        summary.append(make("span", "nbw-live-value", line.latest), " ", make("span", "nbw-muted", `\u00d7${num(line.count)}`));
        shown.appendChild(summary);
        for (const r of line.runs) {
          if (r.skipped) {
            shown.appendChild(make("div", "nbw-muted", `⋯ ${num(r.skipped)} runs not kept ⋯`));
          } else {
            const run = make("div", "nbw-live-run");
            run.append(make("span", "nbw-muted", `run ${num(r.run)}:`), " ", make("span", "nbw-live-value", r.text));
            shown.appendChild(run);
          }
        }
      } else {
        shown = make("span", `nbw-live-value${line.error ? " nbw-error" : ""}`, line.note);
      }
      const cell = make("td", "nbw-live-note");
      cell.appendChild(shown);
      tr.append(make("td", "nbw-muted nbw-num", line.lineno), make("td", "nbw-live-code", line.code || " "), cell);
      rows.appendChild(tr);
    }
    const parts = [head, rows];
    for (const [title, text, tone] of [["printed", v.printed, ""], ["traceback", v.traceback, "nbw-error"]]) {
      if (!text) continue;
      const b = make("div", "nbw-block");
      b.append(make("b", "", title), make("pre", tone, text));
      parts.push(b);
    }
    for (const note of v.notes) parts.push(make("div", "nbw-muted", `note: ${note}`));
    liveBox.replaceChildren(...parts);
  }

  const onHistory = () => drawFlow(kernelNow());
  model.on("change:header", onHeader);
  model.on("change:history", onHistory);
  model.on("change:live", drawLive);
  model.on("change:traces", onTraces);
  model.on("change:selected", onSelect);
  model.on("change:detail", drawDetail);
  drawHead();
  drawTable();
  drawDetail();
  drawLive();
  const timer = setInterval(tick, 1000);
  return () => {
    clearInterval(timer);
    model.off("change:header", onHeader);
    model.off("change:history", onHistory);
    model.off("change:live", drawLive);
    model.off("change:traces", onTraces);
    model.off("change:selected", onSelect);
    model.off("change:detail", drawDetail);
  };
}

// The pipeline: workers and crons as nodes with their counts, the emits between them as edges
// with theirs (counted in the kernel), names nobody handles as dashed nodes.
export function layers(names, edges) {
  // Back edges (found by a depth-first walk from the nodes in definition order) are left out,
  // so a loop of emits does not push its first node to the right; the rest is a longest path.
  const out = new Map(names.map((n) => [n, []]));
  for (const e of edges) {
    if (e.from !== e.to && out.has(e.from) && out.has(e.to)) out.get(e.from).push(e.to);
  }
  const seen = new Map(); // 1: on the walk's path, 2: done
  const forward = [];
  const visit = (n) => {
    seen.set(n, 1);
    for (const m of out.get(n)) {
      if (seen.get(m) === 1) continue; // a back edge
      forward.push([n, m]);
      if (!seen.get(m)) visit(m);
    }
    seen.set(n, 2);
  };
  for (const n of names) if (!seen.get(n)) visit(n);
  const layer = Object.fromEntries(names.map((n) => [n, 0]));
  for (let round = 0; round < names.length; round++) {
    let moved = false;
    for (const [a, b] of forward) {
      if (layer[a] + 1 > layer[b]) {
        layer[b] = layer[a] + 1;
        moved = true;
      }
    }
    if (!moved) break;
  }
  return layer;
}

let graphs = 0; // each graph's arrowhead marker gets an id of its own in the page
const NODE_W = 170;
const NODE_H = 50;
const GAP_X = 70;
const GAP_Y = 18;

function renderPipeline({ model, el }) {
  const marker = `nbw-arrow-${++graphs}`;
  const root = make("div", "nbw-view nbw-pipeline");
  el.appendChild(root);
  function draw() {
    const g = model.get("graph") || { nodes: [], edges: [] };
    const nodes = g.nodes || [];
    const edges = g.edges || [];
    if (!nodes.length) {
      root.replaceChildren(make("div", "nbw-muted", "No workers yet: run a %%worker or %%cron cell."));
      return;
    }
    const layer = layers(nodes.map((n) => n.name), edges);
    const rows = {};
    const at = {};
    for (const n of nodes) {
      const l = layer[n.name];
      rows[l] = (rows[l] || 0) + 1;
      at[n.name] = { x: 10 + l * (NODE_W + GAP_X), y: 24 + (rows[l] - 1) * (NODE_H + GAP_Y) };
    }
    const width = 20 + (Math.max(...Object.values(layer)) + 1) * (NODE_W + GAP_X) - GAP_X;
    const height = 40 + Math.max(...Object.values(rows)) * (NODE_H + GAP_Y);
    const box = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "nbw-graph" });
    const defs = svg("defs");
    const arrow = svg("marker", { id: marker, viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    arrow.appendChild(svg("path", { d: "M0,0L10,5L0,10z", class: "nbw-arrow" }));
    defs.appendChild(arrow);
    box.appendChild(defs);
    for (const e of edges) {
      const a = at[e.from];
      const b = at[e.to];
      if (!a || !b) continue;
      let d;
      let label;
      if (e.from === e.to) {
        d = `M${a.x + NODE_W * 0.6},${a.y}C${a.x + NODE_W * 0.6},${a.y - 22} ${a.x + NODE_W * 0.9},${a.y - 22} ${a.x + NODE_W * 0.9},${a.y}`;
        label = [a.x + NODE_W * 0.75, a.y - 20];
      } else {
        const x1 = a.x + NODE_W;
        const y1 = a.y + NODE_H / 2;
        const x2 = b.x;
        const y2 = b.y + NODE_H / 2;
        const back = x2 <= x1;
        const bend = back ? NODE_H * 1.2 : 0;
        d = back
          ? `M${a.x + NODE_W / 2},${a.y + NODE_H}C${a.x + NODE_W / 2},${a.y + NODE_H + bend} ${b.x + NODE_W / 2},${b.y + NODE_H + bend} ${b.x + NODE_W / 2},${b.y + NODE_H}`
          : `M${x1},${y1}C${x1 + GAP_X / 2},${y1} ${x2 - GAP_X / 2},${y2} ${x2},${y2}`;
        label = back ? [(a.x + b.x) / 2 + NODE_W / 2, Math.max(a.y, b.y) + NODE_H + bend * 0.75] : [(x1 + x2) / 2, (y1 + y2) / 2 - 4];
      }
      const path = svg("path", { d, class: "nbw-edge", "marker-end": `url(#${marker})`, "data-from": e.from, "data-to": e.to });
      const tip = svg("title");
      tip.textContent = `${e.from} → ${e.to}: ${num(e.count)} message${e.count === 1 ? "" : "s"} emitted by its runs`;
      path.appendChild(tip);
      const text = svg("text", { x: label[0], y: label[1], class: "nbw-edge-count", "text-anchor": "middle" });
      text.textContent = num(e.count);
      box.append(path, text);
    }
    for (const n of nodes) {
      const p = at[n.name];
      const group = svg("g", { class: `nbw-node nbw-node-${n.kind}${n.defined ? "" : " nbw-node-unhandled"}${n.paused ? " nbw-node-paused" : ""}`, "data-name": n.name, transform: `translate(${p.x},${p.y})` });
      group.appendChild(svg("rect", { width: NODE_W, height: NODE_H, rx: n.kind === "cron" ? 14 : 4 }));
      const title = svg("text", { x: 8, y: 17, class: "nbw-node-name" });
      title.textContent = n.kind === "cron" ? `⏱ ${n.name}` : n.name;
      const line = svg("text", { x: 8, y: 33, class: "nbw-node-counts" });
      line.textContent = n.defined ? `${num(n.queued)} queued · ${num(n.running)} running` : `${num(n.queued)} queued, unhandled`;
      const second = svg("text", { x: 8, y: 46, class: "nbw-node-counts" });
      second.textContent = n.defined ? `${num(n.done)} done · ${num(n.failed)} failed${n.paused ? " · paused" : ""}` : `%%worker ${n.name}`;
      const tip = svg("title");
      tip.textContent = n.defined ? `${n.kind} ${n.name}` : `no worker yet: run a cell starting with %%worker ${n.name}`;
      group.append(tip, title, line, second);
      box.appendChild(group);
    }
    root.replaceChildren(box);
  }
  model.on("change:graph", draw);
  draw();
  return () => model.off("change:graph", draw);
}

function render(context) {
  return context.model.get("graph") === undefined ? renderPanel(context) : renderPipeline(context);
}

export default { render };
