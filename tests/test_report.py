"""The HTML report: its content from Python, the ``cnnfast report`` command, and the page in a
real browser (headless Chromium: no JavaScript error, every canvas painted, the filter tiles
and confusion cells counted, no external URL, a screenshot that is not one colour).

The browser tests skip, saying why, when no Chromium is installed (``.ci/run`` installs
Debian's ``chromium``).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import cnnfast as cf
from cnnfast import inside
from cnnfast.datasets import mnist
from cnnfast.report import HTMLReport, write_report

BROWSER_TIMEOUT = 120


class Elements(HTMLParser):
    """Every start tag's name and attributes, in order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def having(self, tag: str, cls: str | None = None) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag
                and (cls is None or cls in (a.get("class") or "").split())]


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """LeNet-5 trained 2 epochs on 300 sample images, with its report written by the
    HTMLReport callback at the end of fit."""
    (x, y), (xt, yt) = mnist.load_data(sample=True)
    xs = ((x[:300, ..., None] / 255.0 - 0.13) / 0.31).astype(np.float32)
    xts = ((xt[:400, ..., None] / 255.0 - 0.13) / 0.31).astype(np.float32)
    cf.set_seed(3)
    model = cf.models.lenet5((28, 28, 1))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    folder = tmp_path_factory.mktemp("report")
    page = folder / "report.html"
    report = HTMLReport(page, xts, yt[:400], images=xt[:400], log_path=folder / "run.json",
                        samples=2)
    model.fit(xs, y[:300], epochs=2, batch_size=50, verbose=0, callbacks=[report])
    return {"model": model, "page": page, "log": folder / "run.json", "x": xts, "y": yt[:400],
            "images": xt[:400], "folder": folder}


def test_report_content(trained):
    text = trained["page"].read_text(encoding="utf-8")
    assert trained["page"].stat().st_size < 5_000_000
    dom = Elements(text)
    model = trained["model"]
    first = inside.conv_layers(model)[0]
    assert len(dom.having("canvas", "filter-tile")) == first.filters == 6
    assert len(dom.having("td", "cm-cell")) == 10 ** 2
    for section in ("architecture", "playground", "filters", "feature-maps", "saliency",
                    "confusion", "curves", "histograms"):
        assert dom.having("section") and any(a.get("id") == section for a in dom.having("section"))
    # Nothing is fetched: no src or href names a URL with a scheme other than data:.
    for _, attrs in dom.tags:
        for key in ("src", "href"):
            value = attrs.get(key)
            assert value is None or not re.match(r"\s*[a-z]+:", value, re.IGNORECASE), (key, value)
    assert "http://" not in re.sub(r"createElementNS\(NS|const NS='http://www.w3.org/2000/svg'",
                                   "", text)
    # The confusion matrix counts the model's predictions.
    pred = model.predict(trained["x"]).argmax(axis=1)
    cells = {(int(a["data-t"]), int(a["data-p"])): a for a in dom.having("td", "cm-cell")}
    data = json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)'
                                r"</script>", text, re.DOTALL).group(1))
    cm = np.zeros((10, 10), int)
    np.add.at(cm, (trained["y"], pred), 1)
    page_cm = np.zeros((10, 10), int)
    for (t, p), a in cells.items():
        page_cm[t, p] = int(re.search(r": (\d+)$", a["title"]).group(1))
    np.testing.assert_array_equal(page_cm, cm)
    # The gallery holds misclassified images only, each with its top 3.
    mis = dom.having("div", "mis")
    assert len(mis) == min(60, int((pred != trained["y"]).sum()))
    assert all(a["data-t"] != a["data-p"] for a in mis)
    # The images that excite each channel of c3 (LeNet-5's last conv with more than one
    # position) most, as top_activating ranks them.
    tops = dom.having("canvas", "top")
    assert len(tops) == 16 * 4
    idx, _ = inside.top_activating(model, trained["x"], "c3", 0, k=4)
    assert [int(re.match(r"test image (\d+):", a["title"]).group(1)) for a in tops[:4]] == \
        idx.tolist()
    # The log travelled: 3 filter snapshots (epochs 0, 1, 2) and 2 epochs of histograms.
    assert [s["epoch"] for s in data["filter_epochs"]] == [0, 1, 2]
    assert len(data["hist_epochs"]) == 2
    assert inside.load_diagnostics(trained["log"])["epochs"][1]["epoch"] == 2
    # Every canvas has its picture, of the size it claims.
    for a in dom.having("canvas"):
        if a.get("data-pic"):
            pic = data["pics"][a["data-pic"]]
            assert len(base64.b64decode(pic["px"])) == pic["w"] * pic["h"] * pic["c"]


def test_write_report_bad_input(trained, tmp_path):
    model = trained["model"]
    with pytest.raises(ValueError, match=r"write_report: model 'lenet5' takes samples of shape "
                                          r"\(28, 28, 1\).*\(3, 28, 28\)"):
        write_report(model, tmp_path / "r.html", np.zeros((3, 28, 28)), np.zeros(3, int))
    with pytest.raises(ValueError, match="y must be 3 integer labels"):
        write_report(model, tmp_path / "r.html", np.zeros((3, 28, 28, 1)), np.zeros(4, int))
    with pytest.raises(ValueError, match="labels reach 12"):
        write_report(model, tmp_path / "r.html", np.zeros((3, 28, 28, 1)), np.array([0, 1, 12]))
    assert not (tmp_path / "r.html").exists()


def test_rgb_report_has_colour_tiles_and_class_names(tmp_path):
    from cnnfast.layers import Conv2D, Dense, Flatten, Input, MaxPooling2D

    cf.set_seed(4)
    model = cf.Sequential([Input((12, 12, 3)), Conv2D(5, 3, activation="relu", name="rgb"),
                           MaxPooling2D(2), Conv2D(4, 3, activation="relu"), Flatten(),
                           Dense(3, activation="softmax")])
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (40, 12, 12, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, 40)
    page = write_report(model, tmp_path / "rgb.html", images / 255.0, labels, images=images,
                        class_names=["cat", "<dog>", "ship"], samples=1)
    text = page.read_text(encoding="utf-8")
    dom = Elements(text)
    assert len(dom.having("canvas", "filter-tile")) == 5
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', text, re.DOTALL).group(1))
    assert data["pics"]["tile0"]["c"] == 3 and data["pics"]["tile0"]["w"] == 3  # colour tiles
    assert len(dom.having("td", "cm-cell")) == 9
    assert "&lt;dog&gt;" in text and "<dog>" not in text  # names are escaped
    assert "No training log" in text
    with pytest.raises(ValueError, match=r"image models \(H, W, C\); model 'mlp' takes \(6,\)"):
        write_report(cf.Sequential([Input((6,)), Dense(2)], name="mlp"), tmp_path / "m.html",
                     np.zeros((2, 6)), np.zeros(2, int))
    if _chromium() is not None:
        attrs = _html_attrs(_dump(page, tmp_path))
        assert (attrs.get("data-ready"), attrs.get("data-js-errors"),
                attrs.get("data-blank-canvases")) == ("1", "0", "0")


def test_graph_report_draws_its_joins(tmp_path):
    # A residual graph: the diagram has one block per call and an arc for each input that is
    # not the call right above (the skip into the Add), and the page works in the browser.
    cf.set_seed(5)
    x = cf.layers.Input((10, 10, 1))
    h = cf.layers.Conv2D(4, 3, padding="same", activation="relu", name="c1")(x)
    b = cf.layers.Conv2D(4, 3, padding="same", name="c2")(h)
    j = cf.layers.add([h, b])
    out = cf.layers.Dense(3, activation="softmax")(cf.layers.Flatten()(j))
    model = cf.Model(x, out)
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (30, 10, 10, 1), dtype=np.uint8)
    page = write_report(model, tmp_path / "graph.html", images / 255.0, rng.integers(0, 3, 30),
                        images=images, samples=1)
    text = page.read_text(encoding="utf-8")
    diagram = re.search(r'<svg class="diagram".*?</svg>', text, re.DOTALL).group(0)
    assert diagram.count('class="block"') == len(model._nodes) == 6
    assert diagram.count('class="skip"') == 1  # c1 -> add, past c2
    assert "(Add)" in diagram
    if _chromium() is not None:
        attrs = _html_attrs(_dump(page, tmp_path))
        assert (attrs.get("data-ready"), attrs.get("data-js-errors"),
                attrs.get("data-blank-canvases")) == ("1", "0", "0")


def _env(folder: Path) -> dict[str, str]:
    env = dict(os.environ)
    package_root = str(Path(cf.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    env.update({"CNNFAST_DATA": str(folder / "no-datasets"), "CNNFAST_OFFLINE": "1",
                "XDG_CACHE_HOME": str(folder / "cache"), "OMP_NUM_THREADS": "2"})
    return env


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnfast", *args], cwd=folder, env=_env(folder),
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_report(tmp_path):
    train = _cli(tmp_path, "train", "lenet5", "--epochs", "1", "--seed", "1", "--quiet",
                 "--log", "run.json")
    assert train.returncode == 0, train.stderr
    record = inside.load_diagnostics(tmp_path / "run.json")
    assert [e["epoch"] for e in record["epochs"]] == [1]
    proc = _cli(tmp_path, "report", "lenet5.cnnfast", "--log", "run.json", "-o", "page.html",
                "--samples", "1")
    assert proc.returncode == 0, proc.stderr
    assert "the MNIST sample" in proc.stdout and "wrote page.html" in proc.stdout
    dom = Elements((tmp_path / "page.html").read_text(encoding="utf-8"))
    assert len(dom.having("canvas", "filter-tile")) == 6
    assert len(dom.having("td", "cm-cell")) == 100
    assert (tmp_path / "page.html").stat().st_size < 5_000_000  # LeNet-5, 2,000 test images
    # Without a log the page still has its histograms (of the saved weights).
    assert _cli(tmp_path, "report", "lenet5.cnnfast", "--samples", "1").returncode == 0
    assert (tmp_path / "report.html").exists()
    # Errors: one line, status 2.
    for args, needle in ((("report", "missing.cnnfast"), "no such model file"),
                         (("report", "lenet5.cnnfast", "--log", "none.json"),
                          "no such training log"),
                         (("report", "lenet5.cnnfast", "--log", "lenet5.cnnfast"),
                          "not a training log"),
                         (("report", "lenet5.cnnfast", "--samples", "0"), "--samples"),
                         (("report", "lenet5.cnnfast", "--data", "cifar10"), "cifar")):
        proc = _cli(tmp_path, *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and needle in lines[0].lower() and "Traceback" not in proc.stderr


# -- in a real browser ----------------------------------------------------------------------

def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


needs_chromium = pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH (.ci/run "
                                    "installs Debian's chromium; apt-get install chromium)")


def _browser(page: Path, *flags: str, profile: Path) -> subprocess.CompletedProcess:
    cmd = [_chromium(), "--headless", "--disable-gpu", "--disable-dev-shm-usage",
           "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile}",
           "--virtual-time-budget=15000", *flags, page.resolve().as_uri()]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.insert(2, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BROWSER_TIMEOUT,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def _dump(page: Path, tmp_path: Path) -> Elements:
    return Elements(_browser(page, "--dump-dom", profile=tmp_path / "profile").stdout)


def _html_attrs(dom: Elements) -> dict[str, str | None]:
    return next(a for t, a in dom.tags if t == "html")


# Added to a copy of the page, after the page's own script: click an off-diagonal confusion
# cell that has mistakes in the gallery and put the gallery's visible count on <html>; copy
# the playground's output pixels (gray; the page opens on the vertical-edge kernel) likewise.
_PROBE = """<script>
(function(){const h=document.documentElement;
const cell=[...document.querySelectorAll('.cm-cell')].find(function(td){
  return td.dataset.t!==td.dataset.p&&document.querySelector(
    '.mis[data-t="'+td.dataset.t+'"][data-p="'+td.dataset.p+'"]');});
cell.click();h.setAttribute('data-click',cell.dataset.t+','+cell.dataset.p);
h.setAttribute('data-click-shown',[...document.querySelectorAll('.mis')].filter(function(e){
  return e.style.display!=='none';}).length);
const out=document.getElementById('play-out'),d=out.getContext('2d').getImageData(
  0,0,out.width,out.height).data,g=[];for(let i=0;i<d.length;i+=4)g.push(d[i]);
h.setAttribute('data-play',g.join(','));})();
</script></body>"""


@needs_chromium
def test_report_in_chromium(trained, tmp_path):
    page = trained["page"]
    dom = _dump(page, tmp_path)
    html_attrs = _html_attrs(dom)
    assert html_attrs.get("data-ready") == "1", html_attrs  # the page's script ran to its end
    assert html_attrs.get("data-js-errors") == "0"
    canvases = dom.having("canvas")
    assert int(html_attrs["data-canvases"]) == len(canvases) > 20
    assert html_attrs.get("data-blank-canvases") == "0"  # getImageData: every canvas painted
    assert len(dom.having("canvas", "filter-tile")) == inside.conv_layers(trained["model"])[0].filters
    assert len(dom.having("td", "cm-cell")) == 10 ** 2
    # The histograms were drawn by the script, as SVG.
    assert len(dom.having("svg", "hist")) >= 8
    for _, attrs in dom.tags:
        for key in ("src", "href"):
            assert "http" not in (attrs.get(key) or ""), (key, attrs)


@needs_chromium
def test_report_interaction_in_chromium(trained, tmp_path):
    text = trained["page"].read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    probed.write_text(text.replace("</body>", _PROBE), encoding="utf-8")
    attrs = _html_attrs(_dump(probed, tmp_path))
    assert attrs.get("data-js-errors") == "0", attrs.get("data-js-errors")
    # The click filtered the gallery to that cell's mistakes.
    t, p = attrs["data-click"].split(",")
    mis = Elements(text).having("div", "mis")
    assert int(attrs["data-click-shown"]) == sum(a["data-t"] == t and a["data-p"] == p
                                                 for a in mis) > 0
    # The playground's output is the vertical-edge filter of the first image, zero-padded,
    # shown as 128 + 127 v / max|v| (the canvas rounds to the nearest byte: 1 level).
    got = np.array(attrs["data-play"].split(","), float).reshape(28, 28)
    v = inside.apply_filter(trained["images"][0].astype(np.float64), "vertical_edge", padding=1)
    want = 128 + 127 * v / np.abs(v).max()
    np.testing.assert_allclose(got, want, atol=1.0)


@needs_chromium
def test_error_counter_and_blank_check_can_fail(trained, tmp_path):
    # The checks above would pass on a page that reports nothing: show that a thrown error
    # and an unpainted canvas are counted.
    text = trained["page"].read_text(encoding="utf-8")
    broken = tmp_path / "broken.html"
    broken.write_text(text.replace("<nav>", "<canvas id='empty'></canvas><script>"
                                   "notAFunction();</script><nav>"), encoding="utf-8")
    attrs = _html_attrs(_dump(broken, tmp_path))
    assert attrs.get("data-js-errors") == "1"
    assert attrs.get("data-blank-canvases") == "1"


@needs_chromium
def test_report_screenshot_not_one_colour(trained, tmp_path):
    image_module = pytest.importorskip("PIL.Image", reason="Pillow reads the screenshot")
    shot = tmp_path / "shot.png"
    _browser(trained["page"], f"--screenshot={shot}", "--window-size=1200,1600",
             profile=tmp_path / "profile")
    with image_module.open(shot) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape == (1600, 1200, 3)
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 50  # text, tables, the diagram and pictures: many colours


def test_png_export(tmp_path):
    pytest.importorskip("matplotlib")
    from cnnfast.layers import Conv2D, Dense, Flatten, Input

    cf.set_seed(5)
    model = cf.Sequential([Input((8, 8, 1)), Conv2D(2, 3, name="c"), Flatten(),
                           Dense(2, activation="softmax")])
    x = np.random.default_rng(5).random((6, 8, 8, 1))
    write_report(model, tmp_path / "r.html", x, np.array([0, 1, 0, 1, 0, 1]), samples=1,
                 png_dir=tmp_path / "png")
    text = (tmp_path / "r.html").read_text(encoding="utf-8")
    names = set(re.findall(r'data-pic="([^"]+)"', text))
    saved = {p.stem for p in (tmp_path / "png").glob("*.png")}
    assert names and names <= saved
    assert (tmp_path / "png" / "tile1.png").read_bytes()[:4] == b"\x89PNG"
