"""Dataset readers, lookup order and verified downloads (cnnfast.datasets).

Everything runs on small files the tests write, with the network replaced by fake fetchers;
the real MNIST / Fashion-MNIST / CIFAR-10 sample files are checked when present.
"""

import gzip
import hashlib
import io
import os
import pathlib
import struct
import tarfile
import urllib.error

import numpy as np
import pytest

from cnnfast.datasets import (
    DatasetNotFoundError,
    _idx_dataset,
    cifar10,
    fashion_mnist,
    mnist,
    store,
)
from cnnfast.datasets.cifar import parse_cifar10_batch, read_cifar10_batch
from cnnfast.datasets.idx import read_idx

SHARED = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
DEBIAN_FASHION = pathlib.Path("/usr/share/datasets/fashion-mnist")
IDX_NAMES = [f for _, f in _idx_dataset.FILES]


# -- writers for small test files ---------------------------------------------------------------
def idx_bytes(arr: np.ndarray) -> bytes:
    assert arr.dtype == np.uint8
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def write_idx(path: pathlib.Path, arr: np.ndarray, gz: bool) -> None:
    data = idx_bytes(arr)
    path.write_bytes(gzip.compress(data) if gz else data)


def fake_mnist(seed: int, n_train: int = 40, n_test: int = 12):
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8)
    y_train = rng.integers(0, 10, n_train, dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8)
    y_test = rng.integers(0, 10, n_test, dtype=np.uint8)
    return (x_train, y_train), (x_test, y_test)


def write_mnist_dir(directory: pathlib.Path, arrays, gz: bool = True) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    (x_train, y_train), (x_test, y_test) = arrays
    for name, arr in zip(IDX_NAMES, (x_train, y_train, x_test, y_test)):
        write_idx(directory / (name if gz else name[:-3]), arr, gz)
    return directory


def assert_same(got, want):
    for g_pair, w_pair in zip(got, want):
        for g, w in zip(g_pair, w_pair):
            assert g.dtype == np.uint8 and g.shape == w.shape
            np.testing.assert_array_equal(g, w)


def cifar_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    """Records of 1 label byte + R, G, B planes (written with explicit loops, the spec)."""
    out = bytearray()
    for img, label in zip(x, y):
        out.append(int(label))
        for c in range(3):
            out += img[:, :, c].tobytes()
    return bytes(out)


def fake_cifar(seed: int, per_batch: int):
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(6):
        batches.append((rng.integers(0, 256, (per_batch, 32, 32, 3), dtype=np.uint8),
                        rng.integers(0, 10, per_batch, dtype=np.uint8)))
    return batches


def write_cifar_dir(directory: pathlib.Path, batches) -> pathlib.Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, (x, y) in zip(cifar10.BATCH_FILES, batches):
        (directory / name).write_bytes(cifar_bytes(x, y))
    return directory


def cifar_tarball(batches) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, (x, y) in zip(cifar10.BATCH_FILES, batches):
            data = cifar_bytes(x, y)
            info = tarfile.TarInfo(f"cifar-10-batches-bin/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Every lookup location under tmp_path, and a network that fails the test if used."""
    monkeypatch.delenv("CNNFAST_DATA", raising=False)
    monkeypatch.delenv("CNNFAST_OFFLINE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(store, "DEBIAN_ROOT", tmp_path / "debian")

    def no_network(url):
        raise AssertionError(f"unexpected download of {url}")

    previous = store.set_fetcher(no_network)
    yield tmp_path
    store.set_fetcher(previous)


@pytest.fixture
def small_cifar(monkeypatch):
    # The official batches hold 10000 records each; the tests' hold 3.
    monkeypatch.setattr(cifar10, "RECORDS_PER_BATCH", 3)
    return fake_cifar(5, 3)


# -- IDX reader ---------------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
def test_mnist_load_data_from_path(isolated, gz):
    arrays = fake_mnist(1)
    directory = write_mnist_dir(isolated / "m", arrays, gz=gz)
    assert_same(mnist.load_data(path=directory), arrays)


def test_mnist_accepts_dotted_names_and_keras_npz(isolated):
    arrays = fake_mnist(2)
    d = isolated / "dotted"
    d.mkdir()
    for name, arr in zip(IDX_NAMES, [a for pair in arrays for a in pair]):
        write_idx(d / name[:-3].replace("-idx", ".idx"), arr, gz=False)
    assert_same(mnist.load_data(path=d), arrays)
    npz = isolated / "mnist.npz"
    (xa, ya), (xb, yb) = arrays
    np.savez(npz, x_train=xa, y_train=ya, x_test=xb, y_test=yb)
    assert_same(mnist.load_data(path=npz), arrays)


def test_idx_bad_magic_truncated_and_corrupt(tmp_path):
    x = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    good = idx_bytes(x)
    cases = {
        "magic": (b"\x01\x02" + good[2:], "bad magic"),
        "short": (good[:3], "not an IDX file"),
        "header": (good[:10], "truncated IDX header"),
        "payload": (good[:-1], "truncated or corrupt"),
        "extra": (good + b"\x00", "truncated or corrupt"),
        # No bytes (a zero size) but other sizes NumPy cannot hold (found by tests/test_fuzz.py).
        "empty-huge": (bytes.fromhex("00000805" "00000002" "00000000" "01020304" "05060708"
                                     "090a0b0c"), "implausible shape"),
        "gzip-truncated": (gzip.compress(good)[:-12], "gzip"),
        "gzip-corrupt": (gzip.compress(good)[:10] + b"\xff" * 40, "gzip"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(ValueError, match=message):
            read_idx(path)
    path = tmp_path / "ok"
    path.write_bytes(good)
    np.testing.assert_array_equal(read_idx(path, shape=(None, 28, 28), dtype=np.uint8), x)
    with pytest.raises(ValueError, match=r"expected \(N,\)"):
        read_idx(path, shape=(None,))


def test_mnist_inconsistent_files_raise(isolated):
    (xa, ya), (xb, yb) = fake_mnist(3)
    d = write_mnist_dir(isolated / "short-labels", ((xa, ya[:-1]), (xb, yb)))
    with pytest.raises(ValueError, match="labels"):
        mnist.load_data(path=d)
    bad = ya.copy()
    bad[0] = 10
    d = write_mnist_dir(isolated / "label-range", ((xa, bad), (xb, yb)))
    with pytest.raises(ValueError, match="out of range"):
        mnist.load_data(path=d)
    d = write_mnist_dir(isolated / "swapped", ((xa, ya), (xb, yb)))
    os.replace(d / IDX_NAMES[1], d / "tmp")
    os.replace(d / IDX_NAMES[0], d / IDX_NAMES[1])
    os.replace(d / "tmp", d / IDX_NAMES[0])
    with pytest.raises(ValueError, match="expected"):
        mnist.load_data(path=d)
    (d / IDX_NAMES[2]).unlink()
    with pytest.raises(FileNotFoundError, match="t10k-images"):
        mnist.load_data(path=d)


# -- CIFAR-10 reader ----------------------------------------------------------------------------
def test_cifar_reader_planes_to_channels_last(tmp_path):
    x = np.zeros((2, 32, 32, 3), np.uint8)
    x[..., 0], x[..., 1], x[..., 2] = 10, 20, 30
    x[1, 5, 7] = (1, 2, 3)  # one distinct pixel: row 5, column 7
    data = cifar_bytes(x, np.array([4, 9]))
    assert data[3073 + 1 + 5 * 32 + 7] == 1 and data[3073 + 1 + 2048 + 5 * 32 + 7] == 3
    (tmp_path / "b.bin").write_bytes(data)
    got_x, got_y = read_cifar10_batch(tmp_path / "b.bin")
    assert got_x.shape == (2, 32, 32, 3) and got_x.dtype == np.uint8 and got_x.flags.c_contiguous
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, [4, 9])
    (tmp_path / "b.bin.gz").write_bytes(gzip.compress(data))
    np.testing.assert_array_equal(read_cifar10_batch(tmp_path / "b.bin.gz")[0], x)


def test_cifar_reader_rejects_truncated_and_corrupt():
    x, y = fake_cifar(0, 2)[0]
    data = cifar_bytes(x, y)
    for bad in (b"", data[:-1], data + b"\x00", data[:100]):
        with pytest.raises(ValueError, match="whole number of CIFAR-10 records"):
            parse_cifar10_batch(bad)
    wrong_label = bytes([12]) + data[1:]
    with pytest.raises(ValueError, match="label 12"):
        parse_cifar10_batch(wrong_label)
    with pytest.raises(ValueError, match="2 CIFAR-10 records, expected 10000"):
        parse_cifar10_batch(data, records=10000)


def check_cifar(got, batches):
    (x_train, y_train), (x_test, y_test) = got
    n = len(batches[0][0])
    assert x_train.shape == (5 * n, 32, 32, 3) and x_test.shape == (n, 32, 32, 3)
    assert y_train.shape == (5 * n, 1) and y_test.shape == (n, 1)  # Keras's (N, 1)
    assert {a.dtype for a in (x_train, y_train, x_test, y_test)} == {np.dtype(np.uint8)}
    np.testing.assert_array_equal(x_train, np.concatenate([b[0] for b in batches[:5]]))
    np.testing.assert_array_equal(y_train[:, 0], np.concatenate([b[1] for b in batches[:5]]))
    np.testing.assert_array_equal(x_test, batches[5][0])


def test_cifar_load_data_layouts(isolated, small_cifar):
    flat = write_cifar_dir(isolated / "flat", small_cifar)
    check_cifar(cifar10.load_data(path=flat), small_cifar)
    nested = write_cifar_dir(isolated / "nested" / "cifar-10-batches-bin", small_cifar)
    check_cifar(cifar10.load_data(path=nested.parent), small_cifar)
    archive = isolated / "cifar-10-binary.tar.gz"
    archive.write_bytes(cifar_tarball(small_cifar))
    check_cifar(cifar10.load_data(path=archive), small_cifar)
    archive.write_bytes(archive.read_bytes()[:-100])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        cifar10.load_data(path=archive)
    # A batch file cut at a record boundary has the wrong record count.
    (flat / "data_batch_3.bin").write_bytes((flat / "data_batch_3.bin").read_bytes()[:3073])
    with pytest.raises(ValueError, match="1 CIFAR-10 records, expected 3"):
        cifar10.load_data(path=flat)


# -- lookup order -------------------------------------------------------------------------------
def test_lookup_order(isolated, monkeypatch):
    explicit, env, cache, debian = (fake_mnist(s) for s in (10, 11, 12, 13))
    write_mnist_dir(isolated / "explicit", explicit)
    write_mnist_dir(isolated / "env" / "mnist", env)
    write_mnist_dir(isolated / "cache" / "cnnfast" / "mnist", cache, gz=False)
    write_mnist_dir(isolated / "debian" / "mnist", debian)
    monkeypatch.setenv("CNNFAST_DATA", str(isolated / "env"))
    assert_same(mnist.load_data(path=isolated / "explicit"), explicit)
    assert_same(mnist.load_data(), env)
    # A directory missing one file is skipped as a whole.
    (isolated / "env" / "mnist" / IDX_NAMES[3]).unlink()
    assert_same(mnist.load_data(), cache)
    monkeypatch.delenv("CNNFAST_DATA")
    assert_same(mnist.load_data(), cache)
    for f in (isolated / "cache" / "cnnfast" / "mnist").iterdir():
        f.unlink()
    assert_same(mnist.load_data(), debian)


def test_cache_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert store.cache_root() == tmp_path / ".cache" / "cnnfast"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert store.cache_root() == tmp_path / "xdg" / "cnnfast"


def test_fashion_lookup_uses_debian_directory_name(isolated):
    arrays = fake_mnist(20)
    write_mnist_dir(isolated / "debian" / "fashion-mnist", arrays)
    assert_same(fashion_mnist.load_data(), arrays)


# -- downloads ----------------------------------------------------------------------------------
def serve(monkeypatch, module, payloads: dict[str, bytes], sha_of: dict[str, bytes] | None = None):
    """Point module.REMOTES at fake URLs serving payloads; checksums of sha_of (default the
    payloads themselves). Returns the list of URLs fetched."""
    sha_of = sha_of or payloads
    remotes = [store.RemoteFile(name, hashlib.sha256(sha_of[name]).hexdigest(),
                                (f"https://mirror-a.invalid/{name}", f"https://mirror-b.invalid/{name}"))
               for name in payloads]
    monkeypatch.setattr(module, "REMOTES", remotes)
    fetched = []

    def fetch(url):
        fetched.append(url)
        if "mirror-a" in url:
            raise urllib.error.URLError("mirror a is down")
        data = payloads[url.rsplit("/", 1)[1]]
        return [data[:1000], data[1000:]]  # chunked, like the real fetcher

    store.set_fetcher(fetch)
    return fetched


def test_download_verified_and_atomic(isolated, monkeypatch, capsys):
    arrays = fake_mnist(30)
    flat = [a for pair in arrays for a in pair]
    payloads = {name: gzip.compress(idx_bytes(a)) for name, a in zip(IDX_NAMES, flat)}
    fetched = serve(monkeypatch, mnist, payloads)
    assert_same(mnist.load_data(), arrays)
    cache = isolated / "cache" / "cnnfast" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(IDX_NAMES)  # no temporary files left
    assert len(fetched) == 8  # mirror a failed, mirror b served each file
    assert "Downloading data from https://mirror-b.invalid/" in capsys.readouterr().err
    # The second call finds the cache.
    fetched.clear()
    assert_same(mnist.load_data(), arrays)
    assert fetched == []


def test_download_checksum_mismatch_leaves_nothing(isolated, monkeypatch):
    arrays = fake_mnist(31)
    flat = [a for pair in arrays for a in pair]
    payloads = {name: gzip.compress(idx_bytes(a)) for name, a in zip(IDX_NAMES, flat)}
    published = dict(payloads, **{IDX_NAMES[0]: b"the published file"})
    serve(monkeypatch, mnist, payloads, sha_of=published)
    with pytest.raises(store.ChecksumError, match="does not match the published") as err:
        mnist.load_data()
    assert isinstance(err.value, ValueError)
    cache = isolated / "cache" / "cnnfast" / "mnist"
    assert not any(p.name.startswith(IDX_NAMES[0]) or p.name.endswith(".part") for p in cache.iterdir())


def test_offline_error_says_where_to_put_files(isolated, monkeypatch):
    def offline(url):
        raise urllib.error.URLError("Name or service not known")

    store.set_fetcher(offline)
    with pytest.raises(DatasetNotFoundError) as err:
        mnist.load_data()
    message = str(err.value)
    for needle in ("CNNFAST_DATA", str(isolated / "cache" / "cnnfast" / "mnist"),
                   str(isolated / "debian" / "mnist"), "train-images-idx3-ubyte.gz",
                   mnist.SHA256["train-images-idx3-ubyte.gz"], "Name or service not known"):
        assert needle in message
    assert not (isolated / "cache" / "cnnfast" / "mnist").exists() or not any(
        (isolated / "cache" / "cnnfast" / "mnist").iterdir())


def test_download_disabled(isolated, monkeypatch):
    with pytest.raises(DatasetNotFoundError, match="download disabled"):
        fashion_mnist.load_data(download=False)
    monkeypatch.setenv("CNNFAST_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError, match="CNNFAST_OFFLINE"):
        cifar10.load_data()


def test_urllib_fetcher_with_file_url(isolated, monkeypatch):
    source = isolated / "served.bin"
    source.write_bytes(b"x" * 3_000_000)  # several 1 MiB chunks
    store.set_fetcher(None)
    remote = store.RemoteFile("served.bin", hashlib.sha256(source.read_bytes()).hexdigest(),
                              (source.as_uri(),))
    path = store.download(remote, isolated / "dl", quiet=True)
    assert path.read_bytes() == source.read_bytes()


def test_cifar_download_extracts_into_cache(isolated, monkeypatch, small_cifar):
    archive = cifar_tarball(small_cifar)
    monkeypatch.setattr(cifar10, "ARCHIVE", store.RemoteFile(
        "cifar-10-binary.tar.gz", hashlib.sha256(archive).hexdigest(), ("https://cifar.invalid/a.tgz",)))
    store.set_fetcher(lambda url: [archive])
    check_cifar(cifar10.load_data(), small_cifar)
    cache = isolated / "cache" / "cnnfast" / "cifar10"
    assert sorted(p.name for p in cache.iterdir()) == sorted(cifar10.BATCH_FILES)


def test_published_checksums_are_well_formed():
    values = [*mnist.SHA256.values(), *fashion_mnist.SHA256.values(), cifar10.ARCHIVE.sha256]
    assert len(set(values)) == 9
    assert all(len(v) == 64 and int(v, 16) >= 0 and v == v.lower() for v in values)
    assert all(r.urls[0].startswith("https://") for r in mnist.REMOTES + fashion_mnist.REMOTES)


# -- real files ---------------------------------------------------------------------------------
def test_real_mnist():
    root = SHARED / "mnist"
    if not (root / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"real MNIST not found at {root} (../shared/datasets/mnist)")
    (x_train, y_train), (x_test, y_test) = mnist.load_data(path=root)
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    assert x_train.dtype == y_train.dtype == np.uint8
    # md5 of the decompressed official files (shared/datasets/README.md): the locally
    # recompressed .gz files are read without any .gz checksum.
    header = struct.pack(">HBB3I", 0, 8, 3, 60000, 28, 28)
    assert hashlib.md5(header + x_train.tobytes()).hexdigest() == "6bbc9ace898e44ae57da46a324031adb"
    header = struct.pack(">HBBI", 0, 8, 1, 10000)
    assert hashlib.md5(header + y_test.tobytes()).hexdigest() == "27ae3e4e09519cfbb04c329615203637"
    assert list(y_train[:10]) == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]


def test_real_fashion_mnist_from_debian(isolated, monkeypatch):
    if not (DEBIAN_FASHION / "train-images-idx3-ubyte.gz").exists():
        pytest.skip(f"Fashion-MNIST not installed at {DEBIAN_FASHION} (apt-get install dataset-fashion-mnist)")
    monkeypatch.setattr(store, "DEBIAN_ROOT", DEBIAN_FASHION.parent)
    (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == y_train.dtype == np.uint8
    assert list(y_train[:10]) == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
    np.testing.assert_array_equal(np.bincount(y_train), [6000] * 10)  # balanced classes
    np.testing.assert_array_equal(np.bincount(y_test), [1000] * 10)


def test_real_cifar10_sample():
    path = SHARED / "cifar10-sample" / "test_batch_first20.bin"
    if not path.exists():
        pytest.skip(f"CIFAR-10 sample not found at {path} (../shared/datasets/cifar10-sample)")
    x, y = read_cifar10_batch(path)
    assert x.shape == (20, 32, 32, 3) and x.dtype == np.uint8
    assert list(y) == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    assert 40 < x.mean() < 215 and x.std() > 20  # real photos, not padding or noise artefacts
