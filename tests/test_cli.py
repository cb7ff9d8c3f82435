"""The ``cnnfast`` command end to end, each run in a subprocess as a user would type it.

Every run gets an empty $CNNFAST_DATA, cache and offline mode, so "auto" data means the
embedded MNIST sample whatever this machine has installed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import cnnfast as cnnfast_module
from cnnfast import images
from cnnfast.datasets import mnist

TIMEOUT = 120


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cli")


def _env(workdir: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The cnnfast these tests import (installed, or the in-place build), whatever the cwd.
    package_root = str(Path(cnnfast_module.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([package_root, *filter(None, [env.get("PYTHONPATH")])])
    env.update({"CNNFAST_DATA": str(workdir / "no-datasets"), "CNNFAST_OFFLINE": "1",
                "XDG_CACHE_HOME": str(workdir / "cache"), "OMP_NUM_THREADS": "2"})
    return env


def cnnfast(workdir: Path, *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    """Run ``python -m cnnfast ARGS`` in workdir; check the exit status when `check` is set."""
    proc = subprocess.run([sys.executable, "-m", "cnnfast", *args], check=False, cwd=workdir,
                          env=_env(workdir), capture_output=True, text=True, timeout=TIMEOUT)
    if check is not None:
        assert proc.returncode == check, (args, proc.returncode, proc.stdout, proc.stderr)
    return proc


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    """Exit status 2, exactly one line on stderr naming the thing, and no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture(scope="module")
def trained(workdir) -> Path:
    """One short epoch of LeNet-5 on the embedded sample, saved by the CLI."""
    proc = cnnfast(workdir, "train", "lenet5", "--epochs", "1", "--seed", "3", "--threads", "2",
                   "--out", "lenet5-1.cnnfast")
    assert "the MNIST sample shipped with cnnfast" in proc.stdout
    assert "--data mnist downloads it" in proc.stdout  # where the full set would come from
    assert "samples/s" in proc.stdout                  # the Keras-style bar with throughput
    accuracy = [line for line in proc.stdout.splitlines() if line.startswith("test accuracy: ")]
    assert len(accuracy) == 1
    # One epoch of LeNet-5 on 10,000 sample images: well above chance (10%); 1 epoch reads
    # about 95%, a full default run 97.7-98.1% (README).
    assert float(accuracy[0].split()[2].rstrip("%")) > 80
    assert "saved to lenet5-1.cnnfast" in proc.stdout
    return workdir / "lenet5-1.cnnfast"


def test_train_then_evaluate_reports_the_same_accuracy(workdir, trained):
    first = cnnfast(workdir, "train", "lenet5", "--epochs", "1", "--seed", "3", "--quiet",
                    "--out", "again.cnnfast")
    evaluated = cnnfast(workdir, "evaluate", str(trained))
    assert "2,000 test images" in evaluated.stdout
    acc_train = float(first.stdout.split("test accuracy: ")[1].split("%")[0])
    acc_eval = float(evaluated.stdout.split("accuracy: ")[1].split("%")[0])
    # Same seed, same data: the same model, evaluated on the same 2,000 images.
    assert abs(acc_train - acc_eval) < 0.051
    assert "Epoch" not in first.stdout  # --quiet: no progress bar


def test_predict_pgm_png_and_npy_match_the_labels(workdir, trained):
    (_, _), (x_test, y_test) = mnist.load_data(sample=True)
    images.write_pgm(workdir / "digit.pgm", x_test[0])
    np.save(workdir / "batch.npy", x_test[:4])
    proc = cnnfast(workdir, "predict", str(trained), "digit.pgm", "batch.npy")
    lines = proc.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "digit.pgm", "batch.npy[0]", "batch.npy[1]", "batch.npy[2]", "batch.npy[3]"]
    predicted = [int(line.split(": ")[1].split()[0]) for line in lines]
    # The PGM and the first .npy image are the same pixels: the same answer.
    assert predicted[0] == predicted[1]
    assert sum(p == y for p, y in zip(predicted[1:], y_test[:4])) >= 3
    for line in lines:
        probability = float(line.split("(")[1].rstrip(")"))
        assert 0.0 <= probability <= 1.0


def test_quantize_then_predict_and_evaluate_the_int8_file(workdir, trained):
    proc = cnnfast(workdir, "quantize", str(trained), "--out", "lenet5-int8.cnnfast")
    assert "calibrated on 500 training images of the MNIST sample" in proc.stdout
    fp32, int8 = map(float, re.search(r"test accuracy: float32 ([\d.]+)%, int8 ([\d.]+)%",
                                      proc.stdout).groups())
    assert abs(fp32 - int8) <= 1.0  # 2,000 test images; int8 LeNet-5 tracks float32 closely
    assert "saved to lenet5-int8.cnnfast" in proc.stdout
    # The float file's input scaling travels with the int8 one: the same answers on the digits.
    (_, _), (x_test, _) = mnist.load_data(sample=True)
    np.save(workdir / "q.npy", x_test[:8])
    answers = {path: [line.split(": ")[1].split()[0] for line in
                      cnnfast(workdir, "predict", path, "q.npy").stdout.strip().splitlines()]
               for path in (str(trained), "lenet5-int8.cnnfast")}
    assert sum(a == b for a, b in zip(*answers.values())) >= 7
    evaluated = cnnfast(workdir, "evaluate", "lenet5-int8.cnnfast").stdout
    assert "(int8 model)" in evaluated
    assert float(evaluated.split("accuracy: ")[1].split("%")[0]) == pytest.approx(int8, abs=0.01)
    assert_one_line_error(cnnfast(workdir, "quantize", "lenet5-int8.cnnfast", check=None),
                          "already an int8 model")
    for command in (("train", "lenet5-int8.cnnfast"), ("report", "lenet5-int8.cnnfast")):
        assert_one_line_error(cnnfast(workdir, *command, check=None), "int8 model",
                              f"{command[0]} takes a float32 model file")
    assert_one_line_error(cnnfast(workdir, "quantize", str(trained), "--skip", "nosuch",
                                  check=None), "nosuch", "Conv2D or Dense")


def test_predict_json_and_top_k(workdir, trained):
    (_, _), (x_test, _) = mnist.load_data(sample=True)
    images.write_pgm(workdir / "seven.pgm", x_test[1])
    proc = cnnfast(workdir, "predict", str(trained), "seven.pgm", "--top", "3", "--json")
    result = json.loads(proc.stdout)
    assert [r["input"] for r in result] == ["seven.pgm"]
    top = result[0]["top"]
    assert len(top) == 3 and all(isinstance(c, int) and 0 <= p <= 1 for c, p in top)
    assert [p for _, p in top] == sorted((p for _, p in top), reverse=True)
    text = cnnfast(workdir, "predict", str(trained), "seven.pgm", "--top", "2").stdout
    assert text.count("(") == 2


def test_predict_png_needs_pillow_or_reads_it(workdir, trained):
    (_, _), (x_test, _) = mnist.load_data(sample=True)
    try:
        from PIL import Image
    except ImportError:
        (workdir / "fake.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        assert_one_line_error(cnnfast(workdir, "predict", str(trained), "fake.png", check=None),
                              "Pillow", "cnnfast[image]")
        return
    Image.fromarray(x_test[0]).save(workdir / "digit.png")
    images.write_pgm(workdir / "same.pgm", x_test[0])
    png = cnnfast(workdir, "predict", str(trained), "digit.png").stdout.split(": ")[1]
    pgm = cnnfast(workdir, "predict", str(trained), "same.pgm").stdout.split(": ")[1]
    assert png == pgm


def test_predict_wrong_size_needs_resize(workdir, trained):
    (_, _), (x_test, _) = mnist.load_data(sample=True)
    images.write_pgm(workdir / "big.pgm", np.pad(x_test[0], 2))
    assert_one_line_error(cnnfast(workdir, "predict", str(trained), "big.pgm", check=None),
                          "big.pgm", "32x32x1", "28x28x1", "--resize")
    proc = cnnfast(workdir, "predict", str(trained), "big.pgm", "--resize")
    assert proc.stdout.startswith("big.pgm: ")


def test_continue_training_a_saved_file(workdir, trained):
    proc = cnnfast(workdir, "train", str(trained), "--epochs", "1", "--quiet",
                   "--out", "continued.cnnfast")
    assert "saved to continued.cnnfast" in proc.stdout
    assert "c5 (Conv2D)" in cnnfast(workdir, "summary", "continued.cnnfast").stdout
    from cnnfast.saving import read_header

    meta = read_header(workdir / "continued.cnnfast").metadata
    assert json.loads(meta["dataset"]) == "sample"
    assert json.loads(meta["preprocessing"]) == json.loads(
        read_header(trained).metadata["preprocessing"])


def test_train_on_a_npz_path_with_options(workdir):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (96, 12, 12, 3), dtype=np.uint8)
    y = rng.integers(0, 3, 96).astype(np.uint8)
    np.savez(workdir / "tiny.npz", x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:])
    proc = cnnfast(workdir, "train", "cifar10_simple", "--data", "tiny.npz", "--epochs", "2",
                   "--batch-size", "16", "--optimizer", "sgd", "--lr", "0.01",
                   "--validation-split", "0.25", "--threads", "1", "--out", "tiny.cnnfast")
    assert "val_accuracy" in proc.stdout
    assert "32 test images" in proc.stdout
    evaluated = cnnfast(workdir, "evaluate", "tiny.cnnfast", "--data", "tiny.npz").stdout
    assert "32 test images" in evaluated and "loss:" in evaluated


def write_colour_npz(path: Path, seed: int) -> None:
    """64 training and 16 test 12x12 colour images of 3 classes, as a dataset .npz."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (80, 12, 12, 3), dtype=np.uint8)
    y = rng.integers(0, 3, 80).astype(np.uint8)
    np.savez(path, x_train=x[:64], y_train=y[:64], x_test=x[64:], y_test=y[64:])


def test_train_in_mixed_precision_and_continue(workdir):
    write_colour_npz(workdir / "tiny.npz", 1)
    cnnfast(workdir, "train", "cifar10_simple", "--data", "tiny.npz", "--epochs", "1",
            "--batch-size", "16", "--precision", "bfloat16", "--out", "mixed.cnnfast")
    assert cnnfast_module.load_model(workdir / "mixed.cnnfast").precision == "bfloat16"
    # A saved model trains on in its own precision unless told otherwise.
    cnnfast(workdir, "train", "mixed.cnnfast", "--data", "tiny.npz", "--epochs", "1",
            "--batch-size", "16", "--out", "again.cnnfast")
    assert cnnfast_module.load_model(workdir / "again.cnnfast").precision == "bfloat16"
    cnnfast(workdir, "train", "mixed.cnnfast", "--data", "tiny.npz", "--epochs", "1",
            "--batch-size", "16", "--precision", "float32", "--out", "f32.cnnfast")
    assert cnnfast_module.load_model(workdir / "f32.cnnfast").precision == "float32"
    assert_one_line_error(cnnfast(workdir, "train", "lenet5", "--precision", "float16",
                                  check=None), "--precision", "float16")


def test_saved_models_run_on_the_npz_they_were_trained_on(workdir):
    write_colour_npz(workdir / "own.npz", 2)
    cnnfast(workdir, "train", "cifar10_simple", "--data", "own.npz", "--epochs", "1",
            "--batch-size", "16", "--out", "own.cnnfast")
    # Without --data, evaluate and quantize take the recorded own.npz (they stopped with
    # "error: 'own.npz'", a KeyError, before).
    assert "16 test images" in cnnfast(workdir, "evaluate", "own.cnnfast").stdout
    cnnfast(workdir, "quantize", "own.cnnfast", "--out", "own-int8.cnnfast")
    assert "16 test images" in cnnfast(workdir, "evaluate", "own-int8.cnnfast").stdout
    (workdir / "moved.npz").write_bytes((workdir / "own.npz").read_bytes())
    (workdir / "own.npz").unlink()
    assert_one_line_error(cnnfast(workdir, "evaluate", "own.cnnfast", check=None),
                          "trained on own.npz, which is not there", "--data")


def test_info_and_help(workdir):
    assert "SIMD path" in cnnfast(workdir, "info").stdout
    for args in ((), ("--help",)):
        out = cnnfast(workdir, *args).stdout
        assert "train" in out and "predict" in out and "evaluate" in out


@pytest.mark.skipif(shutil.which("cnnfast") is None,
                    reason="the cnnfast console script is not on PATH (not installed with pip)")
def test_console_script_runs(workdir):
    proc = subprocess.run(["cnnfast", "info"], check=False, capture_output=True, text=True, timeout=TIMEOUT,
                          env=_env(workdir))
    assert proc.returncode == 0 and "SIMD path" in proc.stdout


@pytest.mark.parametrize("args, needles", [
    (("train", "lenet6"), ("unknown model 'lenet6'", "lenet5")),
    (("train", "lenet5", "--data", "imagenet"), ("unknown dataset 'imagenet'", "mnist")),
    pytest.param(("train", "lenet5", "--data", "fashion_mnist"),
                 ("fashion", "not found", "CNNFAST_DATA"),
                 marks=pytest.mark.skipif(
                     Path("/usr/share/datasets/fashion-mnist").is_dir(),
                     reason="Fashion-MNIST is installed here (dataset-fashion-mnist): no error")),
    (("train", "lenet5", "--epochs", "x"), ("--epochs", "invalid int")),
    (("train", "lenet5", "--epochs", "0"), ("--epochs must be positive",)),
    (("train", "lenet5", "--optimizer", "ftrl"), ("unknown optimizer 'ftrl'", "adam")),
    (("train", "lenet5", "--fc-units", "64"), ("--fc-units does not apply to lenet5", "vgg16")),
    (("train", "vgg16", "--data", "sample", "--fc-units", "8"), ("vgg16 cannot take", "28, 28, 1")),
    (("train", "missing.cnnfast"), ("no such model file 'missing.cnnfast'",)),
    (("train", "lenet5", "--validation-split", "1.5"), ("--validation-split",)),
    (("evaluate", "missing.cnnfast"), ("no such model file",)),
    (("predict", "missing.cnnfast", "x.pgm"), ("no such model file",)),
    (("summary", "lenet5", "--optimizer", "ftrl"), ("unknown optimizer 'ftrl'",)),
    (("summary", "lenet5", "--fc-units", "10"), ("--fc-units does not apply to lenet5",)),
    (("summary", "nosuchnet"), ("unknown model 'nosuchnet'",)),
    (("frobnicate",), ("invalid choice", "frobnicate")),
    (("train",), ("the following arguments are required: model",)),
])
def test_errors_are_one_line_with_status_2(workdir, args, needles):
    assert_one_line_error(cnnfast(workdir, *args, check=None), *needles)


def test_file_errors_are_one_line(workdir, trained):
    (workdir / "corrupt.cnnfast").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all")
    for command in ("evaluate", "train"):
        assert_one_line_error(cnnfast(workdir, command, "corrupt.cnnfast", check=None),
                              "corrupt.cnnfast", "not a valid cnnfast model file")
    assert_one_line_error(cnnfast(workdir, "predict", str(trained), "absent.pgm", check=None),
                          "no such input file 'absent.pgm'")
    (workdir / "bad.pgm").write_bytes(b"P5\n28 28\n255\n" + b"\x00" * 10)
    assert_one_line_error(cnnfast(workdir, "predict", str(trained), "bad.pgm", check=None),
                          "bad.pgm", "bytes of pixel data")
    np.save(workdir / "rgb.npy", np.zeros((28, 28, 3), np.uint8))  # colour -> gray is allowed
    assert cnnfast(workdir, "predict", str(trained), "rgb.npy").stdout.startswith("rgb.npy: ")
    np.save(workdir / "wrong.npy", np.zeros((2, 20, 20), np.uint8))
    assert_one_line_error(cnnfast(workdir, "predict", str(trained), "wrong.npy", check=None),
                          "wrong.npy[0]", "20x20", "28x28x1")
    for opt in (("--classes", "3"), ("--fc-units", "4"), ("--input-shape", "8,8,1")):
        assert_one_line_error(cnnfast(workdir, "summary", str(trained), *opt, check=None),
                              f"{opt[0]} does not apply to a saved model file")
    assert_one_line_error(cnnfast(workdir, "train", str(trained), "--fc-units", "4", check=None),
                          "--fc-units does not apply to a saved model file")


def test_debug_shows_the_traceback(workdir):
    proc = cnnfast(workdir, "train", "lenet6", "--debug", check=None)
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_closed_pipe_ends_quietly(workdir):
    reader = "import sys; sys.stdin.readline()"  # reads one line, then closes the pipe
    writer = subprocess.Popen([sys.executable, "-m", "cnnfast", "summary", "vgg19"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(workdir),
                              cwd=workdir)
    head = subprocess.run([sys.executable, "-c", reader], check=False, stdin=writer.stdout, timeout=TIMEOUT)
    writer.stdout.close()
    _, err = writer.communicate(timeout=TIMEOUT)
    assert head.returncode == 0
    assert writer.returncode == 0 and err == b"", err


def test_ctrl_c_exits_130_and_writes_nothing(workdir):
    out = workdir / "interrupted"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "cnnfast", "train", "lenet5", "--epochs", "200",
                             "--out", "never.cnnfast"], cwd=out, env=_env(workdir),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Wait until training has started (the first epoch line), then press Ctrl-C.
    deadline = time.monotonic() + TIMEOUT
    line = ""
    while not line.startswith("Epoch") and time.monotonic() < deadline:
        line = proc.stdout.readline()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, err
    assert "nothing was saved" in err and "Traceback" not in err
    assert list(out.iterdir()) == []  # no model file, no temporary file


def test_train_resnet20_from_the_zoo(workdir):
    """Issue 19's zoo names train from the command line (here 2 steps on 32 CIFAR-sized images)."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, 40).astype(np.uint8)
    np.savez(workdir / "cifar_tiny.npz", x_train=x[:32], y_train=y[:32], x_test=x[32:],
             y_test=y[32:])
    proc = cnnfast(workdir, "train", "resnet20", "--data", "cifar_tiny.npz", "--epochs", "1",
                   "--batch-size", "16", "--optimizer", "sgd", "--threads", "1", "--quiet",
                   "--out", "resnet20.cnnfast")
    assert "8 test images" in proc.stdout
    assert cnnfast_module.load_model(workdir / "resnet20.cnnfast").count_params() == 274_442
