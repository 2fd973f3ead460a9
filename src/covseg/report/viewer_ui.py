"""The slice viewer's markup, style and script: vanilla JS, no network, one file.

The script reads the JSON blob from covseg.report.viewer, draws the current slice's window
image and its label overlay in a <canvas>, and the per-slice involvement plot as inline SVG.
It sets data-ready and data-slice on #viewer so a test (or a person) can tell what is shown.
"""
from __future__ import annotations

import html

STYLE = """[hidden]{display:none!important}#viewer{display:grid;grid-template-columns:minmax(0,640px) minmax(280px,1fr);gap:20px;
align-items:start;margin:1em 0}#viewer canvas{width:100%;height:auto;background:#000;display:block;
border-radius:4px;cursor:ns-resize}.controls{display:flex;flex-direction:column;gap:12px;font-size:15px}
.controls label{display:flex;align-items:center;gap:8px}.controls input[type=range]{flex:1}
#v-index{font-size:20px;font-weight:bold}.presets button{font-size:15px;padding:4px 10px;margin-right:6px}
.presets button.on{background:#234;color:#fff}#v-plot{width:100%;height:auto;cursor:pointer;
border:1px solid #ddd;border-radius:4px;background:#fff}@media(max-width:900px){#viewer{grid-template-columns:1fr}}"""


def markup(hu: bool, presets: dict[str, str], slices: int) -> str:
    """The viewer's controls; presets are disabled, with a note, when the scan is not in HU."""
    if hu:
        buttons = "".join(f'<button type="button" data-preset="{html.escape(n)}">{html.escape(n)} '
                          f'({html.escape(p)})</button>' for n, p in presets.items())
        note = '<span class="note">keys: L lung, M mediastinal, O overlay</span>'
    else:
        buttons = ('<button type="button" disabled>lung (W1500/L-600)</button>'
                   '<button type="button" disabled>mediastinal (W350/L50)</button>')
        note = ('<span class="note">Window presets need CT in Hounsfield units; this image is '
                'shown with its own grey levels.</span>')
    single = " hidden" if slices == 1 else ""
    return f"""<section id="viewer" data-ready="0">
<canvas id="v-canvas" width="640" height="640" aria-label="axial slice with overlay"></canvas>
<div class="controls">
<div id="v-index" aria-live="polite"></div>
<label{single}>slice <input id="v-slice" type="range" min="0" max="{slices - 1}" step="1"></label>
<div class="note"{single}>Arrow keys, PageUp/PageDown (10 slices) or the mouse wheel over the
image scroll; slice 1 is at the feet.</div>
<label><input id="v-overlay" type="checkbox" checked> overlay (red abnormal, green normal lung)</label>
<label>opacity <input id="v-opacity" type="range" min="0" max="100" value="40"></label>
<div class="presets">window: {buttons}<br>{note}</div>
<svg id="v-plot" viewBox="0 0 600 170" role="img" aria-label="involvement by slice; click to go there"{single}></svg>
</div></section>"""


SCRIPT = r"""(function () {
"use strict";
var D = JSON.parse(document.getElementById("covseg-viewer-data").textContent);
var root = document.getElementById("viewer"), canvas = document.getElementById("v-canvas");
var ctx = canvas.getContext("2d"), slider = document.getElementById("v-slice");
var overlay = document.getElementById("v-overlay"), opacity = document.getElementById("v-opacity");
var index = document.getElementById("v-index"), plot = document.getElementById("v-plot");
var buttons = root.querySelectorAll("button[data-preset]");
var names = Object.keys(D.images), state = {z: D.start, preset: names[0]}, cache = {};
var side = 640, s = side / Math.max(D.width, D.height * D.aspect);
canvas.width = Math.round(D.width * s); canvas.height = Math.round(D.height * D.aspect * s);

function image(kind, z) {
  var key = kind + ":" + z;
  if (!cache[key]) {
    var im = new Image(), data = kind === "labels" ? D.labels[z] : D.images[kind][z];
    im.onload = function () { if (z === state.z) { draw(); } };
    im.src = (kind === "labels" ? "data:image/png;base64," : "data:image/webp;base64,") + data;
    cache[key] = im;
  }
  return cache[key];
}
function loaded(im) { return im.complete && im.naturalWidth > 0; }
function draw() {
  var grey = image(state.preset, state.z), mask = image("labels", state.z);
  if (!loaded(grey) || (overlay.checked && !loaded(mask))) { return; }
  ctx.imageSmoothingEnabled = true; ctx.globalAlpha = 1;
  ctx.drawImage(grey, 0, 0, canvas.width, canvas.height);
  if (overlay.checked) {
    ctx.globalAlpha = opacity.value / 100;
    ctx.drawImage(mask, 0, 0, canvas.width, canvas.height);
    ctx.globalAlpha = 1;
  }
  root.dataset.drawn = String(state.z); root.dataset.ready = "1";
}
function go(z) {
  z = Math.max(0, Math.min(D.slices - 1, Math.round(z)));
  state.z = z; slider.value = z; root.dataset.slice = String(z); root.dataset.drawn = "";
  index.textContent = "slice " + (z + 1) + " of " + D.slices + " \u00b7 " +
    D.per_slice[z].toFixed(1) + " % involved";
  for (var k = -3; k <= 3; k++) {  // decode the neighbours before they are asked for
    if (z + k >= 0 && z + k < D.slices) { image(state.preset, z + k); image("labels", z + k); }
  }
  mark(); draw();
}
function preset(name) {
  if (!D.images[name]) { return; }
  state.preset = name; root.dataset.preset = name;
  buttons.forEach(function (b) { b.classList.toggle("on", b.dataset.preset === name); });
  go(state.z);
}

var NS = "http://www.w3.org/2000/svg", L = 44, R = 590, T = 10, B = 140, marker;
var ymax = Math.max(5, Math.max.apply(null, D.per_slice.concat([0])) * 1.15);
function el(tag, attrs, text) {
  var e = document.createElementNS(NS, tag);
  for (var a in attrs) { e.setAttribute(a, attrs[a]); }
  if (text !== undefined) { e.textContent = text; }
  plot.appendChild(e); return e;
}
function x(z) { return L + (D.slices > 1 ? z / (D.slices - 1) : 0.5) * (R - L); }
function y(v) { return B - v / ymax * (B - T); }
function drawPlot() {
  var d = "M" + x(0) + "," + B;
  D.per_slice.forEach(function (v, z) { d += "L" + x(z).toFixed(1) + "," + y(v).toFixed(1); });
  d += "L" + x(D.slices - 1) + "," + B + "Z";
  el("rect", {x: L, y: T, width: R - L, height: B - T, fill: "#fafafa", stroke: "#ccc"});
  [0, ymax / 2, ymax].forEach(function (v) {
    el("line", {x1: L, x2: R, y1: y(v), y2: y(v), stroke: "#e4e4e4"});
    el("text", {x: L - 6, y: y(v) + 4, "text-anchor": "end", "font-size": 12, fill: "#555"},
       v.toFixed(v < 10 ? 1 : 0));
  });
  el("path", {d: d, fill: "rgba(230,30,30,0.45)", stroke: "#8b0000", "stroke-width": 1.2});
  el("text", {x: L, y: 160, "font-size": 13, fill: "#333"}, "feet");
  el("text", {x: R, y: 160, "font-size": 13, fill: "#333", "text-anchor": "end"}, "head");
  el("text", {x: (L + R) / 2, y: 160, "font-size": 13, fill: "#333", "text-anchor": "middle"},
     "% of lung involved, by slice (click to go there)");
  marker = el("line", {y1: T, y2: B, stroke: "#1565c0", "stroke-width": 2});
}
function mark() { if (marker) { marker.setAttribute("x1", x(state.z)); marker.setAttribute("x2", x(state.z)); } }

slider.addEventListener("input", function () { go(+slider.value); });
overlay.addEventListener("change", draw);
opacity.addEventListener("input", draw);
buttons.forEach(function (b) { b.addEventListener("click", function () { preset(b.dataset.preset); }); });
canvas.addEventListener("wheel", function (e) {
  e.preventDefault(); go(state.z + (e.deltaY < 0 ? 1 : -1));
}, {passive: false});
plot.addEventListener("click", function (e) {
  var box = plot.getBoundingClientRect(), vx = (e.clientX - box.left) / box.width * 600;
  go((vx - L) / (R - L) * (D.slices - 1));
});
document.addEventListener("keydown", function (e) {
  if (e.target.tagName === "INPUT" && e.target.type === "range") { return; }  // it scrolls itself
  var step = {ArrowUp: 1, ArrowRight: 1, ArrowDown: -1, ArrowLeft: -1, PageUp: 10, PageDown: -10}[e.key];
  if (step) { e.preventDefault(); go(state.z + step); return; }
  if (e.key === "o" || e.key === "O") { overlay.checked = !overlay.checked; draw(); }
  if (e.key === "l" || e.key === "L") { preset("lung"); }
  if (e.key === "m" || e.key === "M") { preset("mediastinal"); }
});
drawPlot(); preset(state.preset);
})();"""
