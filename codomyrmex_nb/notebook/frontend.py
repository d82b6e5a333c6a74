"""The live view's front end: a small anywidget ES module and its CSS.

The kernel decides everything; the browser only draws what it is sent:

- ``head``: the progress header (HTML);
- ``picture``: the whole drawing (HTML: a ``<style>`` and the SVG), sent after a layout;
- ``patch``: ``{"css", "tips", "texts"}`` since that picture: a ``<style>`` block that
  recolours changed nodes in place, and their new hover texts and suffixes by id;
- ``detail``: the inspector panel for the clicked node ('' when closed).

A click on a node sends ``{"kind": "select", "node": id}``; the panel's buttons
send ``cancel``, ``retry`` or ``close``. Until the kernel answers (it reads
messages between cells) the panel shows the node's hover text at once.
While the widget is on the page it also hides the static copy of the same
view that the kernel displayed for saved notebooks (``codo-static-<scope>``).
"""

from __future__ import annotations

ESM = r"""
const FIGURE_SPACES = "\u2007".repeat(6);

function escapeHtml(text) {
  const span = document.createElement("span");
  span.textContent = text;
  return span.innerHTML;
}

function render({ model, el }) {
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

  const drawHead = () => { head.innerHTML = model.get("head"); };
  const applyPatch = () => {
    const p = model.get("patch") || {};
    patchStyle.textContent = p.css || "";
    for (const [id, text] of Object.entries(p.tips || {})) {
      const title = dag.querySelector(`[id="${id}"] > title`);
      if (title) title.textContent = text;
    }
    for (const [id, text] of Object.entries(p.texts || {})) {
      const suffix = dag.querySelector(`[id="${id}"] tspan.s`);
      if (suffix) suffix.textContent = text || FIGURE_SPACES;
    }
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
    panel.innerHTML = html;
    panel.style.display = html ? "" : "none";
    mark();
  };

  const onDagClick = (event) => {
    const node = event.target.closest("g.node");
    if (!node || node.classList.contains("lock") || !dag.contains(node)) return;
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
    model.send({ kind: "select", node: node.id });
  };
  const onPanelClick = (event) => {
    const button = event.target.closest("[data-codo-action]");
    if (!button || button.disabled) return;
    const kind = button.dataset.codoAction;
    model.send({ kind, task: button.dataset.codoTask || "" });
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
                     ["change:selected", mark]];
  for (const [name, listener] of listeners) model.on(name, listener);
  drawHead();
  drawPicture();
  drawDetail();
  return () => {
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
