"""The C API: examples/classify.c and examples/predict_threads.c built against libcnnfast.

The libraries and header ship inside the package (cnnfast/lib, cnnfast/include) or, in a
developer build, beside the sources. Outputs must equal Python's predict bit for bit: both run
the same C++ executor with the same kernels and thread count.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest
from more_layers_models import MODELS as MORE_LAYER_MODELS

import cnnfast as cf
from cnnfast import models

PACKAGE = pathlib.Path(cf.__file__).resolve().parent
REPO = pathlib.Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"


def _include_dir() -> pathlib.Path | None:
    for candidate in (PACKAGE / "include", REPO / "include"):
        if (candidate / "cnnfast.h").exists():
            return candidate
    return None


@pytest.fixture(scope="module")
def toolchain(tmp_path_factory):
    cc = shutil.which("cc") or shutil.which("gcc")
    lib = PACKAGE / "lib"
    include = _include_dir()
    if cc is None:
        pytest.skip("no C compiler (cc/gcc) on PATH")
    if not (lib / "libcnnfast.so").exists() or include is None:
        pytest.skip(f"libcnnfast not built (looked in {lib}); build with CNNFAST_BUILD_CAPI=ON")
    if not (EXAMPLES / "classify.c").exists():
        pytest.skip(f"examples/ not found beside the tests ({EXAMPLES})")
    out = tmp_path_factory.mktemp("capi")
    exes = {}
    common = [f"-I{include}", "-O2", "-Wall", "-Werror"]
    builds = {
        "classify": [cc, *common, str(EXAMPLES / "classify.c"), f"-L{lib}", "-lcnnfast",
                     f"-Wl,-rpath,{lib}"],
        "classify_static": [cc, *common, str(EXAMPLES / "classify.c"), str(lib / "libcnnfast.a"),
                            "-fopenmp", "-lstdc++", "-lm"],
        "predict_threads": [cc, *common, str(EXAMPLES / "predict_threads.c"), f"-L{lib}",
                            "-lcnnfast", f"-Wl,-rpath,{lib}", "-lpthread"],
    }
    for name, cmd in builds.items():
        exe = out / name
        subprocess.run([*cmd, "-o", str(exe)], check=True, capture_output=True, text=True)
        exes[name] = exe
    return {"dir": out, "lib": lib, **exes}


def _saved(tmp_path, model, name="model.cnnfast"):
    path = tmp_path / name
    model.save(path)
    return path


def _scores(stdout: str) -> tuple[int, np.ndarray]:
    lines = stdout.strip().splitlines()
    assert lines[0].startswith("class ")
    values = [float(line.split()[1]) for line in lines[1:]]
    return int(lines[0].split()[1]), np.array(values, np.float32)


def assert_classify_equals_predict(exe, path, x, predict, tmp_path, check_class=True):
    """examples/classify (`exe`) on the one image x against predict(x)[0] on one thread: the
    same executor and kernels, so the same scores bit for bit (%.9g prints float32 exactly)."""
    raw = tmp_path / "input.f32"
    x.tofile(raw)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([str(exe), str(path), str(raw), "--threads", "1"],
                          capture_output=True, text=True, env=env, check=True)
    cls, scores = _scores(proc.stdout)
    cf.set_num_threads(1)
    try:
        expected = predict(x)[0]
    finally:
        cf.set_num_threads(0)
    np.testing.assert_array_equal(scores, expected)
    if check_class:
        assert cls == int(np.argmax(expected))


@pytest.mark.parametrize("exe", ["classify", "classify_static"])
@pytest.mark.parametrize("zoo", ["lenet5", "keras_mnist_cnn", "resnet_cifar"])  # a stack and a graph
def test_classify_raw_input_matches_python_predict(toolchain, tmp_path, exe, zoo):
    cf.set_seed(3)
    model = getattr(models, zoo)()
    x = np.random.default_rng(0).random((1,) + model.input_shape_, dtype=np.float32)
    assert_classify_equals_predict(toolchain[exe], _saved(tmp_path, model), x, model.predict,
                                   tmp_path)


@pytest.mark.parametrize("name", list(MORE_LAYER_MODELS))
def test_classify_issue19_layers_matches_python_predict(toolchain, tmp_path, name):
    """Model files with issue 19's layers go through the same builder in the C API."""
    factory, shape = MORE_LAYER_MODELS[name]
    cf.set_seed(3)
    model = factory()
    model.build()
    x = np.random.default_rng(0).random((1, *shape), dtype=np.float32)
    assert_classify_equals_predict(toolchain["classify"], _saved(tmp_path, model), x,
                                   model.predict, tmp_path, check_class=False)


def test_classify_pgm_image(toolchain, tmp_path):
    cf.set_seed(4)
    model = models.lenet5()
    pixels = np.random.default_rng(1).integers(0, 256, (32, 32), dtype=np.uint8)
    pgm = tmp_path / "digit.pgm"
    pgm.write_bytes(b"P5\n# a comment\n32 32\n255\n" + pixels.tobytes())
    path = _saved(tmp_path, model)
    proc = subprocess.run([str(toolchain["classify"]), str(path), str(pgm), "--threads", "1"],
                          capture_output=True, text=True, check=True)
    _, scores = _scores(proc.stdout)
    x = (pixels.astype(np.float32) * np.float32(1.0 / 255.0))[None, :, :, None]
    cf.set_num_threads(1)
    try:
        np.testing.assert_array_equal(scores, model.predict(x)[0])
    finally:
        cf.set_num_threads(0)


def test_classify_reports_errors(toolchain, tmp_path):
    model = models.lenet5()
    path = _saved(tmp_path, model)
    data = path.read_bytes()
    broken = tmp_path / "broken.cnnfast"
    broken.write_bytes(data[: len(data) // 2])
    raw = tmp_path / "x.f32"
    np.zeros(32 * 32, np.float32).tofile(raw)
    proc = subprocess.run([str(toolchain["classify"]), str(broken), str(raw)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "broken.cnnfast" in proc.stderr
    wrong = tmp_path / "wrong.pgm"
    wrong.write_bytes(b"P5 28 28 255\n" + bytes(28 * 28))
    proc = subprocess.run([str(toolchain["classify"]), str(path), str(wrong)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "expects 32x32x1" in proc.stderr


def test_many_threads_share_one_model(toolchain, tmp_path):
    cf.set_seed(5)
    model = models.keras_mnist_cnn()
    x = np.random.default_rng(2).random((3, 28, 28, 1), dtype=np.float32)
    cf.set_num_threads(1)
    try:
        expected = model.predict(x)
    finally:
        cf.set_num_threads(0)
    (tmp_path / "x.f32").write_bytes(x.tobytes())
    (tmp_path / "y.f32").write_bytes(expected.tobytes())
    path = _saved(tmp_path, model)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([str(toolchain["predict_threads"]), str(path), str(tmp_path / "x.f32"),
                           str(tmp_path / "y.f32"), "4", "50"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr


def test_shared_library_needs_only_the_c_and_cxx_runtimes(toolchain):
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf not available")
    dyn = subprocess.run([readelf, "-d", str(toolchain["lib"] / "libcnnfast.so")],
                         capture_output=True, text=True, check=True).stdout
    needed = {line.split("[")[1].rstrip("]") for line in dyn.splitlines() if "(NEEDED)" in line}
    allowed = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "libgomp.so.1",
               "ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}
    assert needed and needed <= allowed, needed
    symbols = subprocess.run(["nm", "-D", "--defined-only", str(toolchain["lib"] / "libcnnfast.so")],
                             capture_output=True, text=True, check=True).stdout
    exported = {line.split()[-1] for line in symbols.splitlines() if " T " in line}
    assert exported and all(s.startswith("cnnfast_") for s in exported), exported


def _bn_spatial_model() -> cf.Sequential:
    from cnnfast import layers as L
    return cf.Sequential([
        L.Input((10, 9, 3)), L.ZeroPadding2D(1), L.Conv2D(4, 3), L.BatchNormalization(),
        L.ReLU(), L.UpSampling2D(2), L.Cropping2D(((1, 1), (0, 2))),
        L.Conv2D(4, 3, activation="relu"), L.BatchNormalization(),
        L.GlobalAveragePooling2D(keepdims=True), L.Reshape((4,)), L.BatchNormalization(),
        L.Dense(5, activation="softmax")])


@pytest.mark.parametrize("name", ["resnet20", "bn_spatial"])
def test_classify_batchnorm_models_match_python_predict(toolchain, tmp_path, name):
    """Issue 19's layers read from a model file by the C API's builder, BN folded into the
    convolutions there as in predict: the same numbers bit for bit."""
    cf.set_seed(5)
    model = models.resnet20() if name == "resnet20" else _bn_spatial_model()
    model.compile(cf.optimizers.SGD(0.05), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(1)
    xs = rng.random((8,) + model.input_shape_, dtype=np.float32)
    model.train_on_batch(xs, rng.integers(0, model.output_shape_[-1], 8))  # moving statistics
    assert_classify_equals_predict(toolchain["classify"], _saved(tmp_path, model), xs[:1],
                                   lambda x: model.predict(x, verbose=0), tmp_path,
                                   check_class=False)
