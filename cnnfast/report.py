"""One self-contained HTML page about a trained model: the analyzer's table and a block
diagram, a convolution playground, filters (over the epochs when a training log is given),
feature maps, saliency overlays, the confusion matrix with its misclassified images, the
training curves and per-layer histograms.

Everything is inlined: the pictures travel as base64 pixel arrays that a little plain
JavaScript paints on canvases, the charts are SVG; no external URL, no server.

>>> from cnnfast.report import write_report
>>> write_report(model, "report.html", x_test, y_test, images=raw_test_images, log="run.json")
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cnnfast import callbacks as callbacks_module
from cnnfast import inside

__all__ = ["HTMLReport", "write_report"]

# Bounds that keep the page small whatever the model.
MAX_FMAP_LAYERS, MAX_FMAP_CHANNELS = 8, 16
MAX_GRID_FILTERS = 64
MAX_CONFUSION_CLASSES = 100
MAX_TOP_POOL, TOP_K = 1000, 4


def _pic(a: np.ndarray) -> dict[str, Any]:
    """A picture for the page: (H, W) gray or (H, W, 3) RGB, floats in [0, 1] or uint8."""
    a = np.asarray(a)
    if a.dtype != np.uint8:
        a = np.round(np.clip(np.nan_to_num(a.astype(np.float64)), 0, 1) * 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    h, w = a.shape[:2]
    return {"w": int(w), "h": int(h), "c": 1 if a.ndim == 2 else int(a.shape[-1]),
            "px": base64.b64encode(np.ascontiguousarray(a).tobytes()).decode("ascii")}


def _display_images(images: np.ndarray | None, x: np.ndarray) -> np.ndarray:
    """uint8 pictures (N, H, W) or (N, H, W, 3) of the inputs."""
    if images is None:
        flat = x.reshape(len(x), -1).astype(np.float64)
        lo, hi = flat.min(axis=1), flat.max(axis=1)
        scaled = (flat - lo[:, None]) / np.where(hi > lo, hi - lo, 1)[:, None]
        images = np.round(scaled * 255).reshape(x.shape).astype(np.uint8)
    images = np.asarray(images)
    if images.dtype != np.uint8:
        images = np.clip(np.round(images), 0, 255).astype(np.uint8)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim == 4 and images.shape[-1] != 3:
        images = images.mean(axis=-1).astype(np.uint8)
    return images


def _gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else np.round(img @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _class_label(class_names: Sequence[str] | None, i: int) -> str:
    return str(class_names[i]) if class_names and i < len(class_names) else str(i)


# -- sections ---------------------------------------------------------------------------------

def _architecture(model: Any) -> str:
    from cnnfast.analyzer import analyze

    rep = analyze(model)
    head = "".join(f"<th>{_esc(h)}</th>" for h in rep._HEADER)
    rows = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>"
                   for row in rep._cells())
    totals = "".join(f"<li>{_esc(line.strip())}</li>" for line in rep._total_lines()[:7])
    svg = _block_diagram(model, rep)
    return (f'<div class="row"><div class="scroll"><table class="analyzer"><tr>{head}</tr>{rows}'
            f'</table><ul class="totals">{totals}</ul></div>{svg}</div>')


def _block_diagram(model: Any, rep: Any) -> str:
    """One box per layer call, top to bottom in dependency order, with its output shape. Each
    call's inputs are arrows: straight down from the box above, or, for a skip connection or a
    join of a graph, an arc on the right from the box it reads."""
    if getattr(model, "_nodes", None):  # a functional graph: its calls and what each reads
        nodes = model._nodes
        boxes = [(n.layer.name, type(n.layer).__name__, tuple(n.output.sample_shape))
                 for n in nodes]
        boxes[0] = ("input", "Input", tuple(model.input_shape_))
        reads = [list(r) for r in model._reads]
    else:
        boxes = [("input", "Input", tuple(model.input_shape_))]
        boxes += [(r.name, r.type, tuple(r.output_shape)) for r in rep.layers]
        reads = [[]] + [[i] for i in range(len(boxes) - 1)]
    palette = {"Conv2D": "#4c78a8", "Dense": "#f58518", "MaxPooling2D": "#54a24b",
               "AveragePooling2D": "#54a24b", "Flatten": "#b279a2", "Dropout": "#9d9d9d",
               "Add": "#e45756", "Concatenate": "#e45756"}
    parts, arcs = [], 0
    for i, (name, kind, shape) in enumerate(boxes):
        y = 8 + i * 46
        color = palette.get(kind, "#72b7b2")
        parts.append(f'<rect x="10" y="{y}" width="300" height="32" rx="6" fill="{color}" '
                     f'class="block"/><text x="20" y="{y + 21}" fill="#fff">{_esc(name)} '
                     f'({_esc(kind)})</text><text x="300" y="{y + 21}" fill="#fff" '
                     f'text-anchor="end">{_esc("x".join(map(str, shape)))}</text>')
        for r in reads[i]:
            if r == i - 1:
                parts.append(f'<path d="M160 {y - 14} v14" stroke="#555" fill="none" '
                             f'marker-end="url(#arr)"/>')
            else:
                arcs += 1
                x = 310 + 12 * arcs
                y0 = 8 + r * 46 + 16
                parts.append(f'<path class="skip" d="M310 {y0} H{x} V{y + 16} H312" '
                             f'stroke="#555" fill="none" marker-end="url(#arr)"/>')
    return (f'<svg class="diagram" width="{330 + 12 * arcs}" height="{len(boxes) * 46 + 4}" '
            f'role="img" aria-label="block diagram"><defs><marker id="arr" viewBox="0 0 6 6" '
            f'refX="3" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse">'
            f'<path d="M0 0 L3 6 L6 0" fill="#555"/></marker></defs>{"".join(parts)}</svg>')


def _playground(sample: np.ndarray, pics: dict[str, Any]) -> str:
    pics["play"] = _pic(_gray(sample))
    options = "".join(f'<option value="{_esc(k)}">{_esc(k.replace("_", " "))}</option>'
                      for k in inside.KERNELS)
    cells = "".join(f'<input class="k" type="number" step="any" value="0" aria-label="k{i}">'
                    for i in range(9))
    return (f'<p>Edit the 3x3 kernel (or pick a lecture filter): it slides over the image as a '
            f'cross-correlation with zero padding, as a Conv2D layer does. The output is shown '
            f'with 0 as mid-gray.</p><div class="row"><figure><canvas id="play-in" '
            f'class="pic big" data-pic="play"></canvas><figcaption>input</figcaption></figure>'
            f'<div><select id="play-kernel">{options}</select><div class="kgrid">{cells}</div>'
            f'</div><figure><canvas id="play-out" class="pic big" width="{pics["play"]["w"]}" '
            f'height="{pics["play"]["h"]}"></canvas><figcaption>output</figcaption></figure>'
            f'</div>')


def _first_layer_tiles(kernel: np.ndarray) -> list[np.ndarray]:
    """One picture per filter of a (KH, KW, C, K) kernel: colour for C == 3, else the input
    channels side by side, each filter scaled by its own range."""
    w = np.asarray(kernel, np.float64)
    tiles = []
    for k in range(w.shape[-1]):
        t = inside._unit(w[..., k])
        if t.shape[-1] == 3:
            tiles.append(t)
        else:  # (KH, KW, C) -> (KH, C * (KW + 1) - 1) with a white gap
            cols = [np.pad(t[..., c], ((0, 0), (0, 1)), constant_values=1.0)
                    for c in range(t.shape[-1])]
            tiles.append(np.concatenate(cols, axis=1)[:, :-1])
    return tiles


def _filters(model: Any, log: dict[str, Any] | None, pics: dict[str, Any],
             data: dict[str, Any]) -> str:
    convs = inside.conv_layers(model)
    if not convs:
        return "<p>The model has no Conv2D layer.</p>"
    first = convs[0]
    tiles = _first_layer_tiles(first.weights_["kernel"])
    for k, t in enumerate(tiles):
        pics[f"tile{k}"] = _pic(t)
    snaps = [s for s in (log or {}).get("filters", []) if s.get("layer") == first.name]
    slider = ""
    if snaps:
        data["filter_epochs"] = []
        for s in snaps:
            kernel = np.asarray(s["kernel"], np.float32)
            data["filter_epochs"].append({"epoch": s["epoch"], "tiles": [
                _pic(t) for t in _first_layer_tiles(kernel)]})
        slider = (f'<label>epoch <input id="filter-epoch" type="range" min="0" '
                  f'max="{len(snaps) - 1}" value="{len(snaps) - 1}"> <span id="filter-epoch-label">'
                  f'{snaps[-1]["epoch"]}</span></label> (epoch 0: the initial weights; the '
                  f'training log keeps the first {len(snaps[-1]["kernel"][0][0][0])} filters)')
    tile_html = "".join(f'<canvas class="pic filter-tile" data-pic="tile{k}" title="filter {k}">'
                        f'</canvas>' for k in range(len(tiles)))
    grids = []
    for layer in convs[1:]:
        if layer.filters > MAX_GRID_FILTERS or layer.weights_["kernel"].shape[2] > MAX_GRID_FILTERS:
            grids.append(f"<p>{_esc(layer.name)}: {layer.filters} filters, too many to show.</p>")
            continue
        pics[f"grid_{layer.name}"] = _pic(inside.filter_grid(layer))
        grids.append(f'<figure><canvas class="pic grid" data-pic="grid_{_esc(layer.name)}">'
                     f'</canvas><figcaption>{_esc(layer.name)}: one row per filter, one column '
                     f'per input channel</figcaption></figure>')
    kh, kw, c, k = first.weights_["kernel"].shape
    return (f'<h3>{_esc(first.name)}: {k} filters of {kh}x{kw}x{c}</h3>{slider}'
            f'<div class="tiles" id="filter-tiles">{tile_html}</div>'
            f'<h3>Deeper layers</h3><div class="row">{"".join(grids) or "<p>none</p>"}</div>')


def _feature_maps(model: Any, x0: np.ndarray, image: np.ndarray, pics: dict[str, Any]) -> str:
    shown = [(l, o) for l, _, o in model.shapes()
             if isinstance(o, tuple) and len(o) == 3 and l is not model.layers[-1]
             and o[0] * o[1] > 1
             and type(l).__name__ not in ("InputLayer", "Dropout")][:MAX_FMAP_LAYERS]
    if not shown:
        return "<p>No layer with (H, W, C) outputs.</p>"
    outs = inside.layer_outputs(model, x0[None], [l for l, _ in shown])
    pics["fm_input"] = _pic(image)
    rows = [('<div class="row"><figure><canvas class="pic" data-pic="fm_input"></canvas>'
             '<figcaption>input</figcaption></figure></div>')]
    for (layer, shape), out in zip(shown, outs):
        maps = []
        for ch in range(min(shape[-1], MAX_FMAP_CHANNELS)):
            key = f"fm_{layer.name}_{ch}"
            pics[key] = _pic(inside._unit(out[0, :, :, ch]))
            maps.append(f'<canvas class="pic fmap" data-pic="{_esc(key)}" title="channel {ch}">'
                        f'</canvas>')
        more = f" (first {MAX_FMAP_CHANNELS} of {shape[-1]})" if shape[-1] > MAX_FMAP_CHANNELS else ""
        rows.append(f'<div><h4>{_esc(layer.name)} ({_esc(type(layer).__name__)}) '
                    f'{"x".join(map(str, shape))}{more}</h4><div class="tiles">{"".join(maps)}'
                    f'</div></div>')
    return ("<p>Each map scaled by its own range (dark: low, light: high).</p>"
            + "".join(rows))


def _top_images(model: Any, x: np.ndarray, images: np.ndarray, pics: dict[str, Any]) -> str:
    """For each channel of the Grad-CAM layer, the test images that excite it most."""
    if not inside.conv_layers(model):
        return ""
    layer = inside._last_conv(model)
    pool = min(len(x), MAX_TOP_POOL)
    rows = []
    for ch in range(min(layer.filters, MAX_FMAP_CHANNELS)):
        idx, scores = inside.top_activating(model, x[:pool], layer, ch, k=min(TOP_K, pool))
        cells = []
        for rank, (i, sc) in enumerate(zip(idx, scores)):
            key = f"top_{ch}_{rank}"
            pics[key] = _pic(images[i])
            cells.append(f'<canvas class="pic top" data-pic="{key}" title="test image {i}: '
                         f'{sc:.3g}"></canvas>')
        rows.append(f'<div class="topch"><span>ch {ch}</span>{"".join(cells)}</div>')
    return (f"<h3>The test images that most activate each channel of {_esc(layer.name)}</h3>"
            f"<p>Of the first {pool:,} test images, by the channel's largest value.</p>"
            f'<div class="row">{"".join(rows)}</div>')


def _saliency(model: Any, x: np.ndarray, images: np.ndarray, probs: np.ndarray,
              y: np.ndarray, class_names: Sequence[str] | None, count: int,
              pics: dict[str, Any]) -> str:
    has_conv = bool(inside.conv_layers(model))
    spatial = x.ndim == 4
    if not spatial:
        return "<p>Saliency maps need image inputs.</p>"
    rows = []
    for i in range(min(count, len(x))):
        c = int(probs[i].argmax())
        maps = {"saliency": inside.saliency(model, x[i], c),
                "SmoothGrad": inside.smoothgrad(model, x[i], c, samples=16, seed=i)}
        if has_conv:
            maps["Grad-CAM"] = inside.grad_cam(model, x[i], c)
        patch = max(2, min(x.shape[1], x.shape[2]) // 7)
        maps["occlusion"] = np.maximum(inside.occlusion(model, x[i], c, patch=patch,
                                                        stride=max(1, patch // 2)), 0)
        pics[f"sal{i}_in"] = _pic(images[i])
        figs = [(f'<figure><canvas class="pic" data-pic="sal{i}_in"></canvas><figcaption>true '
                 f'{_esc(_class_label(class_names, int(y[i])))}, predicted '
                 f'{_esc(_class_label(class_names, c))} ({probs[i, c]:.2f})</figcaption>'
                 f'</figure>')]
        for name, m in maps.items():
            key = f"sal{i}_{name}"
            pics[key] = _pic(inside.overlay(images[i], m, alpha=0.6))
            figs.append(f'<figure><canvas class="pic overlay" data-pic="{_esc(key)}"></canvas>'
                        f'<figcaption>{_esc(name)}</figcaption></figure>')
        rows.append(f'<div class="row">{"".join(figs)}</div>')
    return ("<p>Where the predicted class's score is sensitive (saliency: |d logit / d input|; "
            "SmoothGrad: averaged over 16 noisy copies; Grad-CAM: the last conv layer's maps with "
            "more than one position "
            "weighted by their mean gradient; occlusion: how much the probability drops when a "
            "square is hidden). Yellow: most.</p>" + "".join(rows))


def _confusion(probs: np.ndarray, y: np.ndarray, images: np.ndarray,
               class_names: Sequence[str] | None, gallery: int, pics: dict[str, Any]) -> str:
    k = probs.shape[1]
    if k > MAX_CONFUSION_CLASSES:
        return f"<p>{k} classes: too many for a confusion matrix here.</p>"
    pred = probs.argmax(axis=1)
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (y, pred), 1)
    peak = max(int(cm.max()), 1)
    head = "".join(f"<th>{_esc(_class_label(class_names, j))}</th>" for j in range(k))
    body = []
    for t in range(k):
        cells = []
        for p in range(k):
            n = int(cm[t, p])
            # Diagonal cells in blue, errors in red, by the count's share of the largest cell.
            shade = 0.08 + 0.92 * (n / peak) ** 0.5 if n else 0.0
            rgb = "33,102,172" if t == p else "202,0,32"
            cells.append(f'<td class="cm-cell" data-t="{t}" data-p="{p}" '
                         f'style="background:rgba({rgb},{shade:.3f})" title="true '
                         f'{_esc(_class_label(class_names, t))}, predicted '
                         f'{_esc(_class_label(class_names, p))}: {n}">{n}</td>')
        body.append(f"<tr><th>{_esc(_class_label(class_names, t))}</th>{''.join(cells)}</tr>")
    wrong = np.flatnonzero(pred != y)
    # The gallery: the most confident mistakes first, at most `gallery` of them.
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:gallery]
    items = []
    for i in wrong:
        top = np.argsort(-probs[i], kind="stable")[:3]
        key = f"mis{i}"
        pics[key] = _pic(images[i])
        text = "<br>".join(f"{_esc(_class_label(class_names, int(j)))}: {probs[i, j]:.2f}"
                           for j in top)
        items.append(f'<div class="mis" data-t="{int(y[i])}" data-p="{int(pred[i])}"><canvas '
                     f'class="pic" data-pic="{key}"></canvas><div class="top3">true '
                     f'{_esc(_class_label(class_names, int(y[i])))}<br>{text}</div></div>')
    accuracy = float(np.mean(pred == y)) if len(y) else 0.0
    return (f'<p>{len(y):,} test images, accuracy {100 * accuracy:.2f}%. Rows: true class; '
            f'columns: predicted. Click a cell to see its misclassified images '
            f'(<a href="#confusion" id="cm-all">show all</a>).</p>'
            f'<div class="row"><table class="cm"><tr><th></th>{head}</tr>{"".join(body)}</table>'
            f'<div><p id="gallery-label">{len(items)} most confident mistakes</p>'
            f'<div class="gallery" id="gallery">{"".join(items)}</div></div></div>')


def _curve_svg(title: str, series: dict[str, list[float]], epochs: list[int]) -> str:
    series = {k: v for k, v in series.items() if v and all(np.isfinite(v))}
    if not series:
        return ""
    w, h, pad = 360, 200, 46
    values = [v for s in series.values() for v in s]
    lo, hi = min(values), max(values)
    hi = hi if hi > lo else lo + 1
    e0, e1 = min(epochs), max(epochs)
    span = max(e1 - e0, 1)

    def px(e: float, v: float) -> str:
        return f"{pad + (e - e0) / span * (w - pad - 10):.1f},{h - pad - (v - lo) / (hi - lo) * (h - pad - 10):.1f}"

    colors = ["#4c78a8", "#f58518", "#54a24b", "#e45756"]
    lines, legend = [], []
    for i, (name, vals) in enumerate(series.items()):
        pts = " ".join(px(e, v) for e, v in zip(epochs, vals))
        lines.append(f'<polyline fill="none" stroke="{colors[i % 4]}" stroke-width="2" '
                     f'points="{pts}"/>' + "".join(
                         f'<circle cx="{p.split(",")[0]}" cy="{p.split(",")[1]}" r="2.5" '
                         f'fill="{colors[i % 4]}"/>' for p in pts.split()))
        legend.append(f'<text x="{pad + 8 + 90 * i}" y="14" fill="{colors[i % 4]}">'
                      f'{_esc(name)}</text>')
    axes = (f'<line x1="{pad}" y1="{h - pad}" x2="{w - 10}" y2="{h - pad}" stroke="#999"/>'
            f'<line x1="{pad}" y1="10" x2="{pad}" y2="{h - pad}" stroke="#999"/>'
            f'<text x="{pad - 4}" y="{h - pad}" text-anchor="end">{lo:.3g}</text>'
            f'<text x="{pad - 4}" y="18" text-anchor="end">{hi:.3g}</text>'
            f'<text x="{pad}" y="{h - pad + 14}">{e0}</text>'
            f'<text x="{w - 10}" y="{h - pad + 14}" text-anchor="end">epoch {e1}</text>')
    return (f'<figure><svg class="chart" width="{w}" height="{h}" role="img" '
            f'aria-label="{_esc(title)}">{axes}{"".join(lines)}{"".join(legend)}</svg>'
            f'<figcaption>{_esc(title)}</figcaption></figure>')


def _curves(log: dict[str, Any] | None) -> str:
    if not log or not log.get("epochs"):
        return ("<p>No training log. Train with <code>cnnfast train ... --log run.json</code> "
                "(or the <code>cnnfast.inside.TrainingDiagnostics</code> callback) and pass "
                "<code>--log run.json</code>.</p>")
    epochs = [e["epoch"] for e in log["epochs"]]
    keys = sorted({k for e in log["epochs"] for k in e["logs"]})
    loss = {k: [e["logs"].get(k, float("nan")) for e in log["epochs"]] for k in keys
            if "loss" in k}
    acc = {k: [e["logs"].get(k, float("nan")) for e in log["epochs"]] for k in keys
           if "acc" in k}
    return f'<div class="row">{_curve_svg("loss", loss, epochs)}{_curve_svg("accuracy", acc, epochs)}</div>'


def _histograms(model: Any, log: dict[str, Any] | None, data: dict[str, Any]) -> str:
    if log and log.get("epochs"):
        data["hist_epochs"] = [{"epoch": e["epoch"], "layers": e["layers"]}
                               for e in log["epochs"]]
        n = len(log["epochs"])
        note = ("Weights after each epoch and the gradients of the epoch's last batch; dead "
                "ReLU: units never positive on the probe images.")
    else:
        layers = [{"name": l.name, "type": type(l).__name__, "gradients": {},
                   "weights": {k: inside._histogram(v, 30) for k, v in l.weights_.items()}}
                  for l in model.layers if l.weights_]
        data["hist_epochs"] = [{"epoch": "saved", "layers": layers}]
        n = 1
        note = "The saved weights (no training log: no gradients, no epochs)."
    return (f'<p>{note}</p><label>epoch <input id="hist-epoch" type="range" min="0" '
            f'max="{n - 1}" value="{n - 1}"> <span id="hist-epoch-label"></span></label>'
            f'<div id="hists" class="row"></div>')


# -- the page ---------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1200px;padding:0 16px;color:#222}
h1{margin:16px 0 4px}h2{border-bottom:1px solid #ddd;padding-top:8px}
nav a{margin-right:10px}.row{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}
figure{margin:0;text-align:center}figcaption{font-size:12px;color:#555;max-width:180px}
canvas.pic{image-rendering:pixelated;width:84px;border:1px solid #ccc;background:#fff}
canvas.big{width:196px}canvas.filter-tile{width:56px}canvas.fmap{width:56px}
canvas.grid{width:auto;height:220px}canvas.overlay{width:84px}
.tiles{display:flex;flex-wrap:wrap;gap:4px}.scroll{overflow-x:auto;max-width:820px}
table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ddd;padding:2px 6px}
table.analyzer td:nth-child(n+3){text-align:right}
table.cm td{width:30px;text-align:center;cursor:pointer}table.cm td.sel{outline:2px solid #000}
.kgrid{display:grid;grid-template-columns:repeat(3,64px);gap:4px;margin-top:8px}
.kgrid input{width:60px}.gallery{display:flex;flex-wrap:wrap;gap:8px;max-width:640px}
.mis{display:flex;gap:4px;font-size:11px}.mis canvas{width:56px}
.topch{display:flex;gap:2px;align-items:center;font-size:11px}
.topch span{width:34px}canvas.top{width:36px}
svg text{font-size:11px}svg.diagram text{font-size:12px}
"""

_JS = r"""
(function(){
const D=JSON.parse(document.getElementById('report-data').textContent);
function bytes(b64){const s=atob(b64),a=new Uint8Array(s.length);
  for(let i=0;i<s.length;i++)a[i]=s.charCodeAt(i);return a;}
function paint(canvas,pic){
  canvas.width=pic.w;canvas.height=pic.h;
  const ctx=canvas.getContext('2d'),img=ctx.createImageData(pic.w,pic.h),px=bytes(pic.px);
  for(let i=0;i<pic.w*pic.h;i++){
    for(let c=0;c<3;c++)img.data[4*i+c]=pic.c===1?px[i]:px[3*i+c];
    img.data[4*i+3]=255;}
  ctx.putImageData(img,0,0);}
document.querySelectorAll('canvas[data-pic]').forEach(function(cv){
  paint(cv,D.pics[cv.getAttribute('data-pic')]);});

// Convolution playground: cross-correlation with zero padding 1, in plain JS.
const play=D.pics.play,src=bytes(play.px),inputs=[...document.querySelectorAll('.kgrid input')];
const out=document.getElementById('play-out'),sel=document.getElementById('play-kernel');
function convolve(){
  const k=inputs.map(function(e){const v=parseFloat(e.value);return isFinite(v)?v:0;});
  const w=play.w,h=play.h,res=new Float32Array(w*h);let peak=0;
  for(let y=0;y<h;y++)for(let x=0;x<w;x++){let s=0;
    for(let i=0;i<3;i++)for(let j=0;j<3;j++){const yy=y+i-1,xx=x+j-1;
      if(yy>=0&&yy<h&&xx>=0&&xx<w)s+=k[3*i+j]*src[yy*w+xx];}
    res[y*w+x]=s;peak=Math.max(peak,Math.abs(s));}
  const ctx=out.getContext('2d'),img=ctx.createImageData(w,h);
  for(let i=0;i<w*h;i++){const v=peak>0?128+127*res[i]/peak:128;
    img.data[4*i]=img.data[4*i+1]=img.data[4*i+2]=v;img.data[4*i+3]=255;}
  ctx.putImageData(img,0,0);}
function setKernel(name){D.kernels[name].flat().forEach(function(v,i){
  inputs[i].value=Math.round(v*10000)/10000;});convolve();}
sel.addEventListener('change',function(){setKernel(sel.value);});
inputs.forEach(function(e){e.addEventListener('input',convolve);});
sel.value='vertical_edge';setKernel('vertical_edge');

// Filters over the epochs.
const fe=document.getElementById('filter-epoch');
if(fe&&D.filter_epochs){const tiles=document.querySelectorAll('.filter-tile');
  fe.addEventListener('input',function(){const s=D.filter_epochs[+fe.value];
    document.getElementById('filter-epoch-label').textContent=s.epoch;
    s.tiles.forEach(function(p,i){if(tiles[i])paint(tiles[i],p);});});}

// Confusion matrix: a click filters the gallery.
const items=[...document.querySelectorAll('.mis')],label=document.getElementById('gallery-label');
document.querySelectorAll('.cm-cell').forEach(function(td){td.addEventListener('click',function(){
  document.querySelectorAll('.cm-cell.sel').forEach(function(e){e.classList.remove('sel');});
  td.classList.add('sel');const t=td.dataset.t,p=td.dataset.p;let n=0;
  items.forEach(function(e){const on=e.dataset.t===t&&e.dataset.p===p;e.style.display=on?'':'none';
    if(on)n++;});
  label.textContent=t===p?'correct predictions are not listed':n+' shown: true '+t+', predicted '+p;});});
const all=document.getElementById('cm-all');
if(all)all.addEventListener('click',function(ev){ev.preventDefault();
  items.forEach(function(e){e.style.display='';});label.textContent=items.length+' shown';});

// Histograms (inline SVG), one epoch at a time.
const NS='http://www.w3.org/2000/svg';
function hist(title,h,color){
  const w=220,ht=90,svg=document.createElementNS(NS,'svg');svg.setAttribute('width',w);
  svg.setAttribute('height',ht+30);svg.setAttribute('class','hist');
  const peak=Math.max(1,...h.counts),bw=(w-10)/h.counts.length;
  h.counts.forEach(function(c,i){const r=document.createElementNS(NS,'rect');
    const bh=ht*c/peak;r.setAttribute('x',5+i*bw);r.setAttribute('y',ht-bh+14);
    r.setAttribute('width',Math.max(bw-1,1));r.setAttribute('height',bh);
    r.setAttribute('fill',color);svg.appendChild(r);});
  function text(x,y,s,anchor){const t=document.createElementNS(NS,'text');t.setAttribute('x',x);
    t.setAttribute('y',y);t.setAttribute('text-anchor',anchor||'start');t.textContent=s;
    svg.appendChild(t);}
  text(5,10,title);text(5,ht+27,h.lo.toPrecision(3));text(w-5,ht+27,h.hi.toPrecision(3),'end');
  return svg;}
const he=document.getElementById('hist-epoch'),box=document.getElementById('hists');
function drawHists(){const e=D.hist_epochs[+he.value];box.textContent='';
  document.getElementById('hist-epoch-label').textContent=e.epoch;
  e.layers.forEach(function(l){const div=document.createElement('div');
    const h4=document.createElement('h4');
    h4.textContent=l.name+' ('+l.type+')'+(l.dead_relu!==undefined?
      ', dead ReLU '+(100*l.dead_relu).toFixed(1)+'%':'');div.appendChild(h4);
    Object.keys(l.weights).forEach(function(k){div.appendChild(hist(k+' weights',l.weights[k],'#4c78a8'));
      if(l.gradients[k])div.appendChild(hist(k+' gradients',l.gradients[k],'#e45756'));});
    box.appendChild(div);});}
if(he){he.addEventListener('input',drawHists);drawHists();}

// For tests and curious readers: how many canvases are still blank (never painted).
let blank=0;const canvases=document.querySelectorAll('canvas');
canvases.forEach(function(cv){const d=cv.getContext('2d').getImageData(0,0,cv.width,cv.height).data;
  let painted=false;for(let i=3;i<d.length;i+=4)if(d[i]!==0){painted=true;break;}
  if(!painted)blank++;});
document.documentElement.setAttribute('data-canvases',canvases.length);
document.documentElement.setAttribute('data-blank-canvases',blank);
document.documentElement.setAttribute('data-ready','1');
})();
"""

_ERRORS_JS = """
window.__errors=0;
window.addEventListener('error',function(){window.__errors++;
  document.documentElement.setAttribute('data-js-errors',window.__errors);});
"""


def write_report(model: Any, path: str | os.PathLike, x: Any, y: Any,
                 images: Any = None, class_names: Sequence[str] | None = None,
                 log: str | os.PathLike | dict[str, Any] | None = None,
                 title: str | None = None, dataset: str | None = None, samples: int = 4,
                 gallery: int = 60, png_dir: str | os.PathLike | None = None) -> Path:
    """Write the HTML report of `model` to `path`.

    Parameters
    ----------
    model : a built cnnfast model (image classifier)
    path : the .html file to write
    x : test inputs as the model takes them (N, H, W, C), preprocessed
    y : their integer labels (N,)
    images : the same images as pixels to show (uint8 (N, H, W[, C])); default x rescaled
    class_names : names of the classes (default: their indices)
    log : a training log (path or record) of :class:`cnnfast.inside.TrainingDiagnostics`
    title, dataset : words for the page's heading
    samples : test images with saliency overlays
    gallery : most misclassified images kept for the confusion-matrix gallery
    png_dir : also save every picture of the page there as PNG, through matplotlib (an
        optional dependency: ``pip install 'cnnfast[plot]'``)

    Returns
    -------
    The path written.
    """
    xb, _ = inside._batch(model, x, "write_report")
    if xb.ndim != 4:
        raise ValueError(f"write_report: the report is about image models (H, W, C); model "
                         f"{model.name!r} takes {tuple(model.input_shape_)}")
    if png_dir is not None:
        from cnnfast._plotting import require_matplotlib

        require_matplotlib("write_report(png_dir=...)")  # before the work, not after
    labels = np.asarray(y)
    if labels.dtype.kind not in "ui" or labels.shape != (len(xb),):
        raise ValueError(f"write_report: y must be {len(xb)} integer labels, got "
                         f"{labels.dtype} {labels.shape}")
    labels = labels.astype(np.int64)
    record = inside.load_diagnostics(log) if isinstance(log, (str, os.PathLike)) else log
    shown = _display_images(images, xb)
    if shown.shape[0] != len(xb) or shown.shape[1:3] != xb.shape[1:3]:
        raise ValueError(f"write_report: images {shown.shape} do not match x {xb.shape}")
    probs = model.predict(xb, batch_size=256).reshape(len(xb), -1).astype(np.float64)
    if model.layers[-1].get_config().get("activation") != "softmax":
        e = np.exp(probs - probs.max(axis=1, keepdims=True))
        probs = e / e.sum(axis=1, keepdims=True)
    if labels.size and (labels.min() < 0 or labels.max() >= probs.shape[1]):
        raise ValueError(f"write_report: labels reach {int(labels.max())}, the model has "
                         f"{probs.shape[1]} outputs")
    pics: dict[str, Any] = {}
    data: dict[str, Any] = {"kernels": {k: v.tolist() for k, v in inside.KERNELS.items()}}
    sections = [
        ("architecture", "Architecture", _architecture(model)),
        ("playground", "Convolution playground", _playground(shown[0], pics)),
        ("filters", "Filters", _filters(model, record, pics, data)),
        ("feature-maps", "Feature maps", _feature_maps(model, xb[0], shown[0], pics)
         + _top_images(model, xb, shown, pics)),
        ("saliency", "Saliency", _saliency(model, xb, shown, probs, labels, class_names,
                                           samples, pics)),
        ("confusion", "Confusion matrix", _confusion(probs, labels, shown, class_names,
                                                     gallery, pics)),
        ("curves", "Loss and accuracy", _curves(record)),
        ("histograms", "Weights and gradients", _histograms(model, record, data)),
    ]
    data["pics"] = pics
    nav = "".join(f'<a href="#{sid}">{_esc(name)}</a>' for sid, name, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{_esc(name)}</h2>{content}</section>'
                   for sid, name, content in sections)
    heading = title or f"Inside {model.name}"
    sub = f"{model.count_params():,} parameters" + (f", {dataset}" if dataset else "")
    # "</" must not appear inside the script element that carries the data.
    payload = json.dumps(data, separators=(",", ":")).replace("</", "<\\/")
    page = (f'<!DOCTYPE html><html lang="en" data-js-errors="0"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<title>{_esc(heading)}</title><style>{_CSS}</style><script>{_ERRORS_JS}</script>'
            f'</head><body><h1>{_esc(heading)}</h1><p>{_esc(sub)}. Made by cnnfast; one file, '
            f'no network.</p><nav>{nav}</nav>{body}'
            f'<script type="application/json" id="report-data">{payload}</script>'
            f'<script>{_JS}</script></body></html>')
    if png_dir is not None:
        _export_pngs(pics, data, Path(png_dir))
    out = Path(path)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, out)
    return out


def _export_pngs(pics: dict[str, Any], data: dict[str, Any], folder: Path) -> None:
    """Every picture of the page as NAME.png (filter snapshots as filters_epochE_K.png)."""
    folder.mkdir(parents=True, exist_ok=True)
    named = dict(pics)
    for snap in data.get("filter_epochs", []):
        for k, pic in enumerate(snap["tiles"]):
            named[f"filters_epoch{snap['epoch']}_{k}"] = pic
    for name, pic in named.items():
        a = np.frombuffer(base64.b64decode(pic["px"]), np.uint8)
        a = a.reshape((pic["h"], pic["w"]) if pic["c"] == 1 else (pic["h"], pic["w"], 3))
        safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
        inside.save_png(a / 255.0 if a.ndim == 2 else a, folder / f"{safe}.png", scale=4)


class HTMLReport(callbacks_module.Callback):
    """Writes the HTML report at the end of ``fit``, with the run's own training log (and
    that log to `log_path` as well, when given).

    Parameters
    ----------
    path : the .html file
    x, y : test inputs (preprocessed) and integer labels
    images, class_names, samples, gallery : as in :func:`write_report`
    log_path : also write the training log (JSON) here
    probe : inputs for the dead-ReLU count (default: the first 256 of x)
    """

    def __init__(self, path: str | os.PathLike, x: Any, y: Any, images: Any = None,
                 class_names: Sequence[str] | None = None,
                 log_path: str | os.PathLike | None = None, probe: Any = None,
                 samples: int = 4, gallery: int = 60) -> None:
        super().__init__()
        self.path, self.x, self.y = path, x, y
        self.images, self.class_names = images, class_names
        self.samples, self.gallery = samples, gallery
        self.diagnostics = inside.TrainingDiagnostics(
            log_path, x_probe=np.asarray(x)[:256] if probe is None else probe)

    def set_model(self, model) -> None:
        super().set_model(model)
        self.diagnostics.set_model(model)

    def set_params(self, params) -> None:
        super().set_params(params)
        self.diagnostics.set_params(params)

    def on_train_begin(self, logs=None):
        self.diagnostics.on_train_begin(logs)

    def on_epoch_end(self, epoch, logs=None):
        self.diagnostics.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        write_report(self.model, self.path, self.x, self.y, images=self.images,
                     class_names=self.class_names, log=self.diagnostics.record,
                     samples=self.samples, gallery=self.gallery)

