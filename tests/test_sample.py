"""The MNIST sample shipped inside the package (cnnfast.datasets.mnist.load_data(sample=True))."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from cnnfast.datasets import _idx_dataset, mnist, store

SHARED_MNIST = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "mnist"


def test_sample_has_keras_shapes_and_is_class_balanced():
    (x_train, y_train), (x_test, y_test) = mnist.load_data(sample=True)
    assert x_train.shape == (10000, 28, 28) and x_test.shape == (2000, 28, 28)
    assert y_train.shape == (10000,) and y_test.shape == (2000,)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    np.testing.assert_array_equal(np.bincount(y_train), [1000] * 10)
    np.testing.assert_array_equal(np.bincount(y_test), [200] * 10)
    # Shuffled, not sorted by class; no image repeated.
    assert (np.diff(y_train) != 0).mean() > 0.8
    assert len({x.tobytes() for x in x_train}) == 10000


def test_sample_is_small_and_inside_the_installed_package():
    files = [mnist.SAMPLE_DIR / name for _, name in _idx_dataset.FILES]
    assert all(f.is_file() for f in files)
    assert mnist.SAMPLE_DIR.parent == Path(mnist.__file__).resolve().parent
    assert sum(f.stat().st_size for f in files) < 3_000_000


def test_sample_with_path_is_refused():
    with pytest.raises(ValueError, match="either sample=True or path="):
        mnist.load_data(path=".", sample=True)


def test_damaged_sample_is_detected(tmp_path, monkeypatch):
    copy = tmp_path / "mnist_sample"
    shutil.copytree(mnist.SAMPLE_DIR, copy)
    name = "t10k-labels-idx1-ubyte.gz"
    data = bytearray((copy / name).read_bytes())
    data[-9] ^= 1
    (copy / name).write_bytes(bytes(data))
    monkeypatch.setattr(mnist, "SAMPLE_DIR", copy)
    with pytest.raises(ValueError, match="does not match its published SHA-256"):
        mnist.load_data(sample=True)
    (copy / name).unlink()
    with pytest.raises(store.DatasetNotFoundError, match="missing from the installed package"):
        mnist.load_data(sample=True)


@pytest.mark.skipif(not SHARED_MNIST.is_dir(),
                    reason=f"the real MNIST files are not at {SHARED_MNIST}")
def test_every_sample_image_is_a_real_mnist_image_with_its_label():
    (x_full, y_full), (xt_full, yt_full) = _idx_dataset.read_files(
        store.find_files(SHARED_MNIST, _idx_dataset.WANTED))
    (x_train, y_train), (x_test, y_test) = mnist.load_data(sample=True)
    for sample_x, sample_y, full_x, full_y in ((x_train, y_train, x_full, y_full),
                                               (x_test, y_test, xt_full, yt_full)):
        index = {x.tobytes(): y for x, y in zip(full_x, full_y)}
        assert all(index.get(x.tobytes()) == y for x, y in zip(sample_x, sample_y))
