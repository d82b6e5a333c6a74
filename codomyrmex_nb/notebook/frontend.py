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
While the widget is on the page it also hides the static copy (and its picture)
of the same view that the kernel displayed for saved notebooks (``codo-static-<scope>``).

The side panel (``panel`` true): the view moves into a panel of its own at the
right edge of its notebook (an element inside JupyterLab's or Notebook 7's
``.jp-NotebookPanel``, which narrows the notebook beside it), so it stays in
sight while the notebook scrolls, hides with its notebook when another one is
shown, and takes the width its drawing needs (at most half the notebook). The
cell keeps one line pointing to it, written only once the panel is there, and
the kernel is told (``{"kind": "placed", "where": "side"}``, and ``"left"`` when
it leaves). Where the output is not inside such a notebook panel (another front
end, an output view), the view stays inline and live with one line saying why
(``where: "inline"``).
No scroll box of its own holds the drawing: inline the notebook scrolls, in the
panel the panel does.

When the widget loses its kernel (a restart: ipywidgets marks the view
``jupyter-widgets-disconnected``; a restart or a shutdown from the notebook's
menu: its toolbar's execution indicator says so), the view says so, stops
counting running times, greys the drawing and drops Cancel/Retry: nothing is
"running" any more.
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

const MIN_SIDE = 300;   // px: the side panel is never narrower ...
const MAX_SIDE = 0.5;   // ... nor wider than this share of its notebook
const LOST = "This view lost its kernel (restarted or shut down): what it shows is as of " +
  "then, and nothing runs any more. Run the cells again for a live view.";

// The notebook panel the output is in (JupyterLab and Notebook 7), or why there is none.
function notebookOf(el) {
  const panel = el.closest(".jp-NotebookPanel");
  const notebook = panel && panel.querySelector(":scope > .jp-NotebookPanel-notebook");
  if (panel && notebook) return { panel, notebook };
  return { why: el.closest(".jp-OutputArea") ? "this output is not inside a notebook"
    : "this front end has no notebook panel to put it beside" };
}

function render({ model, el }) {
  const send = (message) => model.send({ ...message, token: `${pageToken}-${++sent}` });
  const scope = model.get("scope");
  // ``el`` stays in the cell; ``box`` (header, drawing, inspector) sits in it or in the side
  // panel. The scope's class carries its theme's colours (--codo-*), for the chips too.
  el.classList.add("codo-host", "codo-live-" + scope);
  const box = document.createElement("div");
  box.classList.add("codo-view", "codo-live-" + scope, scope);
  const where = document.createElement("div");
  where.className = "codo-where codo-muted";
  where.style.display = "none";
  const lost = document.createElement("div");
  lost.className = "codo-lost-note";
  lost.textContent = LOST;
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
  // While this live view is on the page, its static copies (and their pictures) step aside.
  pageStyle.textContent =
    `.jp-OutputArea-child:has(.codo-static-${scope}){display:none}` +
    `div.codo-static.codo-static-${scope}{display:none}`;
  wrap.append(dag, panel);
  box.append(pageStyle, patchStyle, lost, head, wrap);
  el.append(where, box);

  let skew = 0;  // browser clock minus kernel clock, seconds
  let timer = null;
  const now = () => Date.now() / 1000 - skew;
  const tick = () => {
    if (box.classList.contains("codo-lost")) return;
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
    const busy = !box.classList.contains("codo-lost")
      && (t.run != null || Object.keys(nodes).length > 0 || since.length > 0);
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
  const drawPicture = () => {
    dag.innerHTML = model.get("picture");
    applyPatch();
    mark();
    fit();
  };
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

  // -- where the view shows: inline, or in the side panel of its notebook ---------------------
  let side = null;  // {panel, notebook, holder} while in the side panel
  let tries = 0;
  const say = (text) => { where.textContent = text; where.style.display = text ? "" : "none"; };
  const fit = () => {
    if (!side) return;
    const svg = dag.querySelector("svg");
    const need = (svg ? svg.width.baseVal.value : 0) + 28;
    const most = Math.max(MIN_SIDE, side.panel.clientWidth * MAX_SIDE);
    const width = Math.round(Math.min(most, Math.max(MIN_SIDE, need)));
    side.panel.style.setProperty("--codo-side-width", `${width}px`);
    side.panel.style.setProperty("--codo-side-top", `${side.notebook.offsetTop}px`);
  };
  const leaveSide = () => {
    if (!side) return;
    const { panel: nb, holder } = side;
    side = null;
    send({ kind: "placed", where: "left" });
    if (box.parentElement === holder) box.remove();
    if (holder.__codoOwner === release) {
      holder.remove();
      nb.classList.remove("codo-with-side");
      nb.style.removeProperty("--codo-side-width");
    }
  };
  const release = () => {  // another view takes the panel: this cell says so
    leaveSide();
    say("A later cell shows this live DAG in the side panel \u2192");
  };
  const inline = (why) => {
    leaveSide();
    if (box.parentElement !== el) el.append(box);
    say(why ? `No side panel here (${why}): the live view shows inline.` : "");
    if (why) send({ kind: "placed", where: "inline", why });
  };
  const place = () => {
    if (!model.get("panel")) { if (side || box.parentElement !== el) inline(""); return; }
    if (side) return;
    if (!el.isConnected) {  // rendered before the output is on the page: wait a little
      if (++tries < 300) { requestAnimationFrame(place); return; }
      inline("the output never reached the page");
      return;
    }
    watchKernel();
    const found = notebookOf(el);
    if (!found.panel) { inline(found.why); return; }
    const nb = found.panel;
    let holder = nb.querySelector(":scope > .codo-side-panel");
    if (holder && holder.__codoOwner) holder.__codoOwner();  // the latest view takes the panel
    holder = document.createElement("div");
    holder.className = "codo-side-panel";
    nb.append(holder);
    nb.classList.add("codo-with-side");
    holder.__codoOwner = release;
    side = { panel: nb, notebook: found.notebook, holder };
    holder.append(box);
    fit();
    say("The live DAG is in the side panel \u2192");
    send({ kind: "placed", where: "side" });
  };
  // -- a view that lost its kernel says so --------------------------------------------------
  // ipywidgets marks a view whose comm died; a restart or shutdown from the notebook's menu
  // shows only in the notebook's own kernel status (its toolbar's execution indicator), so
  // watch that too.
  let kernelGone = false;
  let kernelWatch = null;
  const watchKernel = () => {
    const nb = el.closest(".jp-NotebookPanel");
    const status = nb && nb.querySelector(".jp-Notebook-ExecutionIndicator");
    if (!status || kernelWatch) return;
    kernelWatch = new MutationObserver(() => {
      // "unknown": no kernel any more (shut down, or another one chosen); a lost connection
      // shows as "connecting" or "disconnected" instead, and comes back
      if (["restarting", "autorestarting", "dead", "terminating", "unknown"]
          .includes(status.dataset.status)) {
        kernelGone = true;
        onLive();
      }
    });
    kernelWatch.observe(status, { attributes: true, attributeFilter: ["data-status"] });
  };
  const onLive = () => {
    const gone = kernelGone || el.classList.contains("jupyter-widgets-disconnected");
    if (gone === box.classList.contains("codo-lost")) return;
    box.classList.toggle("codo-lost", gone);
    if (gone && timer !== null) { clearInterval(timer); timer = null; }
    if (gone) {
      for (const node of box.querySelectorAll("[data-codo-base]")) {
        node.textContent = node.dataset.codoBase;
      }
    }
  };
  const watcher = new MutationObserver(onLive);
  watcher.observe(el, { attributes: true, attributeFilter: ["class"] });

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
    // The static copy in this widget's cell follows the run a Cancel or Retry starts.
    const area = el.closest(".jp-OutputArea");
    const copy = area && area.querySelector(`.codo-static-${scope}[data-codo-copy]`);
    send({ kind, task: button.dataset.codoTask || "", copy: copy ? copy.dataset.codoCopy : "" });
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
  // Once its kernel is gone (restarted or shut down) the view keeps what it showed then: a
  // frame the dying kernel still sends (its engine stopping) redraws nothing.
  const unlessGone = (draw) => (...args) => { if (!kernelGone) draw(...args); };
  const listeners = [["change:head", drawHead], ["change:picture", drawPicture],
                     ["change:patch", applyPatch], ["change:detail", drawDetail],
                     ["change:selected", mark], ["change:answer", drawDetail],
                     ["change:ticks", onTicks], ["change:panel", place]]
    .map(([name, draw]) => [name, unlessGone(draw)]);
  for (const [name, listener] of listeners) model.on(name, listener);
  drawHead();
  drawPicture();
  drawDetail();
  tick();
  place();
  let waits = 0;  // inline: watch the kernel once the output is on the page
  const watchWhenShown = () => {
    if (el.isConnected) watchKernel();
    else if (++waits < 300) requestAnimationFrame(watchWhenShown);
  };
  watchWhenShown();
  onLive();
  return () => {
    watcher.disconnect();
    if (kernelWatch) kernelWatch.disconnect();
    leaveSide();
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
.codo-view .codo-dag { flex: 1 1 320px; min-width: 0; overflow-x: auto; overflow-y: hidden; }
.codo-where { font-size: 12px; padding: 2px 4px; }
.codo-lost-note { display: none; }
.codo-view.codo-lost .codo-lost-note { display: block; font-size: 12px; padding: 4px 6px;
  margin-bottom: 4px; border-radius: 3px; color: var(--jp-warn-color0, #8a5a00);
  background: var(--jp-warn-color3, #fff3cd); }
.codo-view.codo-lost .codo-dag { filter: grayscale(1); opacity: 0.55; }
.codo-view.codo-lost [data-codo-action="cancel"],
.codo-view.codo-lost [data-codo-action="retry"] { display: none; }
.jp-NotebookPanel.codo-with-side > .jp-NotebookPanel-notebook {
  width: calc(100% - var(--codo-side-width, 300px)) !important; }
.codo-side-panel { position: absolute; right: 0; top: var(--codo-side-top, 0px); bottom: 0;
  width: var(--codo-side-width, 300px); box-sizing: border-box; overflow: auto; z-index: 3;
  border-left: 1px solid var(--jp-border-color2, #ccc); background: var(--jp-layout-color1, #fff); }
.codo-side-panel .codo-view .codo-dag { flex-basis: 100%; overflow: visible; }
.codo-side-panel .codo-view .codo-dag svg { max-width: 100%; height: auto; }
.codo-side-panel .codo-view .codo-inspect { flex: 1 1 100%; max-height: none; }
.codo-view .codo-dag g.node:not(.lock) { cursor: pointer; }
.codo-view .codo-dag g.node.codo-selected > path { stroke: var(--jp-brand-color1, #1976d2);
  stroke-width: 3px; }
.codo-view .codo-inspect { flex: 0 1 400px; min-width: 240px; max-height: 75vh; overflow: auto;
  font-size: 12px; line-height: 1.45; padding: 6px 8px; border-radius: 4px;
  border: 1px solid var(--jp-border-color2, #ccc); background: var(--jp-layout-color1, #fff); }
.codo-inspect-head { display: flex; align-items: center; gap: 6px; margin-bottom: 4px; }
.codo-inspect-head .codo-title { min-width: 0; overflow-wrap: anywhere; }
.codo-inspect-head .codo-btn { flex: none; }
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
