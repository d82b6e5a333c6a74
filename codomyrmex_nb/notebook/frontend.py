"""The live view's front end: a small anywidget ES module and its CSS.

The kernel decides everything; the browser only draws what it is sent:

- ``head``: the progress header (HTML);
- ``picture``: the whole drawing (HTML: a ``<style>`` and the SVG), sent after a layout;
- ``patch``: ``{"css", "tips", "texts"}`` since that picture: a ``<style>`` block that
  recolours changed nodes in place, and their new hover texts and suffixes by id;
- ``detail``: the inspector panel for the clicked node ('' when closed);
- ``answer``: counts the kernel's replies to clicks: each one redraws the panel, also
  when its details did not change (a second click on the selected node);
- ``ticks``: ``{"now", "run", "nodes"}``, start times (``time.time()``) the browser keeps
  counting from, twice a second, with no kernel traffic: the header's elapsed time while
  the run is open, each running node's time (its suffix and hover text), and every
  ``data-codo-since`` element of the panel (a running task's time). The browser's clock
  is corrected by the kernel's ``now`` at each update (kernel and browser may differ).

A click on a node sends ``{"kind": "select", "node": id}``; the panel's buttons
send ``cancel``, ``retry`` or ``close``; each message carries a unique ``token``
(``busy_clicks``: a click a wait answered early is not answered twice). Until the
kernel answers (at once on a subshell, else when the main shell is free or in our
wait) the panel shows the node's hover text; a click on the node whose details are
open keeps them while the kernel refreshes them.
Output sections (``pre.codo-tail``) open at their end and stay there as they
grow, unless the reader has scrolled up in them.
While the widget is on the page it also hides the static copy of the same
view that the kernel displayed for saved notebooks (``codo-static-<scope>``).
"""

from __future__ import annotations

ESM = r"""
const FIGURE_SPACES = "\u2007".repeat(6);
const TICK_MS = 500;

// Running time as the node suffixes and the panel write it: 7s, 1m05s, 12m03s.
function tickText(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
}

function escapeHtml(text) {
  const span = document.createElement("span");
  span.textContent = text;
  return span.innerHTML;
}

// Each click carries a token: a wait that answered it early drops the copy that follows.
let sent = 0;
const pageToken = Math.random().toString(36).slice(2);

function render({ model, el }) {
  const send = (message) => model.send({ ...message, token: `${pageToken}-${++sent}` });
  const scope = model.get("scope");
  // The scope's class carries its theme's colours (--codo-*), for the header's chips too.
  el.classList.add("codo-view", "codo-live-" + scope, scope);
  const head = document.createElement("div");
  head.className = "codo-headbox";
  const wrap = document.createElement("div");
  wrap.className = "codo-wrap";
  const dag = document.createElement("div");
  dag.className = "codo-dag";
  const panel = document.createElement("div");
  panel.className = "codo-inspect";
  panel.style.display = "none";
  const patchStyle = document.createElement("style");
  const pageStyle = document.createElement("style");
  // While this live view is on the page, its static copies step aside.
  pageStyle.textContent =
    `.jp-OutputArea-child:has(.codo-static-${scope}.codo-inline){display:none}` +
    `div.codo-static.codo-static-${scope}.codo-inline{display:none}` +
    `div.codo-static.codo-static-${scope} .codo-static-body{display:none}` +
    `div.codo-static.codo-static-${scope} .codo-static-note{display:block}`;
  wrap.append(dag, panel);
  el.append(pageStyle, patchStyle, head, wrap);

  let skew = 0;  // browser clock minus kernel clock, seconds
  let timer = null;
  const now = () => Date.now() / 1000 - skew;
  const tick = () => {
    const t = model.get("ticks") || {};
    const nodes = t.nodes || {};
    const since = panel.querySelectorAll("[data-codo-since]");
    if (t.run != null) {
      const elapsed = head.querySelector(".codo-elapsed");
      if (elapsed) elapsed.textContent = `${Math.max(0, now() - t.run).toFixed(1)} s`;
    }
    for (const node of dag.querySelectorAll("g.node")) {
      const start = nodes[node.id];
      const title = node.querySelector(":scope > title");
      const suffix = node.querySelector("tspan.s");
      for (const [el, key] of [[title, "codoBase"], [suffix, "codoBase"]]) {
        if (!el) continue;
        if (start == null) {
          if (key in el.dataset) { el.textContent = el.dataset[key]; delete el.dataset[key]; }
          continue;
        }
        if (!(key in el.dataset)) el.dataset[key] = el.textContent;
        const base = el.dataset[key];
        const text = tickText(now() - start);
        el.textContent = el === title ? `${base}\nrunning for ${text}`
          : (base.trim() ? `${base.trim()} ${text}` : text);
      }
    }
    for (const el of since) el.textContent = tickText(now() - Number(el.dataset.codoSince));
    const busy = t.run != null || Object.keys(nodes).length > 0 || since.length > 0;
    if (busy && timer === null) timer = setInterval(tick, TICK_MS);
    if (!busy && timer !== null) { clearInterval(timer); timer = null; }
  };
  const onTicks = () => {
    const t = model.get("ticks") || {};
    if (typeof t.now === "number") skew = Date.now() / 1000 - t.now;
    tick();
  };
  const drawHead = () => { head.innerHTML = model.get("head"); tick(); };
  const applyPatch = () => {
    const p = model.get("patch") || {};
    patchStyle.textContent = p.css || "";
    for (const [id, text] of Object.entries(p.tips || {})) {
      const title = dag.querySelector(`[id="${id}"] > title`);
      if (title) { title.textContent = text; delete title.dataset.codoBase; }
    }
    for (const [id, text] of Object.entries(p.texts || {})) {
      const suffix = dag.querySelector(`[id="${id}"] tspan.s`);
      if (suffix) { suffix.textContent = text || FIGURE_SPACES; delete suffix.dataset.codoBase; }
    }
    tick();
  };
  const drawPicture = () => { dag.innerHTML = model.get("picture"); applyPatch(); mark(); };
  const mark = () => {
    for (const old of dag.querySelectorAll("g.node.codo-selected")) {
      old.classList.remove("codo-selected");
    }
    const id = model.get("selected");
    const node = id ? dag.querySelector(`[id="${id}"]`) : null;
    if (node) node.classList.add("codo-selected");
  };
  const drawDetail = () => {
    const html = model.get("detail");
    // A refresh keeps where the reader was: the panel's scroll, and each output section at
    // its end unless scrolled up in it (long output opens at its tail).
    const top = panel.scrollTop;
    const kept = [...panel.querySelectorAll("pre.codo-tail")].map(
      (pre) => pre.scrollHeight - pre.scrollTop - pre.clientHeight > 4 ? pre.scrollTop : null);
    panel.innerHTML = html;
    panel.style.display = html ? "" : "none";
    panel.querySelectorAll("pre.codo-tail").forEach((pre, i) => {
      pre.scrollTop = kept[i] != null ? kept[i] : pre.scrollHeight;
    });
    panel.scrollTop = top;
    mark();
    tick();
  };

  const onDagClick = (event) => {
    const node = event.target.closest("g.node");
    if (!node || node.classList.contains("lock") || !dag.contains(node)) return;
    if (node.id === model.get("selected") && model.get("detail")) {
      drawDetail();  // its details stay (buttons too) while the kernel refreshes them
      send({ kind: "select", node: node.id });
      return;
    }
    const title = node.querySelector("title");
    panel.style.display = "";
    panel.innerHTML =
      `<div class="codo-inspect-head"><b>${escapeHtml(title ? title.textContent : node.id)
        .replace(/\n/g, "<br>")}</b><span class="codo-grow"></span>` +
      `<button class="codo-btn codo-close" data-codo-action="close">\u00d7</button></div>` +
      `<p class="codo-muted">details follow as soon as the kernel is free\u2026</p>`;
    for (const old of dag.querySelectorAll("g.node.codo-selected")) {
      old.classList.remove("codo-selected");
    }
    node.classList.add("codo-selected");
    send({ kind: "select", node: node.id });
  };
  const onPanelClick = (event) => {
    const button = event.target.closest("[data-codo-action]");
    if (!button || button.disabled) return;
    const kind = button.dataset.codoAction;
    send({ kind, task: button.dataset.codoTask || "" });
    if (kind === "close") {
      panel.innerHTML = "";
      panel.style.display = "none";
      for (const old of dag.querySelectorAll("g.node.codo-selected")) {
        old.classList.remove("codo-selected");
      }
    } else {
      button.disabled = true;
    }
  };
  dag.addEventListener("click", onDagClick);
  panel.addEventListener("click", onPanelClick);
  const listeners = [["change:head", drawHead], ["change:picture", drawPicture],
                     ["change:patch", applyPatch], ["change:detail", drawDetail],
                     ["change:selected", mark], ["change:answer", drawDetail],
                     ["change:ticks", onTicks]];
  for (const [name, listener] of listeners) model.on(name, listener);
  drawHead();
  drawPicture();
  drawDetail();
  tick();
  return () => {
    if (timer !== null) clearInterval(timer);
    for (const [name, listener] of listeners) model.off(name, listener);
    dag.removeEventListener("click", onDagClick);
    panel.removeEventListener("click", onPanelClick);
  };
}

export default { render };
"""

CSS = """
.codo-view { font-family: var(--jp-ui-font-family, sans-serif);
  color: var(--jp-ui-font-color1, inherit); padding: 2px 4px; }
.codo-view .codo-wrap { display: flex; flex-wrap: wrap; gap: 8px; align-items: flex-start; }
.codo-view .codo-dag { flex: 1 1 320px; min-width: 0; overflow: auto; max-height: 75vh; }
.codo-view .codo-dag g.node:not(.lock) { cursor: pointer; }
.codo-view .codo-dag g.node.codo-selected > path { stroke: var(--jp-brand-color1, #1976d2);
  stroke-width: 3px; }
.codo-view .codo-inspect { flex: 0 1 400px; min-width: 240px; max-height: 75vh; overflow: auto;
  font-size: 12px; line-height: 1.45; padding: 6px 8px; border-radius: 4px;
  border: 1px solid var(--jp-border-color2, #ccc); background: var(--jp-layout-color1, #fff); }
.codo-inspect-head { display: flex; align-items: center; gap: 6px; margin-bottom: 4px; }
.codo-grow { flex: 1; }
.codo-chip { border-radius: 3px; padding: 0 5px; }
.codo-muted { color: var(--jp-ui-font-color2, #666); }
.codo-btn { font-size: 11px; padding: 1px 8px; cursor: pointer; border-radius: 3px;
  border: 1px solid var(--jp-border-color1, #999); background: var(--jp-layout-color2, #eee);
  color: var(--jp-ui-font-color1, #000); }
.codo-btn[disabled] { opacity: 0.45; cursor: default; }
.codo-close { border: none; background: none; font-size: 15px; padding: 0 4px; }
.codo-kv th { text-align: left; padding-right: 8px; font-weight: normal;
  color: var(--jp-ui-font-color2, #666); vertical-align: top; white-space: nowrap; }
.codo-kv td, .codo-kv th, .codo-attempts td, .codo-attempts th { padding: 1px 4px; }
.codo-attempts { border-collapse: collapse; font-size: 11px; }
.codo-attempts th { text-align: left; color: var(--jp-ui-font-color2, #666);
  font-weight: normal; }
.codo-sec { margin-top: 6px; font-weight: bold; }
.codo-error { color: var(--jp-error-color1, #c00); }
.codo-pre { font-size: 11px; max-height: 16em; overflow: auto; margin: 2px 0; padding: 4px;
  white-space: pre-wrap; background: var(--jp-layout-color2, #f5f5f5);
  color: var(--jp-ui-font-color1, #000); }
"""
