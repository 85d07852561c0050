// recursa trace viewer. Hand-written, no build step, no dependencies.
// Everything from the trace is model- or user-written text: it only ever reaches
// the page through textContent, never innerHTML.
"use strict";

(() => {
  // ---------------------------------------------------------------- helpers

  const $ = (sel, root = document) => root.querySelector(sel);

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (typeof props === "string") node.className = props;
    else if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === undefined || value === null || value === false) continue;
        if (key === "text") node.textContent = value;
        else if (key === "className") node.className = value;
        else if (key === "dataset") Object.assign(node.dataset, value);
        else if (key === "style") Object.assign(node.style, value);
        else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
        else node.setAttribute(key, value === true ? "" : String(value));
      }
    }
    for (const child of children) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  function append(parent, ...children) {
    for (const child of children) if (child !== null && child !== undefined && child !== false) parent.append(child);
    return parent;
  }

  const num = (v) => (typeof v === "number" && Number.isFinite(v) ? v : 0);
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const str = (v) => (v === null || v === undefined ? "" : typeof v === "string" ? v : JSON.stringify(v, null, 2));

  function fmtInt(n) {
    return isNum(n) ? Math.round(n).toLocaleString("en-US") : "—";
  }

  function fmtTok(n) {
    if (!isNum(n)) return "—";
    if (n < 1000) return String(Math.round(n));
    if (n < 1e6) return (n / 1e3).toFixed(n < 1e4 ? 1 : 0) + "k";
    return (n / 1e6).toFixed(n < 1e7 ? 2 : 1) + "M";
  }

  function fmtCost(cost, unpriced) {
    if (!isNum(cost) || (cost === 0 && unpriced)) return "unpriced";
    let s;
    if (cost === 0) s = "$0";
    else if (cost < 0.001) s = "$" + cost.toFixed(Math.min(8, Math.ceil(-Math.log10(cost)) + 1));
    else if (cost < 0.01) s = "$" + cost.toFixed(4);
    else if (cost < 1) s = "$" + cost.toFixed(3);
    else s = "$" + cost.toFixed(2);
    return unpriced ? "≥ " + s : s;
  }

  function fmtDur(s) {
    if (!isNum(s)) return "—";
    if (s < 1) return Math.round(s * 1000) + " ms";
    if (s < 10) return s.toFixed(2) + " s";
    if (s < 60) return s.toFixed(1) + " s";
    const m = Math.floor(s / 60);
    if (m < 60) return `${m}m ${Math.round(s - m * 60)}s`;
    return `${Math.floor(m / 60)}h ${m % 60}m`;
  }

  function fmtChars(n) {
    if (!isNum(n)) return "—";
    if (n < 1000) return `${n} chars`;
    return fmtTok(n) + " chars";
  }

  function fmtClock(t) {
    if (!isNum(t)) return "";
    const d = new Date(t * 1000);
    return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
  }

  function snippet(s, n = 120) {
    const flat = str(s).replace(/\s+/g, " ").trim();
    return flat.length > n ? flat.slice(0, n - 1) + "…" : flat;
  }

  const depthClass = (d) => "d" + (Math.max(0, d | 0) % 6);

  // ------------------------------------------------------- python highlighting

  const PY_KEYWORDS = new Set(
    ("and as assert async await break class continue def del elif else except finally for " +
      "from global if import in is lambda nonlocal not or pass raise return try while with " +
      "yield match case").split(" "),
  );
  const PY_CONSTANTS = new Set(["True", "False", "None", "Ellipsis", "NotImplemented"]);
  const PY_BUILTINS = new Set(
    ("abs all any ascii bin bool bytearray bytes callable chr dict dir divmod enumerate eval " +
      "filter float format frozenset getattr globals hasattr hash help hex id input int " +
      "isinstance issubclass iter len list locals map max min next object oct open ord pow " +
      "print range repr reversed round set setattr slice sorted str sum super tuple type vars " +
      "zip self cls Exception ValueError KeyError TypeError IndexError RuntimeError " +
      "AttributeError StopIteration ZeroDivisionError").split(" "),
  );
  const RLM_API = new Set([
    "llm_query", "llm_batch", "llm_query_batched", "rlm_query", "rlm_batch",
    "FINAL", "FINAL_VAR", "SHOW_VARS", "context", "answer",
  ]);
  const PY_TOKENS = [
    ["ws", /[ \t\f]+/y],
    ["nl", /\r?\n/y],
    ["comment", /#[^\r\n]*/y],
    ["string", /(?:[rRbBuUfF]{1,2})?(?:"""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|"(?:[^"\\\r\n]|\\[\s\S])*"?|'(?:[^'\\\r\n]|\\[\s\S])*'?)/y],
    ["number", /(?:0[xX][\da-fA-F_]+|0[bB][01_]+|0[oO][0-7_]+|(?:\d[\d_]*(?:\.[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d[\d_]*)?[jJ]?)/y],
    ["ident", /[A-Za-z_\u00C0-\uFFFF][\w\u00C0-\uFFFF]*/y],
    ["deco", /@[A-Za-z_][\w.]*/y],
    ["op", /[-+*/%=<>!&|^~:;.,()[\]{}@\\]/y],
    ["other", /[\s\S]/y],
  ];

  // Returns [[cssClass | "", text], ...]. Exposed for tests as window.recursaHighlight.
  function tokenizePython(code) {
    const out = [];
    let pos = 0;
    let prevWord = "";
    let lineStart = true;
    while (pos < code.length) {
      let kind = "other";
      let text = code[pos];
      for (const [name, re] of PY_TOKENS) {
        re.lastIndex = pos;
        const m = re.exec(code);
        if (m && m[0].length) {
          kind = name;
          text = m[0];
          break;
        }
      }
      let cls = "";
      if (kind === "comment") cls = "tok-com";
      else if (kind === "string") cls = "tok-str";
      else if (kind === "number") cls = "tok-num";
      else if (kind === "deco") cls = lineStart ? "tok-deco" : "";
      else if (kind === "ident") {
        if (prevWord === "def") cls = "tok-fn";
        else if (prevWord === "class") cls = "tok-cls";
        else if (PY_KEYWORDS.has(text)) cls = "tok-kw";
        else if (PY_CONSTANTS.has(text)) cls = "tok-const";
        else if (RLM_API.has(text)) cls = "tok-api";
        else if (PY_BUILTINS.has(text)) cls = "tok-bi";
      }
      out.push([cls, text]);
      if (kind === "ident") prevWord = text;
      else if (kind !== "ws") prevWord = "";
      if (kind === "nl") lineStart = true;
      else if (kind !== "ws") lineStart = false;
      pos += text.length;
    }
    return out;
  }

  function highlightPython(code) {
    const frag = document.createDocumentFragment();
    let plain = "";
    for (const [cls, text] of tokenizePython(code)) {
      if (!cls) {
        plain += text;
        continue;
      }
      if (plain) frag.append(plain);
      plain = "";
      frag.append(el("span", cls, text));
    }
    if (plain) frag.append(plain);
    return frag;
  }

  const DISPLAY_CAP = 40000;

  function codeBlock(code, lang = "python") {
    code = str(code);
    const shown = code.length > DISPLAY_CAP ? code.slice(0, DISPLAY_CAP) : code;
    const lines = shown.split("\n").length;
    const gutter = el("pre", { className: "gutter", "aria-hidden": "true" });
    gutter.textContent = Array.from({ length: lines }, (_, i) => i + 1).join("\n");
    const codeEl = el("code");
    if (/^(py|python|python3|repl|)$/i.test(lang)) codeEl.append(highlightPython(shown));
    else codeEl.textContent = shown;
    const block = el("div", "codeblock", gutter, el("pre", "code", codeEl));
    if (shown.length < code.length) {
      return el("div", null, block, showAllButton(code.length, () => codeBlock(code.slice(0), lang), block));
    }
    return block;
  }

  function showAllButton(total, make, replace) {
    const btn = el("button", {
      type: "button",
      className: "btn btn-small more",
      text: `show all ${fmtInt(total)} characters`,
    });
    btn.addEventListener("click", () => {
      const full = make();
      if (full.classList) full.classList.add("full");
      replace.replaceWith(full);
      btn.remove();
    });
    return btn;
  }

  const FENCE_RE = /```([\w+.-]*)[^\n]*\n([\s\S]*?)(?:```|$)/g;
  const isRunnable = (lang) => /^(repl|python|py|python3)$/i.test(lang);

  function countRunnable(text) {
    let n = 0;
    for (const m of str(text).matchAll(FENCE_RE)) if (isRunnable(m[1])) n++;
    return n;
  }

  // Model text with fenced code blocks highlighted. With ``cellKey`` the runnable
  // blocks (shown in full as cells below) fold into a one-line reference.
  function richText(text, cellKey) {
    text = str(text);
    const frag = document.createDocumentFragment();
    const re = new RegExp(FENCE_RE.source, "g");
    let last = 0;
    let block = 0;
    let m;
    while ((m = re.exec(text)) !== null) {
      const before = text.slice(last, m.index).replace(/^\n+|\n+$/g, "");
      if (before) frag.append(el("div", "prose", before));
      const code = m[2].replace(/\n$/, "");
      if (cellKey && isRunnable(m[1])) {
        const k = block++;
        const lines = code.split("\n").length;
        frag.append(lazyDetails(`${cellKey}:${k}`,
          el("span", null, el("span", "mono", "```" + (m[1] || "")), ` ${lines} line${lines === 1 ? "" : "s"} — runs as cell ${k} below`),
          () => codeBlock(code, m[1]), "code-ref"));
      } else frag.append(codeBlock(code, m[1]));
      last = re.lastIndex;
      if (m[0].length === 0) re.lastIndex++;
    }
    const rest = text.slice(last).replace(/^\n+|\n+$/g, "");
    if (rest) frag.append(el("div", "prose", rest));
    return frag;
  }

  // A long string from an event: capped on screen, with a note when the trace cut it.
  function longText(ev, key, cls = "pre") {
    const value = str(ev ? ev[key] : "");
    const wrap = el("div", "longtext");
    const shown = value.length > DISPLAY_CAP ? value.slice(0, DISPLAY_CAP) : value;
    const pre = el("pre", cls, shown);
    wrap.append(pre);
    if (shown.length < value.length) {
      wrap.append(showAllButton(value.length, () => el("pre", cls, value), pre));
    }
    const full = ev && ev[key + "_chars"];
    if (isNum(full)) {
      wrap.append(
        el("div", "cut-note",
          `cut in the trace file: ${fmtInt(full)} characters in full, ` +
          `${fmtInt(value.length)} kept`),
      );
    }
    return wrap;
  }

  function lazyDetails(key, summary, fill, className = "") {
    const details = el("details", className);
    details.dataset.key = key;
    details.append(el("summary", null, summary));
    let filled = false;
    const doFill = () => {
      if (filled) return;
      filled = true;
      const body = el("div", "details-body");
      body.append(fill());
      details.append(body);
    };
    details.addEventListener("toggle", () => {
      if (details.open) {
        doFill();
        state.open.add(key);
      } else state.open.delete(key);
    });
    if (state.open.has(key)) {
      details.open = true;
      doFill();
    }
    return details;
  }

  function badge(text, cls) {
    return el("span", "badge " + (cls || ""), text);
  }

  function statusBadge(status) {
    const cls = status === "done" ? "ok" : status === "running" ? "live" : status === "error" ? "bad" : "warn";
    return badge(status, "status-" + cls);
  }

  // ------------------------------------------------------------------ model

  function emptyUsage() {
    return { input: 0, output: 0, cached: 0, calls: 0, cost: 0, unpriced: 0 };
  }

  function addCall(u, usage) {
    usage = usage || {};
    u.input += num(usage.input_tokens);
    u.output += num(usage.output_tokens);
    u.cached += num(usage.cached_tokens);
    u.calls += 1;
    if (isNum(usage.cost_usd)) u.cost += usage.cost_usd;
    else u.unpriced += 1;
  }

  function addUsage(a, b) {
    a.input += b.input;
    a.output += b.output;
    a.cached += b.cached;
    a.calls += b.calls;
    a.cost += b.cost;
    a.unpriced += b.unpriced;
  }

  function fromReported(r) {
    if (!r || typeof r !== "object") return null;
    return {
      input: num(r.input_tokens),
      output: num(r.output_tokens),
      cached: num(r.cached_tokens),
      calls: num(r.calls),
      cost: num(r.cost_usd),
      unpriced: isNum(r.cost_usd) ? 0 : 1,
    };
  }

  function newNode(id, parent, depth) {
    return {
      id, parent, depth, start: null, end: null,
      turns: [], subCalls: [], cells: [], subcalls: [], toolUses: [], children: [],
      self: emptyUsage(), total: null, t0: Infinity, t1: -Infinity,
      spawnedBy: null, status: "running",
    };
  }

  function buildIndex(events) {
    const nodes = new Map();
    let runStart = null;
    let runEnd = null;
    let tMin = Infinity;
    let tMax = -Infinity;
    const calls = new Map();
    const subcallById = new Map();
    const toolsByCall = new Map();
    const modelCalls = [];
    const get = (ev) => {
      const id = String(ev.node_id);
      let node = nodes.get(id);
      if (!node) {
        node = newNode(id, ev.parent_id ?? null, num(ev.depth));
        nodes.set(id, node);
      }
      return node;
    };
    for (const ev of events) {
      const node = get(ev);
      const t = ev.t;
      const t0 = isNum(ev.t0) ? ev.t0 : t;
      if (isNum(t0)) {
        tMin = Math.min(tMin, t0);
        node.t0 = Math.min(node.t0, t0);
      }
      if (isNum(t)) {
        tMax = Math.max(tMax, t);
        node.t1 = Math.max(node.t1, t);
      }
      switch (ev.type) {
        case "run_start": runStart = ev; break;
        case "run_end": runEnd = ev; break;
        case "node_start":
          node.start = ev;
          node.parent = ev.parent_id ?? null;
          node.depth = num(ev.depth);
          break;
        case "node_end": node.end = ev; break;
        case "model_call":
          modelCalls.push(ev);
          addCall(node.self, ev.usage);
          if (ev.purpose === "turn") node.turns.push(ev);
          else node.subCalls.push(ev);
          if (ev.call_id != null) calls.set(ev.call_id, ev);
          break;
        case "cell": node.cells.push(ev); break;
        case "subcall":
          node.subcalls.push(ev);
          if (ev.call_id != null) subcallById.set(ev.call_id, ev);
          break;
        case "tool_use": {
          node.toolUses.push(ev);
          const key = ev.call_id ?? "";
          if (!toolsByCall.has(key)) toolsByCall.set(key, []);
          toolsByCall.get(key).push(ev);
          break;
        }
        default: break;
      }
    }
    // A node seen only through run_start/run_end events of another id is not a real node.
    const roots = [];
    for (const node of nodes.values()) {
      const parent = node.parent != null ? nodes.get(String(node.parent)) : null;
      if (parent && parent !== node) parent.children.push(node);
      else roots.push(node);
      if (node.start && node.start.parent_call_id != null) {
        node.spawnedBy = subcallById.get(node.start.parent_call_id) || { call_id: node.start.parent_call_id };
      }
    }
    for (const sc of subcallById.values()) {
      if (sc.child_node_id != null) {
        const child = nodes.get(String(sc.child_node_id));
        if (child && !child.spawnedBy) child.spawnedBy = sc;
      }
    }
    const byStart = (a, b) => a.t0 - b.t0 || a.id.localeCompare(b.id, undefined, { numeric: true });
    roots.sort((a, b) => a.depth - b.depth || byStart(a, b));
    const order = [];
    const stack = [...roots].reverse();
    while (stack.length) {
      const node = stack.pop();
      order.push(node);
      node.children.sort(byStart);
      for (let i = node.children.length - 1; i >= 0; i--) stack.push(node.children[i]);
    }
    // Subtree totals and spans, children first.
    for (let i = order.length - 1; i >= 0; i--) {
      const node = order[i];
      const computed = emptyUsage();
      addUsage(computed, node.self);
      for (const child of node.children) {
        addUsage(computed, child.computed);
        node.t1 = Math.max(node.t1, child.t1);
      }
      node.computed = computed;
      node.total = (node.end && fromReported(node.end.usage)) || computed;
      if (node.start && isNum(node.start.t)) node.t0 = node.start.t;
      if (node.end && isNum(node.end.t)) node.t1 = node.end.t;
      node.duration = node.end && isNum(node.end.duration_s) ? node.end.duration_s
        : isFinite(node.t1 - node.t0) ? node.t1 - node.t0 : null;
      if (node.end) {
        node.status = node.end.error ? "error" : node.end.stopped ? `stopped: ${node.end.stopped}` : "done";
      } else node.status = runEnd ? "unfinished" : "running";
      const its = new Set(node.turns.map((e) => e.iteration));
      node.iterations = node.end && isNum(node.end.iterations) ? node.end.iterations : its.size;
    }
    const runStatus = runEnd
      ? runEnd.error ? "error" : runEnd.stopped ? `stopped: ${runEnd.stopped}` : "done"
      : events.length ? "running" : "empty";
    const t0 = runStart && isNum(runStart.t) ? runStart.t : tMin;
    return {
      nodes, roots, order, runStart, runEnd, runStatus, calls, subcallById, toolsByCall, modelCalls,
      events, t0, t1: Math.max(tMax, t0),
      depthReached: modelCalls.reduce((m, e) => Math.max(m, num(e.depth)), order.reduce((m, n) => Math.max(m, n.depth), 0)),
    };
  }

  // ------------------------------------------------------------------ state

  const state = {
    runs: [],
    directory: false,
    run: null,
    events: [],
    warnings: [],
    pending: 0,
    offset: 0,
    line: 0,
    idx: null,
    selected: null,
    tab: "node",
    expanded: new Set(),
    collapsed: new Set(),
    open: new Set(),
    shownIters: new Map(),
    shownKids: new Map(),
    error: null,
    timer: null,
    busy: false,
    tlZoom: 1,
    tlCompact: null,
    updated: null,
  };

  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    return { run: params.get("run"), node: params.get("node"), tab: params.get("tab") };
  }

  function writeHash() {
    const params = new URLSearchParams();
    if (state.run && state.directory) params.set("run", state.run);
    if (state.selected) params.set("node", state.selected);
    if (state.tab !== "node") params.set("tab", state.tab);
    const hash = "#" + params.toString();
    if (location.hash !== hash) history.replaceState(null, "", hash);
  }

  async function fetchJSON(url) {
    const res = await fetch(url, { cache: "no-store" });
    let data = null;
    try {
      data = await res.json();
    } catch (err) {
      throw new Error(`${url}: ${res.status} ${res.statusText}`);
    }
    if (!res.ok) throw new Error((data && data.error) || `${res.status} ${res.statusText}`);
    return data;
  }

  async function loadRuns() {
    const data = await fetchJSON("/api/runs");
    state.runs = data.runs;
    state.directory = data.directory;
    state.bench = Boolean(data.bench);
    state.path = data.path;
    renderPicker();
  }

  // ------------------------------------------------- a bench directory's grid

  function showBenchGrid() {
    document.body.dataset.view = "grid";
    $("#bench").hidden = false;
    $("#bench-back").hidden = true;
    setAuto(false);
    state.run = null;
    state.error = null;
    state.warnings = [];
    state.pending = 0;
    renderBanner();  // the trace's warnings are not the grid's
    history.replaceState(null, "", "#bench");
  }

  async function openBenchTrace(name) {
    document.body.dataset.view = "trace";
    $("#bench").hidden = true;
    $("#bench-back").hidden = false;
    state.selected = null;
    for (const set of [state.expanded, state.collapsed, state.open]) set.clear();
    state.shownIters.clear();
    state.shownKids.clear();
    try {
      await loadRuns();  // traces written since the grid was read
    } catch (err) {
      state.error = String(err.message || err);
    }
    $("#run-picker").value = name;
    await openRun(name, false);
  }

  async function loadTrace(incremental) {
    const q = new URLSearchParams({ run: state.run });
    if (incremental) {
      q.set("offset", String(state.offset));
      q.set("line", String(state.line));
    }
    const data = await fetchJSON("/api/trace?" + q.toString());
    let changed = true;
    if (data.reset || !incremental) {
      state.events = data.events;
      state.warnings = data.warnings;
    } else {
      changed = data.events.length > 0 || data.warnings.length > 0 || data.pending !== state.pending;
      for (const ev of data.events) state.events.push(ev);
      for (const w of data.warnings) state.warnings.push(w);
    }
    state.offset = data.offset;
    state.line = data.line;
    state.pending = data.pending;
    state.error = null;
    state.updated = new Date();
    if (changed) {
      state.idx = buildIndex(state.events);
      state.timelineModel = null;
      if (!state.selected || !state.idx.nodes.has(state.selected)) {
        state.selected = state.idx.roots.length ? state.idx.roots[0].id : null;
      }
    }
    return changed;
  }

  // ----------------------------------------------------------------- render

  function renderAll(keepScroll) {
    renderBanner();
    renderSummary();
    renderTree();
    renderTab(keepScroll);
    $("#updated").textContent = state.updated ? "read " + state.updated.toLocaleTimeString() : "";
    writeHash();
  }

  function emptyText() {
    if (state.error) return "The trace could not be read (see above).";
    if (state.directory && state.runs.length === 0) return "Waiting for a run to start…";
    return "Loading…";
  }

  function renderPicker() {
    const wrap = $("#picker-wrap");
    const picker = $("#run-picker");
    wrap.hidden = !state.directory || state.runs.length === 0;
    const frag = document.createDocumentFragment();
    for (const run of state.runs) {
      const when = run.t ? new Date(run.t * 1000).toLocaleString() : "";
      const label = `${run.name} · ${run.status}${when ? " · " + when : ""}` +
        (run.query ? " — " + snippet(run.query, 60) : "");
      frag.append(el("option", { value: run.name, text: label, title: run.query || "" }));
    }
    picker.replaceChildren(frag);
    if (state.run) picker.value = state.run;
  }

  function renderBanner() {
    const banner = $("#banner");
    const parts = [];
    if (state.error) parts.push(el("div", "banner-line banner-error", "⚠ " + state.error));
    if (state.warnings.length) {
      const n = state.warnings.filter((w) => !w.startsWith("…")).length;
      const head = el("div", "banner-line warn-line",
        `⚠ ${n} malformed line${n === 1 ? "" : "s"} skipped: `,
        el("span", "mono", state.warnings.slice(0, 3).join("; ")),
        state.warnings.length > 3 ? ` (+${state.warnings.length - 3} more)` : "");
      parts.push(head);
      if (state.warnings.length > 3) {
        const d = el("details", "banner-details", el("summary", null, "all warnings"));
        d.append(el("pre", "pre", state.warnings.join("\n")));
        parts.push(d);
      }
    }
    if (state.pending > 0) {
      parts.push(el("div", "banner-line note-line",
        `… the last line (${fmtInt(state.pending)} bytes) is incomplete — the trace is still being written.`));
    }
    banner.replaceChildren(...parts);
    banner.hidden = parts.length === 0;
  }

  function stat(label, value, title) {
    return el("div", { className: "stat", title }, el("div", "stat-v", value), el("div", "stat-l", label));
  }

  function renderSummary() {
    const box = $("#summary");
    const idx = state.idx;
    if (!idx) {
      box.replaceChildren(el("div", "empty", state.runs.length === 0 && state.directory
        ? `No *.jsonl traces in ${state.path || "this directory"} yet.` : "Loading…"));
      return;
    }
    const rs = idx.runStart || {};
    const re = idx.runEnd;
    const root = idx.roots[0];
    const total = (re && fromReported(re.usage)) || (root ? root.total : emptyUsage());
    if (re && isNum(re.cost_usd)) total.cost = re.cost_usd;
    const duration = re && isNum(re.duration_s) ? re.duration_s : idx.t1 - idx.t0;
    const query = rs.query ?? (root && root.start ? root.start.query : "");
    const answer = re ? re.answer : root && root.end ? root.end.answer : null;
    const models = [rs.model, rs.sub_model && rs.sub_model !== rs.model ? rs.sub_model : null]
      .filter(Boolean).join(" → ");
    const head = el("div", "summary-head",
      statusBadge(idx.runStatus),
      el("div", { className: "summary-query", title: str(query) }, snippet(query, 400) || "(no query)"));
    const meta = el("div", "summary-meta muted small",
      models ? el("span", null, models) : null,
      rs.run_id ? el("span", "mono", rs.run_id) : null,
      rs.t ? el("span", null, fmtClock(rs.t)) : null,
      rs.context ? el("span", null, contextText(rs.context)) : null,
      isNum(rs.max_depth) ? el("span", null, `max depth ${rs.max_depth}`) : null,
      rs.sandbox ? el("span", null, `sandbox ${rs.sandbox}`) : null);
    const stats = el("div", "stats",
      stat("cost", fmtCost(total.cost, total.unpriced)),
      stat("tokens in / out", `${fmtTok(total.input)} / ${fmtTok(total.output)}`,
        `${fmtInt(total.input)} input, ${fmtInt(total.output)} output, ${fmtInt(total.cached)} cached`),
      stat("model calls", fmtInt(total.calls)),
      stat("nodes", fmtInt(idx.order.length)),
      stat("depth reached", fmtInt(re && isNum(re.depth_reached) ? re.depth_reached : idx.depthReached)),
      stat("iterations", fmtInt(re && isNum(re.iterations) ? re.iterations : root ? root.iterations : 0)),
      stat("duration", fmtDur(duration)),
      stat("events", fmtInt(idx.events.length)));
    const parts = [head, meta, stats];
    if (answer !== null && answer !== undefined) {
      parts.push(el("div", "summary-answer", el("span", "label", "answer"),
        el("span", { className: "answer-text", title: str(answer) }, snippet(answer, 300))));
    }
    if (re && re.error) parts.push(el("div", "summary-answer bad", el("span", "label", "error"), str(re.error)));
    const cites = citationList(re ? re.citations : null);
    if (cites) parts.push(cites);
    box.replaceChildren(...parts);
  }

  // The citations of run_end / node_end: each quote highlighted, where it is, and whether
  // the host found it in the context (an unverified one says why not). Text only: quotes
  // come from the model or the context and are never parsed as HTML.
  function citationList(cites, box = "summary-citations") {
    if (!Array.isArray(cites) || !cites.length) return null;
    const list = el("ol", "citations");
    cites.forEach((c, i) => {
      if (!c || typeof c !== "object") return;
      const ok = c.verified === true;
      const where = str(c.source) + (isNum(c.page) ? ` p.${c.page}` : "") +
        (isNum(c.start) && isNum(c.end) ? ` ${c.start}–${c.end}` : "");
      const quote = el("mark", "cite-quote", snippet(str(c.quote), 400));
      const inPlace = ok ? citationInPlace(c, quote) : null;
      list.append(el("li", { className: ok ? "citation verified" : "citation unverified", dataset: { n: String(i + 1) } },
        el("span", "cite-n", `[${i + 1}]`),
        el("span", "cite-where mono", where),
        inPlace || quote,
        ok ? el("span", "cite-status", "verified") : el("span", "cite-status bad", "unverified: " + str(c.reason))));
    });
    return el("div", box, el("span", "label", "citations"), list);
  }

  // Characters the host keeps on each side of a verified quote (recursa.citations.WINDOW_CHARS).
  const CITE_WINDOW = 160;

  // A verified quote where it stands: "…before<mark>quote</mark>after…", from the text the
  // host recorded around it (whitespace flattened, as the quote's snippet is); null for a
  // trace written before citations carried it.
  function citationInPlace(c, quote) {
    if (typeof c.before !== "string" || typeof c.after !== "string") return null;
    const flat = (s) => s.replace(/\s+/g, " ");
    const cutBefore = isNum(c.start) && c.start > c.before.length;
    const cutAfter = c.after.length >= CITE_WINDOW;
    return el("span", "cite-context",
      el("span", "cite-before", (cutBefore ? "…" : "") + flat(c.before)),
      quote,
      el("span", "cite-after", flat(c.after) + (cutAfter ? "…" : "")));
  }

  function contextText(ctx) {
    if (!ctx || typeof ctx !== "object") return "";
    const parts = [ctx.type || "context"];
    if (isNum(ctx.items)) parts.push(`${fmtInt(ctx.items)} items`);
    if (isNum(ctx.chars)) parts.push(fmtChars(ctx.chars));
    return parts.join(" · ");
  }

  // ------------------------------------------------------------------- tree

  const KIDS_PAGE = 200;

  function isExpanded(node) {
    if (state.expanded.has(node.id)) return true;
    if (state.collapsed.has(node.id)) return false;
    return node.depth < 1 || (node.depth < 2 && node.children.length <= 20);
  }

  function renderTree() {
    const tree = $("#tree");
    const idx = state.idx;
    if (!idx) {
      tree.replaceChildren();
      return;
    }
    const scroll = tree.scrollTop;
    const frag = document.createDocumentFragment();
    for (const root of idx.roots) frag.append(treeNode(root));
    tree.replaceChildren(frag);
    tree.scrollTop = scroll;
    $("#tree-count").textContent = `${fmtInt(idx.order.length)} node${idx.order.length === 1 ? "" : "s"}`;
  }

  function treeNode(node) {
    const open = isExpanded(node);
    const hasKids = node.children.length > 0;
    const q = node.start ? node.start.query : node.id === "n0" && state.idx.runStart ? state.idx.runStart.query : "";
    const row = el("div", {
      className: `trow ${depthClass(node.depth)}${node.id === state.selected ? " selected" : ""}`,
      role: "treeitem",
      "aria-selected": node.id === state.selected ? "true" : "false",
      "aria-expanded": hasKids ? String(open) : undefined,
      dataset: { node: node.id },
      tabindex: node.id === state.selected ? "0" : "-1",
      title: str(q),
    });
    row.append(
      hasKids
        ? el("button", { type: "button", className: "twisty", dataset: { toggle: node.id }, "aria-label": open ? "collapse" : "expand", text: open ? "▾" : "▸" })
        : el("span", "twisty-empty"),
      el("span", "tdot"),
      el("div", "tmain",
        el("div", "tline1",
          el("span", "tid", node.id),
          node.spawnedBy && node.spawnedBy.kind ? el("span", "tkind", node.spawnedBy.batch_id ? "rlm_batch" : "rlm_query") : null,
          el("span", "tquery", snippet(q, 140) || "(no query)")),
        el("div", "tline2",
          el("span", { title: `${fmtInt(node.total.input)} in / ${fmtInt(node.total.output)} out (subtree)` },
            `${fmtTok(node.total.input + node.total.output)} tok`),
          el("span", null, fmtCost(node.total.cost, node.total.unpriced)),
          el("span", null, fmtDur(node.duration)),
          el("span", null, `${node.iterations} it`),
          hasKids ? el("span", null, `${node.children.length} child${node.children.length === 1 ? "" : "ren"}`) : null,
          node.status !== "done" ? statusBadge(node.status) : null)),
    );
    const item = el("div", "tnode", row);
    if (hasKids && open) {
      const kids = el("div", { className: "tkids", role: "group" });
      const shown = state.shownKids.get(node.id) || KIDS_PAGE;
      for (const child of node.children.slice(0, shown)) kids.append(treeNode(child));
      if (node.children.length > shown) {
        kids.append(el("button", {
          type: "button",
          className: "btn btn-small more",
          dataset: { morekids: node.id },
          text: `show ${fmtInt(Math.min(KIDS_PAGE, node.children.length - shown))} more of ${fmtInt(node.children.length - shown)}`,
        }));
      }
      item.append(kids);
    }
    return item;
  }

  function revealNode(id) {
    const idx = state.idx;
    let node = idx && idx.nodes.get(id);
    while (node && node.parent != null) {
      const parent = idx.nodes.get(String(node.parent));
      if (!parent) break;
      state.collapsed.delete(parent.id);
      state.expanded.add(parent.id);
      const pos = parent.children.indexOf(node);
      if (pos >= (state.shownKids.get(parent.id) || KIDS_PAGE)) state.shownKids.set(parent.id, pos + 1);
      node = parent;
    }
  }

  function selectNode(id, opts = {}) {
    if (!state.idx || !state.idx.nodes.has(id)) return;
    state.selected = id;
    revealNode(id);
    renderTree();
    const row = $(`.trow[data-node="${CSS.escape(id)}"]`);
    if (row) row.scrollIntoView({ block: "nearest" });
    if (opts.tab) state.tab = opts.tab;
    renderTab(false);
    writeHash();
    if (state.tab === "timeline" && state.tlView) {
      const view = state.tlView;
      const i = view.model.rows.findIndex((r) => r.first && r.node.id === id);
      const y = i * ROW_H;
      const sc = view.scroller;
      if (i >= 0 && (y < sc.scrollTop || y > sc.scrollTop + sc.clientHeight - AXIS_H - 3 * ROW_H)) {
        sc.scrollTop = Math.max(0, y - ROW_H);
      }
    }
    if (opts.iteration !== undefined && opts.iteration !== null) {
      const target = document.getElementById(`iter-${opts.iteration}`);
      if (target) target.scrollIntoView({ block: "start" });
    }
  }

  // ------------------------------------------------------------------- node

  const ITER_PAGE = 20;
  const SUB_PAGE = 25;

  function iterationGroups(node) {
    const groups = new Map();
    const group = (it) => {
      const key = it === null || it === undefined ? "?" : String(it);
      let g = groups.get(key);
      if (!g) {
        g = { key, iteration: it, turns: [], cells: [], loose: [] };
        groups.set(key, g);
      }
      return g;
    };
    for (const ev of node.turns) group(ev.iteration).turns.push(ev);
    for (const ev of node.cells) group(ev.iteration).cells.push({ ev, subs: [] });
    const recorded = new Set(node.subcalls.map((s) => s.call_id));
    const subs = node.subcalls.slice();
    // Sub-model calls whose subcall event has not been written yet (still running).
    for (const mc of node.subCalls) if (!recorded.has(mc.call_id)) subs.push({ ...mc, kind: "llm", pending: true });
    for (const sc of subs) {
      let g = sc.iteration !== undefined && sc.iteration !== null ? groups.get(String(sc.iteration)) : null;
      const t = isNum(sc.t0) ? sc.t0 : sc.t;
      const fits = (c) => isNum(c.ev.t0) && t >= c.ev.t0 - 1e-3 && t <= c.ev.t0 + num(c.ev.duration_s) + 1e-3;
      let cell = g ? g.cells.find(fits) : null;
      if (!cell && !g) {
        for (const other of groups.values()) {
          cell = other.cells.find(fits);
          if (cell) break;
        }
      }
      if (cell) cell.subs.push(sc);
      else (g || group(sc.iteration)).loose.push(sc);
    }
    const list = [...groups.values()];
    list.sort((a, b) => (isNum(a.iteration) ? a.iteration : 1e9) - (isNum(b.iteration) ? b.iteration : 1e9));
    for (const g of list) g.cells.sort((a, b) => num(a.ev.index) - num(b.ev.index) || num(a.ev.t0) - num(b.ev.t0));
    return list;
  }

  function renderTab(keepScroll) {
    for (const tab of document.querySelectorAll(".tab")) {
      const on = tab.dataset.tab === state.tab;
      tab.classList.toggle("active", on);
      tab.setAttribute("aria-selected", String(on));
    }
    for (const name of ["node", "timeline", "totals"]) $(`#tab-${name}`).hidden = name !== state.tab;
    const body = $(`#tab-${state.tab}`);
    const scroll = body.scrollTop;
    if (state.tab === "node") renderNode();
    else if (state.tab === "timeline") renderTimeline(keepScroll);
    else renderTotals();
    body.scrollTop = keepScroll ? scroll : 0;
  }

  function nodeLink(id, text) {
    return el("button", { type: "button", className: "link", dataset: { goto: id }, text: text || id });
  }

  function renderNode() {
    const box = $("#tab-node");
    const idx = state.idx;
    const node = idx && idx.nodes.get(state.selected);
    if (!node) {
      box.replaceChildren(el("div", "empty", idx ? "This trace has no nodes yet." : emptyText()));
      return;
    }
    const start = node.start || (node.id === "n0" ? idx.runStart : null) || {};
    const frag = document.createDocumentFragment();
    // header
    const crumbs = [];
    let cur = node;
    while (cur) {
      crumbs.unshift(cur);
      cur = cur.parent != null ? idx.nodes.get(String(cur.parent)) : null;
      if (crumbs.length > 64) break;
    }
    const head = el("div", `node-head ${depthClass(node.depth)}`);
    head.append(
      el("div", "node-title",
        el("span", "depth-chip", `depth ${node.depth}`),
        el("h2", null, node.id),
        start.model ? el("span", "muted mono", start.model) : null,
        statusBadge(node.status),
        el("div", "spacer"),
        crumbs.length < 2 ? null : el("nav", { className: "crumbs", "aria-label": "ancestors" },
          ...crumbs.flatMap((n, i) => [i ? el("span", "muted", " › ") : null,
            n === node ? el("span", "crumb-cur", n.id) : nodeLink(n.id)]))),
    );
    if (node.spawnedBy) {
      const sb = node.spawnedBy;
      const parent = node.parent != null ? String(node.parent) : null;
      head.append(el("div", "muted small spawned",
        "spawned by ",
        el("span", "mono", `${sb.batch_id ? "rlm_batch" : "rlm_query"} ${sb.call_id ?? ""}`),
        parent ? " in " : "", parent ? nodeLink(parent) : null,
        isNum(sb.iteration) ? `, iteration ${sb.iteration}` : "",
        sb.batch_id ? ` (batch ${sb.batch_id} #${sb.index})` : ""));
    }
    const t = node.total;
    const s = node.self;
    head.append(el("div", "stats stats-node",
      stat("cost (subtree)", fmtCost(t.cost, t.unpriced), `this node alone: ${fmtCost(s.cost, s.unpriced)}`),
      stat("tokens in / out", `${fmtTok(t.input)} / ${fmtTok(t.output)}`,
        `subtree: ${fmtInt(t.input)} in, ${fmtInt(t.output)} out, ${fmtInt(t.cached)} cached\n` +
        `this node alone: ${fmtInt(s.input)} in, ${fmtInt(s.output)} out`),
      stat("model calls", fmtInt(t.calls), `this node alone: ${fmtInt(s.calls)}`),
      stat("iterations", fmtInt(node.iterations)),
      stat("sub-calls", fmtInt(node.subcalls.length)),
      stat("children", fmtInt(node.children.length)),
      stat("duration", fmtDur(node.duration))));
    head.append(el("div", "field", el("div", "label", "query"), longText(start, "query", "pre query")));
    if (start.context) head.append(el("div", "field inline", el("span", "label", "context"), el("span", "mono", contextText(start.context))));
    if (node.end) {
      head.append(el("div", "field", el("div", "label", "answer"), longText(node.end, "answer", "pre answer")));
      if (node.end.error) head.append(el("div", "field", el("div", "label bad", "error"), longText(node.end, "error", "pre err")));
      const nodeCites = citationList(node.end.citations, "field node-citations");
      if (nodeCites) head.append(nodeCites);
    }
    frag.append(head);
    // iterations
    const groups = iterationGroups(node);
    const shown = state.shownIters.get(node.id) || ITER_PAGE;
    for (const g of groups.slice(0, shown)) frag.append(iterationCard(node, g));
    if (groups.length > shown) {
      frag.append(el("button", {
        type: "button",
        className: "btn more",
        dataset: { moreiters: node.id },
        text: `show ${Math.min(ITER_PAGE, groups.length - shown)} more iterations (${groups.length - shown} left)`,
      }));
    }
    if (!groups.length) frag.append(el("div", "empty", "No iterations recorded yet."));
    box.replaceChildren(frag);
  }

  function usageText(ev) {
    const u = ev.usage || {};
    const parts = [`${fmtTok(num(u.input_tokens))} in / ${fmtTok(num(u.output_tokens))} out`];
    if (num(u.cached_tokens)) parts.push(`${fmtTok(u.cached_tokens)} cached`);
    parts.push(fmtCost(u.cost_usd, !isNum(u.cost_usd)));
    return parts.join(" · ");
  }

  function iterationCard(node, g) {
    const card = el("section", { className: "iter", id: `iter-${g.key}` });
    const turn = g.turns[g.turns.length - 1];
    const head = el("div", "iter-head",
      el("span", "iter-n", g.iteration === null || g.iteration === undefined ? "Other events" : `Iteration ${g.iteration}`));
    if (turn) {
      append(head,
        el("span", "muted small mono", turn.model || ""),
        el("span", "muted small", fmtDur(turn.duration_s)),
        el("span", "muted small", usageText(turn)),
        turn.cached ? badge("cached", "info") : null,
        turn.error ? badge("error", "status-bad") : null);
    }
    card.append(head);
    for (const tv of g.turns) {
      const msgs = Array.isArray(tv.messages) ? tv.messages : [];
      if (msgs.length) {
        card.append(lazyDetails(`msgs:${node.id}:${tv.call_id}`,
          el("span", null, `${msgs.length} message${msgs.length === 1 ? "" : "s"} sent with this turn `,
            el("span", "muted", "(only those added since the previous turn)")),
          () => {
            const list = el("div", "messages");
            for (const m of msgs) {
              list.append(el("div", `msg role-${str(m.role)}`, el("div", "msg-role", str(m.role || "?")), longText(m, "content", "pre")));
            }
            return list;
          }, "msgs"));
      }
      if (tv.error) card.append(el("div", "field", el("div", "label bad", "model error"), longText(tv, "error", "pre err")));
      if (tv.response !== undefined && tv.response !== null) {
        const resp = el("div", "response", el("div", "label", "response"));
        const foldCode = g.cells.length > 0 && countRunnable(tv.response) === g.cells.length;
        resp.append(richText(tv.response, foldCode ? `resp:${node.id}:${tv.call_id}` : null));
        if (isNum(tv.response_chars)) resp.append(el("div", "cut-note", `cut in the trace file: ${fmtInt(tv.response_chars)} characters in full`));
        card.append(resp);
      }
    }
    for (const c of g.cells) card.append(cellCard(node, c));
    if (g.loose.length) {
      card.append(el("div", "label", "sub-calls"), subcallList(node, g.loose));
    }
    return card;
  }

  function cellCard(node, c) {
    const ev = c.ev;
    const cls = ["cell"];
    if (ev.error) cls.push("has-error");
    if (ev.final !== null && ev.final !== undefined) cls.push("is-final");
    const card = el("div", cls.join(" "));
    card.append(el("div", "cell-head",
      el("span", "cell-n", `cell ${num(ev.index)}`),
      el("span", "muted small", fmtDur(ev.duration_s)),
      ev.final !== null && ev.final !== undefined ? badge("final", "status-ok") : null,
      ev.timed_out ? badge("timed out", "status-bad") : null,
      ev.restarted ? badge("worker restarted", "status-warn") : null,
      ev.error ? badge("error", "status-bad") : null,
      c.subs.length ? el("span", "muted small", `${c.subs.length} sub-call${c.subs.length === 1 ? "" : "s"}`) : null));
    card.append(codeBlock(ev.code));
    if (isNum(ev.code_chars)) card.append(el("div", "cut-note", `code cut in the trace file: ${fmtInt(ev.code_chars)} characters in full`));
    const out = str(ev.output);
    if (out) card.append(el("div", "field", el("div", "label", "output"), longText(ev, "output", "pre output")));
    else if (!ev.error) card.append(el("div", "muted small noout", "(no output)"));
    if (ev.error) card.append(el("div", "field", el("div", "label bad", "error"), longText(ev, "error", "pre err")));
    if (c.subs.length) card.append(subcallList(node, c.subs));
    if (ev.final !== null && ev.final !== undefined) {
      // A cell that ended its node carries final: true; the answer itself is in node_end.
      const holder = ev.final === true ? (node.end || {}) : ev;
      card.append(el("div", "field final", el("div", "label", "final answer"), longText(holder, ev.final === true ? "answer" : "final", "pre answer")));
    }
    return card;
  }

  function subcallList(node, subs) {
    const wrap = el("div", "subs");
    const batches = new Map();
    const items = [];
    for (const sc of subs) {
      if (sc.batch_id !== null && sc.batch_id !== undefined) {
        let b = batches.get(sc.batch_id);
        if (!b) {
          b = { batch: sc.batch_id, subs: [] };
          batches.set(sc.batch_id, b);
          items.push(b);
        }
        b.subs.push(sc);
      } else items.push(sc);
    }
    for (const item of items) {
      if (item.batch !== undefined) {
        const list = item.subs.sort((a, b) => num(a.index) - num(b.index));
        const start = Math.min(...list.map((s) => num(s.t0)));
        const end = Math.max(...list.map((s) => num(s.t0) + num(s.duration_s)));
        const kind = list[0].kind === "rlm" ? "rlm_batch" : "llm_batch";
        const errors = list.filter((s) => s.error).length;
        const box = el("div", "batch",
          el("div", "batch-head",
            el("span", `kind kind-${list[0].kind}`, kind),
            el("span", "small", `${list.length} calls in parallel`),
            el("span", "muted small", `wall ${fmtDur(end - start)}`),
            el("span", "muted small mono", String(item.batch)),
            errors ? badge(`${errors} failed`, "status-bad") : null));
        box.append(pagedSubs(node, list, `batch:${node.id}:${item.batch}`));
        wrap.append(box);
      } else wrap.append(subcallRow(node, item));
    }
    return wrap;
  }

  function pagedSubs(node, list, key) {
    const frag = document.createDocumentFragment();
    const shown = state.shownIters.get(key) || SUB_PAGE;
    for (const sc of list.slice(0, shown)) frag.append(subcallRow(node, sc));
    if (list.length > shown) {
      frag.append(el("button", {
        type: "button",
        className: "btn btn-small more",
        dataset: { moresubs: key },
        text: `show ${Math.min(SUB_PAGE * 4, list.length - shown)} more (${list.length - shown} left)`,
      }));
    }
    return frag;
  }

  function subcallRow(node, sc) {
    const mc = state.idx.calls.get(sc.call_id);
    const usage = mc && mc.purpose === "sub" ? usageText(mc) : null;
    const child = sc.child_node_id != null ? String(sc.child_node_id) : null;
    const uses = state.idx.toolsByCall.get(sc.call_id ?? "") || [];
    const failed = uses.filter((u) => u.error).length;
    const summary = el("span", "sub-summary",
      el("span", `kind kind-${sc.kind || "llm"}`, sc.kind === "rlm" ? "rlm" : "llm"),
      sc.batch_id !== null && sc.batch_id !== undefined ? el("span", "muted small mono", `#${num(sc.index)}`) : null,
      el("span", "sub-prompt", snippet(sc.prompt, 110) || "(prompt not recorded)"),
      el("span", "arrow", "→"),
      sc.pending ? el("span", "muted", "running…")
        : sc.error ? el("span", "bad", snippet(sc.error, 60))
          : el("span", "sub-answer", snippet(sc.answer, 70)),
      uses.length ? el("span", "tool-count small", `${uses.length} tool run${uses.length === 1 ? "" : "s"}`) : null,
      failed ? badge(`${failed} failed`, "status-bad") : null,
      el("span", "sub-meta muted small",
        [sc.model, fmtDur(sc.duration_s), usage].filter(Boolean).join(" · ")),
      child ? nodeLink(child, `open ${child} →`) : null);
    return lazyDetails(`sub:${node.id}:${sc.call_id}`, summary, () => {
      const body = el("div", "sub-body");
      body.append(el("div", "field", el("div", "label", "prompt"), longText(sc, "prompt", "pre")));
      if (sc.error) body.append(el("div", "field", el("div", "label bad", "error"), longText(sc, "error", "pre err")));
      if (uses.length) body.append(toolRunList(uses));
      if (!sc.pending) body.append(el("div", "field", el("div", "label", "answer"), longText(sc, "answer", "pre answer")));
      body.append(el("div", "muted small mono", `call ${sc.call_id ?? "?"}` + (mc && mc.cached ? " · served from cache" : "")));
      return body;
    }, `sub ${sc.kind === "rlm" ? "sub-rlm" : ""}`);
  }

  // The host tools a tool-using sub-call ran, in order: what the sub-model asked with
  // and what it read back. Arguments are model-written: text only, like everything else.
  function toolRunList(uses) {
    const list = el("ol", "tool-runs");
    for (const use of uses) {
      const item = el("li", `tool-run${use.error ? " has-error" : ""}`,
        el("div", "tool-head",
          el("span", "tool-name mono", str(use.tool) || "?"),
          isNum(use.step) ? el("span", "muted small", `step ${use.step}`) : null,
          el("span", "muted small", fmtDur(use.duration_s)),
          use.error ? badge("error", "status-bad") : null),
        el("div", "field", el("div", "label", "arguments"), longText(use, "arguments", "pre tool-args")));
      if (use.error) item.append(el("div", "field", el("div", "label bad", "error"), longText(use, "error", "pre err")));
      else item.append(el("div", "field", el("div", "label", "result"), longText(use, "result", "pre output")));
      list.append(item);
    }
    return el("div", "field", el("div", "label", "tool runs"), list);
  }

  // --------------------------------------------------------------- timeline

  const ROW_H = 22;
  const AXIS_H = 28;
  const LABEL_W = 150;

  function buildTimelineModel(idx, compact) {
    const rows = [];
    const T0 = idx.t0;
    let T1 = idx.t1;
    for (const node of idx.order) {
      const main = [];
      for (const ev of node.turns) {
        const s = isNum(ev.t0) ? ev.t0 : num(ev.t) - num(ev.duration_s);
        main.push({ s, e: s + num(ev.duration_s), kind: "turn", node, ev });
      }
      for (const ev of node.cells) {
        const s = isNum(ev.t0) ? ev.t0 : num(ev.t) - num(ev.duration_s);
        main.push({ s, e: s + num(ev.duration_s), kind: "cell", node, ev });
      }
      const subs = [];
      const recorded = new Set();
      for (const ev of node.subcalls) {
        recorded.add(ev.call_id);
        const s = isNum(ev.t0) ? ev.t0 : num(ev.t) - num(ev.duration_s);
        subs.push({ s, e: s + num(ev.duration_s), kind: ev.kind === "rlm" ? "rlm" : "llm", node, ev });
      }
      for (const ev of node.subCalls) {
        if (recorded.has(ev.call_id)) continue;
        const s = isNum(ev.t0) ? ev.t0 : num(ev.t) - num(ev.duration_s);
        subs.push({ s, e: s + num(ev.duration_s), kind: "llm", node, ev });
      }
      for (const ev of node.toolUses) {
        const s = isNum(ev.t0) ? ev.t0 : num(ev.t) - num(ev.duration_s);
        const sc = idx.subcallById.get(ev.call_id);
        subs.push({ s, e: s + num(ev.duration_s), kind: "tool", node, ev, iteration: sc ? sc.iteration : null });
      }
      for (const it of main) T1 = Math.max(T1, it.e);
      main.sort((a, b) => a.s - b.s);
      subs.sort((a, b) => a.s - b.s || a.e - b.e);
      if (compact) {
        for (const it of subs) {
          T1 = Math.max(T1, it.e);
          it.thin = true;
        }
        rows.push({ node, label: node.id, sub: "", items: main.concat(subs), first: true, compact: true });
        continue;
      }
      rows.push({ node, label: node.id, sub: "turns · cells", items: main, first: true });
      const lanes = [];
      for (const it of subs) {
        T1 = Math.max(T1, it.e);
        let lane = lanes.findIndex((l) => l.end <= it.s + 1e-6);
        if (lane < 0) {
          lanes.push({ end: it.e, items: [] });
          lane = lanes.length - 1;
        }
        lanes[lane].end = it.e;
        lanes[lane].items.push(it);
      }
      lanes.forEach((l, i) => rows.push({ node, label: "", sub: i === 0 ? "sub-calls" : "", items: l.items, first: false }));
    }
    return { rows, T0, T1: Math.max(T1, T0 + 1e-3) };
  }

  function niceStep(span, target) {
    const raw = span / target;
    const pow = Math.pow(10, Math.floor(Math.log10(raw)));
    for (const m of [1, 2, 5, 10]) if (raw <= m * pow) return m * pow;
    return 10 * pow;
  }

  function fmtOffset(s, step) {
    if (step >= 60 || s >= 600) {
      const m = Math.floor(s / 60);
      const r = s - m * 60;
      return m ? `${m}m${r ? " " + Math.round(r) + "s" : ""}` : `${Math.round(r)}s`;
    }
    const digits = step >= 1 ? 0 : step >= 0.1 ? 1 : 2;
    return s.toFixed(digits) + "s";
  }

  function renderTimeline(keepScroll) {
    const box = $("#tab-timeline");
    const prev = keepScroll && state.tlView ? state.tlView.scroller : null;
    const keep = prev ? { top: prev.scrollTop, left: prev.scrollLeft } : null;
    const idx = state.idx;
    if (!idx) {
      box.replaceChildren(el("div", "empty", emptyText()));
      return;
    }
    if (state.tlCompact === null) state.tlCompact = idx.events.length > 3000;
    if (!state.timelineModel) state.timelineModel = buildTimelineModel(idx, state.tlCompact);
    const model = state.timelineModel;
    const compact = el("input", { type: "checkbox", id: "tl-compact" });
    compact.checked = state.tlCompact;
    compact.addEventListener("change", () => {
      state.tlCompact = compact.checked;
      state.timelineModel = null;
      renderTimeline(true);
    });
    const toolbar = el("div", "tl-toolbar",
      el("span", "small", `${fmtInt(model.rows.length)} ${state.tlCompact ? "nodes" : "lanes"} · ${fmtDur(model.T1 - model.T0)}`),
      el("div", "legend",
        el("span", "lg lg-turn", "root-model turn"), el("span", "lg lg-cell", "code cell"),
        el("span", "lg lg-llm", "llm sub-call"), el("span", "lg lg-tool", "tool run"), el("span", "lg lg-rlm", "child RLM"),
        el("span", "lg lg-err", "error")),
      el("div", "spacer"),
      el("label", { className: "small muted auto", title: "One row per node; concurrent sub-calls overlap" }, compact, "compact"),
      el("button", { type: "button", className: "btn btn-small", dataset: { zoom: "out" }, text: "−", title: "zoom out" }),
      el("button", { type: "button", className: "btn btn-small", dataset: { zoom: "fit" }, text: "fit", title: "fit the run to the width" }),
      el("button", { type: "button", className: "btn btn-small", dataset: { zoom: "in" }, text: "+", title: "zoom in" }));
    const scroller = el("div", "tl-scroll");
    const inner = el("div", "tl-inner");
    const axis = el("div", "tl-axis");
    const grid = el("div", "tl-grid");
    const layer = el("div", "tl-rows");
    inner.append(axis, grid, layer);
    scroller.append(inner);
    box.replaceChildren(toolbar, scroller);
    const view = { scroller, inner, axis, grid, layer, model, range: "" };
    state.tlView = view;
    layoutTimeline(view);
    if (keep) {
      scroller.scrollTop = keep.top;
      scroller.scrollLeft = keep.left;
      drawTimelineRows(view, true);
    }
    scroller.addEventListener("scroll", () => {
      if (view.raf) return;
      view.raf = requestAnimationFrame(() => {
        view.raf = 0;
        drawTimelineRows(view, false);
      });
    });
  }

  function layoutTimeline(view) {
    const { model, inner, axis, grid, scroller } = view;
    const avail = Math.max(320, scroller.clientWidth - LABEL_W - 24);
    view.plotW = Math.round(avail * state.tlZoom);
    view.scale = view.plotW / (model.T1 - model.T0);
    inner.style.width = LABEL_W + view.plotW + 16 + "px";
    inner.style.height = AXIS_H + model.rows.length * ROW_H + 8 + "px";
    // axis ticks
    const span = model.T1 - model.T0;
    const step = niceStep(span, Math.max(4, Math.floor(view.plotW / 110)));
    const frag = document.createDocumentFragment();
    const lines = document.createDocumentFragment();
    frag.append(el("div", { className: "tl-corner", style: { width: LABEL_W + "px" } }, "node"));
    for (let s = 0; s <= span + 1e-9; s += step) {
      const x = LABEL_W + s * view.scale;
      frag.append(el("div", { className: "tick", style: { left: x + "px" } }, el("span", null, fmtOffset(s, step))));
      if (s > 0) lines.append(el("div", { className: "gridline", style: { left: x + "px" } }));
    }
    axis.replaceChildren(frag);
    grid.style.height = model.rows.length * ROW_H + "px";
    grid.replaceChildren(lines);
    view.range = "";
    drawTimelineRows(view, true);
  }

  function drawTimelineRows(view, force) {
    const { scroller, layer, model } = view;
    const top = Math.max(0, scroller.scrollTop - AXIS_H);
    const first = Math.max(0, Math.floor(top / ROW_H) - 6);
    const last = Math.min(model.rows.length, Math.ceil((top + scroller.clientHeight) / ROW_H) + 6);
    const left = scroller.scrollLeft - 200;
    const right = scroller.scrollLeft + scroller.clientWidth + 200;
    const range = `${first}:${last}:${Math.floor(left / 400)}`;
    if (!force && range === view.range) return;
    view.range = range;
    const frag = document.createDocumentFragment();
    for (let i = first; i < last; i++) {
      const row = model.rows[i];
      const rowEl = el("div", {
        className: `tl-row ${depthClass(row.node.depth)}${row.first ? " tl-first" : ""}${row.node.id === state.selected ? " tl-sel" : ""}${row.compact ? " tl-compact" : ""}`,
        style: { top: AXIS_H + i * ROW_H + "px" },
      });
      rowEl.append(el("div", { className: "tl-label", style: { width: LABEL_W + "px" }, dataset: { goto: row.node.id } },
        row.first ? el("span", "tl-id", row.label) : null,
        el("span", "tl-sub", row.first ? ` d${row.node.depth}` : row.sub)));
      for (const it of row.items) {
        const x0 = LABEL_W + (it.s - model.T0) * view.scale;
        const w = Math.max(2, (it.e - it.s) * view.scale);
        if (x0 + w < left || x0 > right) continue;
        const ev = it.ev;
        const err = ev.error ? " tl-err" : "";
        const bar = el("div", {
          className: `bar bar-${it.kind}${err}${ev.cached ? " bar-cached" : ""}${it.thin ? " bar-thin" : ""}`,
          style: { left: x0 + "px", width: w + "px" },
          dataset: { node: it.node.id, iter: ev.iteration ?? it.iteration ?? "" },
          title: barTitle(it),
        });
        if (w > 48 && !it.thin) bar.textContent = barLabel(it);
        rowEl.append(bar);
      }
      frag.append(rowEl);
    }
    layer.replaceChildren(frag);
  }

  function barLabel(it) {
    const ev = it.ev;
    if (it.kind === "turn") return `turn ${ev.iteration ?? ""}`;
    if (it.kind === "cell") return `cell ${ev.iteration ?? ""}.${ev.index ?? ""}`;
    if (it.kind === "rlm") return `→ ${ev.child_node_id ?? "child"}`;
    if (it.kind === "tool") return str(ev.tool) || "tool";
    return snippet(ev.prompt ?? ev.model ?? "llm", 40);
  }

  function barTitle(it) {
    const ev = it.ev;
    const lines = [`${it.node.id} · ${it.kind}${ev.iteration != null ? " · iteration " + ev.iteration : ""}`,
      `${fmtDur(it.e - it.s)} (+${fmtDur(it.s - state.timelineModel.T0)} → +${fmtDur(it.e - state.timelineModel.T0)})`];
    if (ev.model) lines.push(ev.model);
    const mc = it.kind === "turn" ? ev : it.kind === "tool" ? null : state.idx.calls.get(ev.call_id);
    if (mc && mc.usage) lines.push(usageText(mc));
    if (it.kind === "tool") {
      lines.push(`tool ${str(ev.tool)} · sub-call ${ev.call_id ?? "?"} · step ${ev.step ?? "?"}`);
      lines.push("arguments: " + snippet(ev.arguments, 160));
      if (!ev.error) lines.push("result: " + snippet(ev.result, 160));
    }
    if (ev.prompt) lines.push("prompt: " + snippet(ev.prompt, 160));
    if (ev.answer) lines.push("answer: " + snippet(ev.answer, 160));
    if (it.kind === "cell") lines.push(snippet(ev.code, 160));
    if (ev.error) lines.push("error: " + snippet(ev.error, 160));
    return lines.join("\n");
  }

  // ----------------------------------------------------------------- totals

  function renderTotals() {
    const box = $("#tab-totals");
    const idx = state.idx;
    if (!idx) {
      box.replaceChildren(el("div", "empty", emptyText()));
      return;
    }
    const byModel = new Map();
    const byDepth = new Map();
    const byPurpose = new Map();
    const add = (map, key, usage) => {
      let u = map.get(key);
      if (!u) map.set(key, (u = emptyUsage()));
      addCall(u, usage);
    };
    for (const mc of idx.modelCalls) {
      add(byModel, str(mc.model) || "?", mc.usage);
      add(byDepth, String(num(mc.depth)), mc.usage);
      add(byPurpose, mc.purpose === "turn" ? "root-model turns" : "sub-calls (llm_query)", mc.usage);
    }
    const reported = idx.runEnd && idx.runEnd.usage;
    const fromRun = (obj) => {
      const m = new Map();
      for (const [k, v] of Object.entries(obj || {})) m.set(k, fromReported(v));
      return m;
    };
    const frag = document.createDocumentFragment();
    const note = reported && reported.by_model
      ? "From the run_end event (what the run charged)."
      : "Computed from the model calls recorded so far: the run has not ended.";
    frag.append(el("p", "muted small", note));
    frag.append(usageTable("By model", "model", reported && reported.by_model ? fromRun(reported.by_model) : byModel, null));
    frag.append(usageTable("By depth", "depth", reported && reported.by_depth ? fromRun(reported.by_depth) : byDepth, (k) => {
      const chip = el("span", `depth-chip ${depthClass(Number(k))}`, `depth ${k}`);
      return chip;
    }));
    frag.append(usageTable("By purpose", "purpose", byPurpose, null));
    box.replaceChildren(frag);
  }

  function usageTable(title, keyLabel, map, renderKey) {
    const entries = [...map.entries()].filter(([, u]) => u);
    if (keyLabel === "depth") entries.sort((a, b) => Number(a[0]) - Number(b[0]));
    else entries.sort((a, b) => b[1].cost - a[1].cost || b[1].input - a[1].input);
    const total = emptyUsage();
    for (const [, u] of entries) addUsage(total, u);
    const share = (u) => (total.cost > 0 ? u.cost / total.cost : total.input + total.output > 0 ? (u.input + u.output) / (total.input + total.output) : 0);
    const table = el("table", "usage");
    table.append(el("thead", null, el("tr", null,
      el("th", null, keyLabel), el("th", "r", "calls"), el("th", "r", "input"), el("th", "r", "output"),
      el("th", "r", "cached"), el("th", "r", "cost"), el("th", "share-col", total.cost > 0 ? "share of cost" : "share of tokens"))));
    const tbody = el("tbody");
    for (const [key, u] of entries) {
      const pct = share(u);
      tbody.append(el("tr", null,
        el("td", null, renderKey ? renderKey(key) : el("span", "mono", key)),
        el("td", "r", fmtInt(u.calls)), el("td", "r", fmtInt(u.input)), el("td", "r", fmtInt(u.output)),
        el("td", "r", fmtInt(u.cached)), el("td", "r", fmtCost(u.cost, u.unpriced)),
        el("td", "share-col", el("div", "share", el("div", { className: "share-bar", style: { width: (pct * 100).toFixed(1) + "%" } }),
          el("span", "share-pct", (pct * 100).toFixed(0) + "%")))));
    }
    table.append(tbody);
    table.append(el("tfoot", null, el("tr", null,
      el("td", null, "total"), el("td", "r", fmtInt(total.calls)), el("td", "r", fmtInt(total.input)),
      el("td", "r", fmtInt(total.output)), el("td", "r", fmtInt(total.cached)),
      el("td", "r", fmtCost(total.cost, total.unpriced)), el("td", null, ""))));
    return el("section", "card", el("h3", null, title), table);
  }

  // ----------------------------------------------------------------- events

  function setAuto(on) {
    $("#auto-refresh").checked = on;
    if (state.timer) clearInterval(state.timer);
    state.timer = on ? setInterval(tick, 2000) : null;
  }

  async function tick() {
    if (state.busy) return;
    if (!state.run) {
      // a directory with no runs yet: open the first one that appears
      try {
        await loadRuns();
      } catch (err) {
        return;
      }
      if (state.runs.length) await openRun(state.runs[0].name, false);
      return;
    }
    state.busy = true;
    try {
      const changed = await loadTrace(true);
      if (changed) renderAll(true);
      else $("#updated").textContent = "read " + state.updated.toLocaleTimeString();
      if (state.idx && state.idx.runEnd) setAuto(false);
    } catch (err) {
      state.error = String(err.message || err);
      renderBanner();
    } finally {
      state.busy = false;
    }
  }

  async function openRun(name, full) {
    state.run = name;
    state.offset = 0;
    state.line = 0;
    state.busy = true;
    try {
      await loadTrace(false);
      if (full) {
        const h = readHash();
        if (h.node && state.idx.nodes.has(h.node)) state.selected = h.node;
        if (h.tab && ["node", "timeline", "totals"].includes(h.tab)) state.tab = h.tab;
      }
    } catch (err) {
      state.error = String(err.message || err);
      state.idx = null;
    } finally {
      state.busy = false;
    }
    if (state.selected) revealNode(state.selected);
    renderAll(false);
    setAuto(Boolean(state.idx && !state.idx.runEnd));
  }

  async function refresh() {
    if (state.busy) return;
    if (document.body.dataset.view === "grid") {
      try {
        await window.recursaBench.reload();
      } catch (err) {
        state.error = String(err.message || err);
        renderBanner();
      }
      return;
    }
    try {
      await loadRuns();
    } catch (err) {
      state.error = String(err.message || err);
    }
    if (!state.run && state.runs.length) state.run = state.runs[0].name;
    if (!state.run) {
      renderAll(false);
      return;
    }
    renderPicker();
    state.busy = true;
    try {
      await loadTrace(false);
    } catch (err) {
      state.error = String(err.message || err);
    } finally {
      state.busy = false;
    }
    renderAll(true);
    if (state.idx && !state.idx.runEnd && !state.timer) setAuto(true);
  }

  function bind() {
    $("#refresh").addEventListener("click", refresh);
    $("#bench-back").addEventListener("click", showBenchGrid);
    $("#auto-refresh").addEventListener("change", (e) => setAuto(e.target.checked));
    $("#run-picker").addEventListener("change", (e) => {
      state.selected = null;
      state.expanded.clear();
      state.collapsed.clear();
      state.open.clear();
      state.shownIters.clear();
      state.shownKids.clear();
      openRun(e.target.value, false);
    });
    for (const tab of document.querySelectorAll(".tab")) {
      tab.addEventListener("click", () => {
        state.tab = tab.dataset.tab;
        renderTab(false);
        writeHash();
      });
    }
    $("#tree").addEventListener("click", (e) => {
      const toggle = e.target.closest("[data-toggle]");
      if (toggle) {
        const id = toggle.dataset.toggle;
        const node = state.idx.nodes.get(id);
        if (isExpanded(node)) {
          state.expanded.delete(id);
          state.collapsed.add(id);
        } else {
          state.collapsed.delete(id);
          state.expanded.add(id);
        }
        renderTree();
        return;
      }
      const more = e.target.closest("[data-morekids]");
      if (more) {
        const id = more.dataset.morekids;
        state.shownKids.set(id, (state.shownKids.get(id) || KIDS_PAGE) + KIDS_PAGE);
        renderTree();
        return;
      }
      const row = e.target.closest(".trow");
      if (row) {
        state.tab = state.tab === "totals" ? "node" : state.tab;
        selectNode(row.dataset.node);
      }
    });
    $("#tree").addEventListener("keydown", (e) => {
      const row = e.target.closest(".trow");
      if (!row) return;
      const rows = [...document.querySelectorAll("#tree .trow")];
      const i = rows.indexOf(row);
      let next = null;
      if (e.key === "ArrowDown") next = rows[i + 1];
      else if (e.key === "ArrowUp") next = rows[i - 1];
      else if (e.key === "Enter" || e.key === " ") next = row;
      if (!next) return;
      e.preventDefault();
      selectNode(next.dataset.node);
      const again = $(`.trow[data-node="${CSS.escape(next.dataset.node)}"]`);
      if (again) again.focus();
    });
    $("#expand-all").addEventListener("click", () => {
      if (!state.idx) return;
      for (const node of state.idx.order) {
        state.collapsed.delete(node.id);
        state.expanded.add(node.id);
      }
      renderTree();
    });
    $("#collapse-all").addEventListener("click", () => {
      if (!state.idx) return;
      state.expanded.clear();
      for (const node of state.idx.order) if (node.depth >= 1 && node.children.length) state.collapsed.add(node.id);
      renderTree();
    });
    document.addEventListener("click", (e) => {
      const go = e.target.closest("[data-goto]");
      if (go && !go.closest("#tree")) {
        e.preventDefault();
        e.stopPropagation();
        selectNode(go.dataset.goto, { tab: "node" });
        return;
      }
      const more = e.target.closest("[data-moreiters]");
      if (more) {
        const id = more.dataset.moreiters;
        state.shownIters.set(id, (state.shownIters.get(id) || ITER_PAGE) + ITER_PAGE);
        renderTab(true);
        return;
      }
      const moreSubs = e.target.closest("[data-moresubs]");
      if (moreSubs) {
        const key = moreSubs.dataset.moresubs;
        state.shownIters.set(key, (state.shownIters.get(key) || SUB_PAGE) + SUB_PAGE * 4);
        renderTab(true);
        return;
      }
      const bar = e.target.closest(".bar");
      if (bar) {
        selectNode(bar.dataset.node, { tab: "node", iteration: bar.dataset.iter || null });
        return;
      }
      const zoom = e.target.closest("[data-zoom]");
      if (zoom && state.tlView) {
        const view = state.tlView;
        const sc = view.scroller;
        const centre = (sc.scrollLeft + sc.clientWidth / 2 - LABEL_W) / view.plotW;
        const z = zoom.dataset.zoom;
        state.tlZoom = z === "fit" ? 1 : z === "in" ? Math.min(256, state.tlZoom * 2) : Math.max(1, state.tlZoom / 2);
        layoutTimeline(view);
        sc.scrollLeft = Math.max(0, centre * view.plotW + LABEL_W - sc.clientWidth / 2);
      }
    }, true);
    document.addEventListener("keydown", (e) => {
      if (e.target.closest("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
      if (e.key === "r") refresh();
      else if (e.key === "1" || e.key === "2" || e.key === "3") {
        state.tab = ["node", "timeline", "totals"][Number(e.key) - 1];
        renderTab(false);
        writeHash();
      }
    });
    let resizeTimer = 0;
    window.addEventListener("resize", () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(() => {
        if (state.tab === "timeline" && state.tlView) layoutTimeline(state.tlView);
      }, 150);
    });
  }

  async function init() {
    try {
      await start();
    } finally {
      document.body.dataset.ready = "1";
    }
  }

  async function start() {
    bind();
    const h = readHash();
    if (h.tab && ["node", "timeline", "totals"].includes(h.tab)) state.tab = h.tab;
    renderTab(false);
    try {
      await loadRuns();
    } catch (err) {
      state.error = String(err.message || err);
      renderAll(false);
      return;
    }
    if (state.bench) {
      try {
        await window.recursaBench.init(openBenchTrace);
      } catch (err) {
        state.error = String(err.message || err);
        renderBanner();
      }
      if (h.run && state.runs.some((r) => r.name === h.run)) await openBenchTrace(h.run);
      else showBenchGrid();
      return;
    }
    if (!state.runs.length) {
      renderAll(false);
      if (state.directory) setAuto(true);
      return;
    }
    const name = h.run && state.runs.some((r) => r.name === h.run) ? h.run : state.runs[0].name;
    $("#run-picker").value = name;
    await openRun(name, true);
  }

  window.recursaViewer = {
    state, tokenizePython, buildIndex,
    helpers: { el, fmtCost, fmtTok, snippet },  // for bench.js
  };
  init();
})();
