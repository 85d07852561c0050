// recursa trace viewer: the grid of a `recursa bench` directory's runs, items x methods.
// Each cell shows a run's score, cost and stop reason and opens its trace when it has one.
// Text from the results only reaches the page through textContent (app.js's el()).
"use strict";

window.recursaBench = (() => {
  const $ = (sel) => document.querySelector(sel);
  const helpers = () => window.recursaViewer.helpers;
  const METHOD_ORDER = ["base", "rlm", "rlm-nosub", "summary", "codeact-bm25"];
  const LENGTH_UNITS = [["m", 1e6], ["mi", 1048576], ["k", 1e3], ["ki", 1024]];
  let data = null;
  let openTrace = null;

  // The shortest label for a length, as recursa.bench.tokens.format_length writes it.
  function fmtLength(n) {
    for (const [suffix, unit] of LENGTH_UNITS) if (n % unit === 0) return n / unit + suffix;
    return String(n);
  }

  const uniq = (values) => [...new Set(values)];

  function methodsOf(rows) {
    const present = uniq(rows.map((r) => r.method));
    return [...METHOD_ORDER.filter((m) => present.includes(m)), ...present.filter((m) => !METHOD_ORDER.includes(m))];
  }

  function fillSelect(select, values, label) {
    const { el } = helpers();
    const keep = select.value;
    select.replaceChildren(
      el("option", { value: "", text: "all" }),
      ...values.map((v) => el("option", { value: String(v), text: label ? label(v) : String(v) })),
    );
    if ([...select.options].some((o) => o.value === keep)) select.value = keep;
  }

  function scoreClass(row) {
    if (row.error) return "b-failed";
    if (row.score >= 1) return "b-right";
    return row.score > 0 ? "b-partial" : "b-wrong";
  }

  function matches(row, filter) {
    switch (filter) {
      case "right": return !row.error && row.score >= 1;
      case "partial": return !row.error && row.score > 0 && row.score < 1;
      case "wrong": return row.score < 1;
      case "failed": return Boolean(row.error);
      case "stopped": return Boolean(row.stopped);
      default: return true;
    }
  }

  function spendText(row) {
    const { fmtCost, fmtTok } = helpers();
    const tokens = (row.input_tokens || 0) + (row.output_tokens || 0);
    return typeof row.cost_usd === "number" ? fmtCost(row.cost_usd, false) : `unpriced · ${fmtTok(tokens)} tok`;
  }

  function cell(row) {
    const { el, snippet } = helpers();
    const pct = (100 * (row.score || 0)).toFixed(row.score > 0 && row.score < 1 ? 1 : 0);
    const title = [`answer: ${row.answer || "(none)"}`, `gold: ${row.gold ?? "(not recorded)"}`];
    if (row.error) title.push(`error: ${row.error}`);
    if (row.stopped) title.push(`stopped: ${row.stopped}`);
    const props = {
      className: `bcell ${scoreClass(row)}${row.trace ? " has-trace" : ""}`,
      title: title.join("\n"),
      dataset: { method: row.method, item: row.item },
    };
    if (row.trace) Object.assign(props, { role: "button", tabindex: "0", "data-trace": row.trace });
    return el("td", props,
      el("div", "bscore", pct),
      el("div", "bmeta",
        el("span", "bcost", spendText(row)),
        row.stopped ? el("span", "badge b-stop", "stopped: " + row.stopped) : null,
        row.error ? el("span", "badge b-err", "failed") : null),
      el("div", "banswer", snippet(row.error || row.answer || "—", 90)),
      row.trace ? el("div", "btrace", "trace ›") : null);
  }

  function render() {
    const { el, snippet } = helpers();
    const task = $("#bench-task").value;
    const length = $("#bench-length").value;
    const method = $("#bench-method").value;
    const score = $("#bench-score").value;
    const rows = data.rows.filter((r) => (!task || r.task === task) && (!length || String(r.length) === length));
    const methods = methodsOf(data.rows).filter((m) => !method || m === method);
    const items = new Map();
    for (const row of rows) {
      if (!items.has(row.item)) items.set(row.item, { first: row, runs: new Map() });
      items.get(row.item).runs.set(row.method, row);
    }
    const body = el("tbody");
    let shownItems = 0;
    let shownRuns = 0;
    for (const [item, { first, runs }] of items) {
      const visible = methods.map((m) => runs.get(m)).filter(Boolean);
      if (!visible.some((r) => matches(r, score))) continue;
      shownItems += 1;
      shownRuns += visible.length;
      const gold = [...runs.values()].map((r) => r.gold).find((g) => g !== null && g !== undefined);
      body.append(el("tr", { dataset: { item } },
        el("th", { className: "bitem", scope: "row", title: item },
          el("div", null, `${first.task} · ${fmtLength(first.length)} · #${first.index}`),
          el("div", "muted small mono", item)),
        el("td", { className: "bgold", title: gold ?? "" }, snippet(gold ?? "—", 60)),
        ...methods.map((m) => (runs.has(m) ? cell(runs.get(m)) : el("td", "bcell b-none", "–")))));
    }
    const head = el("thead", null, el("tr", null,
      el("th", { scope: "col" }, "item"), el("th", { scope: "col" }, "gold"),
      ...methods.map((m) => el("th", { scope: "col", className: "bmethod" }, m))));
    $("#bench-grid").replaceChildren(head, body);
    const total = data.rows.length;
    $("#bench-count").textContent =
      `${shownItems} item${shownItems === 1 ? "" : "s"} · ${shownRuns} of ${total} runs` +
      (data.truncated ? " (first rows only)" : "") +
      (data.skipped_lines ? ` · ${data.skipped_lines} unreadable line${data.skipped_lines === 1 ? "" : "s"} skipped` : "");
    if (!shownItems) body.append(el("tr", null, el("td", { colspan: String(methods.length + 2), className: "muted" }, "No runs match the filters.")));
  }

  function renderAbout() {
    const c = data.config || {};
    const env = c.environment || c;
    const parts = [];
    if (c.model) parts.push(`model ${c.model}`);
    if (c.sub_model) parts.push(`sub-model ${c.sub_model}`);
    if (c.seed !== undefined) parts.push(`seed ${c.seed}`);
    if (env.date) parts.push(String(env.date).slice(0, 10));
    for (const [name, record] of Object.entries(c.tasks || {})) {
      if (record && record.haystack) parts.push(`${name} haystack: ${record.haystack}`);
    }
    $("#bench-about").textContent = parts.join(" · ");
  }

  async function reload() {
    const res = await fetch("/api/bench", { cache: "no-store" });
    const body = await res.json();
    if (!res.ok) throw new Error(body.error || `${res.status} ${res.statusText}`);
    data = body;
    fillSelect($("#bench-task"), uniq(data.rows.map((r) => r.task)));
    fillSelect($("#bench-length"), uniq(data.rows.map((r) => r.length)).sort((a, b) => a - b), fmtLength);
    fillSelect($("#bench-method"), methodsOf(data.rows));
    renderAbout();
    render();
  }

  function open(target) {
    const name = target.closest("[data-trace]");
    if (name && openTrace) openTrace(name.dataset.trace);
  }

  async function init(onOpenTrace) {
    openTrace = onOpenTrace;
    for (const id of ["#bench-task", "#bench-length", "#bench-method", "#bench-score"]) {
      $(id).addEventListener("change", render);
    }
    $("#bench-grid").addEventListener("click", (e) => open(e.target));
    $("#bench-grid").addEventListener("keydown", (e) => {
      if (e.key === "Enter" || e.key === " ") {
        e.preventDefault();
        open(e.target);
      }
    });
    await reload();
  }

  return { init, reload };
})();
