"""Model files: round trips of every zoo model, the exact byte layout, safetensors compatibility,
validation of corrupted files (always a ValueError, never a crash) and atomic writes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import cnnfast as cf
from cnnfast import layers as L
from cnnfast import saving

# Small inputs keep every zoo model quick to build; AlexNet keeps its 4096-wide FC layers.
ZOO = {
    "lenet5": {},
    "keras_mnist_cnn": {},
    "cifar10_simple": {},
    "alexnet": {"input_shape": (67, 67, 3), "classes": 10},
    "alexnet_grouped": {"input_shape": (67, 67, 3), "classes": 10},
    "vgg16": {"input_shape": (32, 32, 3), "classes": 10, "fc_units": 32},
    "vgg19": {"input_shape": (32, 32, 3), "classes": 10, "fc_units": 32},
}


def weights_by_name(model: cf.Sequential) -> dict[str, np.ndarray]:
    return {f"{layer.name}/{n}": w for layer in model.layers for n, w in layer.weights_.items()}


def all_layers_model() -> cf.Sequential:
    """Every serialisable layer class with non-default settings."""
    return cf.Sequential([
        L.Input((10, 10, 4)),
        L.Conv2D(8, (3, 2), strides=(1, 2), padding=(1, 0), groups=2, activation="elu",
                 kernel_regularizer=cf.regularizers.L2(1e-3), bias_regularizer="l1", name="conv"),
        L.PReLU(shared_axes=[1, 2], alpha_regularizer=cf.regularizers.L1L2(1e-4, 2e-4)),
        L.LocalResponseNormalization(depth_radius=1, bias=1.5, alpha=2e-3, beta=0.5),
        L.MaxPooling2D(3, strides=2, padding="same"),
        L.AveragePooling2D((2, 1), padding="same"),
        L.Activation("swish"),
        L.ELU(alpha=0.3),
        L.ReLU(),
        L.Dropout(0.25, seed=7),
        L.Flatten(),
        L.Dense(12, activation="tanh", use_bias=False, kernel_regularizer="l2"),
        L.Dense(5, activation="sigmoid"),
        L.Softmax(),
    ], name="everything")


def tiny_trained(seed: int = 0) -> cf.Sequential:
    """A small compiled model with optimizer state, for the corruption tests (a ~2 kB file)."""
    cf.set_seed(seed)
    model = cf.Sequential([L.Input((5, 5, 1)), L.Conv2D(2, 3, activation="relu"), L.Flatten(),
                           L.Dropout(0.5), L.Dense(3, activation="softmax")])
    model.compile(cf.optimizers.Adam(), "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(seed).standard_normal((4, 5, 5, 1)).astype(np.float32)
    model.train_on_batch(x, np.array([0, 1, 2, 1]))
    return model


@pytest.fixture(scope="module")
def zoo_files(tmp_path_factory):
    """name -> (model, path, input batch, predictions), each model saved once."""
    directory = tmp_path_factory.mktemp("zoo")
    cf.set_seed(3)
    out = {}
    for name, kwargs in ZOO.items():
        model = cf.models.get(name, **kwargs)
        x = np.random.default_rng(1).standard_normal((2,) + model.input_shape_).astype(np.float32)
        pred = model.predict(x)
        path = directory / f"{name}.cnnfast"
        model.save(path)
        out[name] = (model, path, x, pred)
    return out


# -- round trips --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_round_trip_predictions_identical(zoo_files, name):
    model, path, x, pred = zoo_files[name]
    loaded = cf.load_model(path)
    assert loaded.get_config() == model.get_config()
    assert not loaded.compiled
    for key, w in weights_by_name(model).items():
        np.testing.assert_array_equal(weights_by_name(loaded)[key], w)
    # Same weights, same kernels, same order of operations: bit-identical outputs.
    np.testing.assert_array_equal(loaded.predict(x), pred)


def test_every_layer_class_round_trips(tmp_path, rng):
    cf.set_seed(5)
    model = all_layers_model()
    for layer in model.layers:  # non-trivial values everywhere, PReLU's alpha included
        for w in layer.weights_.values():
            w[...] = rng.standard_normal(w.shape).astype(np.float32)
    model.layers[-2].trainable = False
    x = rng.standard_normal((3, 10, 10, 4)).astype(np.float32)
    model.save(tmp_path / "m.cnnfast")
    loaded = cf.load_model(tmp_path / "m.cnnfast")
    assert loaded.get_config() == model.get_config()
    assert [type(a) for a in loaded.layers] == [type(b) for b in model.layers]
    assert loaded.layers[-2].trainable is False
    conv = loaded.layers[0]
    assert (conv.kernel_regularizer.l2, conv.bias_regularizer.l1) == (1e-3, 0.01)
    assert loaded.layers[1].alpha_regularizer.l2 == 2e-4
    assert loaded.layers[6].act.alpha == 0.3
    assert loaded.layers[8].seed == 7
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_from_config_builds_nothing_and_matches():
    model = all_layers_model()
    rebuilt = cf.Sequential.from_config(json.loads(json.dumps(model.get_config())))
    assert not rebuilt.built and all(not layer.weights_ for layer in rebuilt.layers)
    assert rebuilt.get_config() == model.get_config()


def test_compiled_model_loads_compiled_with_optimizer_state(tmp_path):
    model = tiny_trained()
    model.save(tmp_path / "m.cnnfast")
    loaded = cf.load_model(tmp_path / "m.cnnfast")
    assert loaded.compiled and isinstance(loaded.optimizer, cf.optimizers.Adam)
    assert loaded.loss.name == "sparse_categorical_crossentropy" and loaded.metrics == ["accuracy"]
    assert loaded.optimizer.iterations == 1
    for i, slots in model.optimizer._slots.items():
        for a, b in zip(slots, loaded.optimizer._slots[i]):
            np.testing.assert_array_equal(a, b)
    assert loaded.saved_epoch is None  # model.save records no training position
    assert not cf.load_model(tmp_path / "m.cnnfast", compile=False).compiled
    model.save(tmp_path / "w.cnnfast", include_optimizer=False)
    assert not cf.load_model(tmp_path / "w.cnnfast").compiled


def test_loading_does_not_consume_the_global_rng(zoo_files):
    cf.set_seed(11)
    before = cf.random.get_state()
    cf.load_model(zoo_files["lenet5"][1])
    assert cf.random.get_state() == before


def test_save_weights_and_load_weights(tmp_path, rng):
    cf.set_seed(1)
    a = cf.models.lenet5()
    a.save_weights(tmp_path / "w.cnnfast")
    cf.set_seed(2)
    b = cf.models.lenet5()
    b.load_weights(tmp_path / "w.cnnfast")
    x = rng.standard_normal((2, 32, 32, 1)).astype(np.float32)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))
    other = cf.models.cifar10_simple()
    before = [w.copy() for w in other.get_weights()]
    with pytest.raises(ValueError, match="missing weight tensors"):
        other.load_weights(tmp_path / "w.cnnfast")
    assert all(np.array_equal(u, v) for u, v in zip(before, other.get_weights()))


def test_nan_weights_are_stored_as_they_are(tmp_path):
    model = tiny_trained()
    kernel = model.layers[0].weights_["kernel"]
    kernel[0, 0, 0, 0] = np.nan
    kernel[1, 0, 0, 0] = np.inf
    model.save(tmp_path / "m.cnnfast")
    loaded = cf.load_model(tmp_path / "m.cnnfast")
    np.testing.assert_array_equal(loaded.layers[0].weights_["kernel"], kernel)


def test_unbuilt_model_without_input_shape_cannot_be_saved(tmp_path):
    with pytest.raises(ValueError, match="no input shape"):
        cf.Sequential([L.Dense(3)]).save(tmp_path / "m.cnnfast")


# -- byte layout and safetensors ----------------------------------------------------------------

def test_byte_layout(tmp_path):
    model = tiny_trained()
    path = tmp_path / "m.cnnfast"
    model.save(path)
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0  # padded with spaces, so the data starts 8-byte aligned
    text = raw[8:8 + n].decode("ascii")
    assert text == text.rstrip() + " " * (len(text) - len(text.rstrip()))
    header = json.loads(text)
    meta = header.pop("__metadata__")
    assert (meta["format"], meta["format_version"]) == ("cnnfast", "1")
    assert json.loads(meta["architecture"]) == model.get_config()
    assert set(json.loads(meta["optimizer"])) == {"class_name", "config", "iterations",
                                                  "slot_names", "slots"}
    # Tensors in layer order, then optimizer slots; contiguous from 0 to the end of the file.
    names = list(header)
    assert names[:4] == ["conv2d/kernel", "conv2d/bias", "dense/kernel", "dense/bias"]
    assert names[4:6] == ["optimizer/conv2d/kernel/m", "optimizer/conv2d/kernel/v"]
    position = 0
    for name in names:
        begin, end = header[name]["data_offsets"]
        assert begin == position and header[name]["dtype"] == "F32"
        position = end
    assert 8 + n + position == len(raw)
    kernel = np.frombuffer(raw, "<f4", count=2 * 9, offset=8 + n).reshape(3, 3, 1, 2)
    np.testing.assert_array_equal(kernel, model.layers[0].weights_["kernel"])


def test_safetensors_reads_our_files_identically(zoo_files, tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    for model, path, _, _ in zoo_files.values():
        tensors = st.load_file(str(path))
        expected = weights_by_name(model)
        assert set(tensors) == set(expected)
        for key, w in expected.items():
            assert tensors[key].dtype == np.float32
            np.testing.assert_array_equal(tensors[key], w)
    model = tiny_trained()
    model.save(tmp_path / "m.cnnfast")
    assert len(st.load_file(str(tmp_path / "m.cnnfast"))) == 4 + 8  # weights + Adam m, v


def test_we_read_files_written_by_safetensors(tmp_path, rng):
    st = pytest.importorskip("safetensors.numpy")
    model = tiny_trained()
    ours = tmp_path / "ours.cnnfast"
    model.save(ours)
    meta = saving.read_header(ours).metadata
    theirs = tmp_path / "theirs.safetensors"
    # safetensors orders tensors its own way; the reader must follow the offsets.
    st.save_file(dict(st.load_file(str(ours))), str(theirs), metadata=meta)
    loaded = cf.load_model(theirs)
    x = rng.standard_normal((2, 5, 5, 1)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert loaded.optimizer.iterations == 1


# -- corrupted files ----------------------------------------------------------------------------

def split(raw: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n]), raw[8 + n:]


def join(header: dict | str | bytes, data: bytes, pad: bool = True) -> bytes:
    if isinstance(header, dict):
        header = json.dumps(header)
    if isinstance(header, str):
        header = header.encode()
    if pad:
        header += b" " * (-len(header) % 8)
    return len(header).to_bytes(8, "little") + header + data


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.cnnfast"
    tiny_trained().save(path)
    return path.read_bytes()


def expect_invalid(tmp_path, raw: bytes, match: str | None = None) -> None:
    path = tmp_path / "bad.cnnfast"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=match) as err:
        cf.load_model(path)
    assert str(path) in str(err.value)


def _set_arch(h, edit):
    arch = json.loads(h["__metadata__"]["architecture"])
    edit(arch)
    h["__metadata__"]["architecture"] = json.dumps(arch)


def _set_meta(key, value):
    def edit(h):
        h["__metadata__"][key] = value
    return edit


def _tensor(name, key, value):
    def edit(h):
        h[name][key] = value
    return edit


CORRUPTIONS = {
    "no metadata": (lambda h: h.pop("__metadata__"), "no __metadata__"),
    "metadata not strings": (_set_meta("format_version", 1), "must be a string"),
    "other format": (_set_meta("format", "keras"), "format is 'keras'"),
    "future version": (_set_meta("format_version", "3"), "unsupported format_version '3'"),
    "version 2 without quantization": (_set_meta("format_version", "2"),
                                       "format_version '2' needs a quantization entry"),
    "no architecture": (lambda h: h["__metadata__"].pop("architecture"), "no architecture"),
    "architecture not JSON": (_set_meta("architecture", "{conv"), "architecture is not valid JSON"),
    "unknown layer": (lambda h: _set_arch(h, lambda a: a["layers"][0].update(class_name="Lambda")),
                      "unknown layer class"),
    "bad layer argument": (
        lambda h: _set_arch(h, lambda a: a["layers"][0]["config"].update(filters="two")),
        "invalid architecture"),
    "layer builds at construction": (
        lambda h: _set_arch(h, lambda a: a["layers"][0]["config"].update(input_shape=[9, 9, 1])),
        "input_shape"),
    "huge input dims": (lambda h: _set_arch(h, lambda a: a.update(input_shape=[2**40, 5, 1])),
                        "input_shape"),
    "wrong dtype": (_tensor("dense/bias", "dtype", "F16"), "only F32"),
    "shape not a list": (_tensor("dense/bias", "shape", 3), "shape must be a list"),
    "negative dim": (_tensor("dense/bias", "shape", [-3]), "non-negative"),
    "bool dim": (_tensor("dense/bias", "shape", [True, 3]), "non-negative"),
    "extra key": (_tensor("dense/bias", "scale", 1.0), "exactly dtype, shape and data_offsets"),
    "size mismatch": (_tensor("dense/bias", "shape", [4]), "needs 16 bytes"),
    "offsets out of range": (_tensor("dense/bias", "data_offsets", [10**12, 10**12 + 12]),
                             "outside"),
    "offsets reversed": (_tensor("dense/bias", "data_offsets", [12, 0]), "outside"),
    "overlap": (_tensor("conv2d/bias", "data_offsets", [0, 8]), "overlaps"),
    "missing tensor": (lambda h: h.pop("optimizer/dense/bias/v"), "trailing data"),
    "unexpected tensor": (lambda h: h.update(
        {"extra/w": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}), "unexpected tensors"),
    "shape against architecture": (
        lambda h: h["dense/kernel"].update(shape=[3, 18]), "architecture needs \\[18, 3\\]"),
    "unknown optimizer": (
        lambda h: h["__metadata__"].update(optimizer=h["__metadata__"]["optimizer"].replace(
            '"Adam"', '"Ftrl"')), "unknown optimizer"),
    "bad random state": (
        lambda h: h["__metadata__"].update(training=json.dumps(
            {**json.loads(h["__metadata__"]["training"]), "epoch": 1, "rng": {"x": 1}})),
        "invalid random state"),
}


@pytest.mark.parametrize("case", list(CORRUPTIONS))
def test_corrupted_header_raises_clear_error(tmp_path, tiny_file, case):
    edit, match = CORRUPTIONS[case]
    header, data = split(tiny_file)
    edit(header)
    expect_invalid(tmp_path, join(header, data), match)


def test_invalid_containers(tmp_path, tiny_file):
    header, data = split(tiny_file)
    text = json.dumps(header)
    expect_invalid(tmp_path, b"", "shorter than the 8-byte")
    expect_invalid(tmp_path, b"\x10\x00\x00", "shorter than the 8-byte")
    expect_invalid(tmp_path, (2**60).to_bytes(8, "little") + tiny_file[8:], "exceeds the limit")
    expect_invalid(tmp_path, (len(tiny_file)).to_bytes(8, "little") + tiny_file[8:],
                   "larger than the")
    expect_invalid(tmp_path, join(b"\xff\xfe{}", data), "not UTF-8")
    expect_invalid(tmp_path, join("[1, 2]", data), "not a JSON object")
    expect_invalid(tmp_path, join(text[:-1] + ', "dense/bias": 1}', data), "duplicate JSON key")
    expect_invalid(tmp_path, join(text.replace('"shape": [3]', '"shape": [NaN]'), data),
                   "NaN is not allowed")
    expect_invalid(tmp_path, join('{"a": ' + "[" * 100_000, data), "not valid JSON")
    expect_invalid(tmp_path, tiny_file + b"\x00", "trailing data")
    expect_invalid(tmp_path, tiny_file[:-4], "outside the")


def test_truncation_raises(tmp_path, tiny_file):
    path = tmp_path / "cut.cnnfast"
    # Every offset in the length field and around the header's end and the file's end, and
    # a sample of the rest (every offset takes ~1 s on a busy disk for nothing new).
    n = 8 + int.from_bytes(tiny_file[:8], "little")
    cuts = set(range(24)) | set(range(n - 16, n + 16)) | set(range(len(tiny_file) - 16,
                                                                          len(tiny_file)))
    cuts |= set(np.random.default_rng(0).integers(0, len(tiny_file), 200).tolist())
    for cut in sorted(cuts):
        path.write_bytes(tiny_file[:cut])
        with pytest.raises(ValueError):
            cf.load_model(path)


def test_random_corruptions_never_crash(tmp_path, tiny_file):
    """Bit flips, byte overwrites and random files: a ValueError or, where the change is
    harmless (a weight's bits, a flip JSON still accepts), a model that loads and predicts."""
    rng = np.random.default_rng(0)
    n = int.from_bytes(tiny_file[:8], "little")
    path = tmp_path / "c.cnnfast"
    x = np.ones((1, 5, 5, 1), np.float32)
    failures = 0
    for trial in range(400):
        raw = bytearray(tiny_file)
        kind = trial % 4
        if kind == 0:  # one bit in the header (length field included)
            pos = int(rng.integers(0, 8 + n))
            raw[pos] ^= 1 << int(rng.integers(0, 8))
        elif kind == 1:  # a few random bytes anywhere
            for pos in rng.integers(0, len(raw), size=int(rng.integers(1, 4))):
                raw[pos] = int(rng.integers(0, 256))
        elif kind == 2:  # random garbage of random length
            raw = bytearray(rng.integers(0, 256, size=int(rng.integers(0, 64)), dtype=np.uint8))
        else:  # a plausible length field followed by garbage
            raw = bytearray(int(rng.integers(0, 200)).to_bytes(8, "little")) + \
                bytearray(rng.integers(0, 256, size=200, dtype=np.uint8))
        path.write_bytes(bytes(raw))
        try:
            model = cf.load_model(path, restore_training_state=False)
        except ValueError:
            failures += 1
            continue
        model.predict(x)
    assert failures > 300  # almost every corruption is detected


# -- atomic writes ------------------------------------------------------------------------------

def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "m.cnnfast"
    old = tiny_trained(0)
    old.save(path)
    before = path.read_bytes()

    calls = []

    def failing_write(f, array):
        calls.append(1)
        if len(calls) == 3:
            f.write(b"\x00" * 5)  # part of a tensor, then the disk "fails"
            raise OSError(28, "No space left on device")
        f.write(np.ascontiguousarray(array, "<f4").tobytes())

    monkeypatch.setattr(saving, "_write_array", failing_write)
    with pytest.raises(OSError, match="No space left"):
        tiny_trained(1).save(path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.cnnfast"]

    # A failure after the data is written (fsync, or the rename itself) is no different.
    monkeypatch.undo()
    for name in ("fsync", "replace"):
        def fail(*args, name=name):
            raise OSError(5, f"{name}: Input/output error")

        with monkeypatch.context() as m:
            m.setattr(saving.os, name, fail)
            with pytest.raises(OSError, match=name):
                tiny_trained(1).save(path)
        assert path.read_bytes() == before
        assert os.listdir(tmp_path) == ["m.cnnfast"]


def test_successful_write_replaces_and_uses_umask_permissions(tmp_path):
    path = tmp_path / "m.cnnfast"
    tiny_trained(0).save(path)
    tiny_trained(1).save(path)
    assert os.listdir(tmp_path) == ["m.cnnfast"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_extra_metadata_round_trips_and_reserved_keys_are_refused(tmp_path):
    model = cf.Sequential([L.Input((4, 4, 1)), L.Flatten(), L.Dense(3)])
    path = tmp_path / "m.cnnfast"
    saving.save_model(model, path, metadata={"class_names": '["a","b","c"]'})
    assert saving.read_header(path).metadata["class_names"] == '["a","b","c"]'
    cf.load_model(path)  # extra keys do not disturb loading
    for bad in ({"architecture": "{}"}, {"x": 1}, {3: "y"}):
        with pytest.raises(ValueError, match="metadata must map str to str"):
            saving.save_model(model, tmp_path / "bad.cnnfast", metadata=bad)
    assert not (tmp_path / "bad.cnnfast").exists()


def test_batchnorm_and_spatial_layers_round_trip_and_resume(tmp_path):
    """Issue 19's layers in a model file: config, every weight (the moving statistics too) and
    the optimizer slots of the trainable ones only; training resumes bit for bit."""
    cf.set_seed(2)
    model = cf.Sequential([
        L.Input((8, 7, 3)), L.ZeroPadding2D(((1, 0), (2, 1))), L.Conv2D(4, 3),
        L.BatchNormalization(momentum=0.9, epsilon=1e-2), L.ReLU(), L.UpSampling2D((1, 2)),
        L.Cropping2D(1), L.BatchNormalization(center=False), L.GlobalMaxPooling2D(),
        L.Reshape((2, 2)), L.Flatten(), L.Dense(3, activation="softmax")])
    model.get_layer("batch_normalization_1").trainable = False
    model.compile(cf.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 8, 7, 3)).astype(np.float32)
    y = rng.integers(0, 3, 12)
    model.fit(x, y, epochs=1, batch_size=6, verbose=0)
    path = tmp_path / "bn.cnnfast"
    model.save(path)
    loaded = cf.load_model(path)
    assert loaded.get_config() == model.get_config()
    bn = loaded.layers[2]
    assert (bn.momentum, bn.epsilon) == (0.9, 1e-2)
    assert not loaded.layers[6].trainable and list(loaded.layers[6].weights_) == [
        "gamma", "moving_mean", "moving_variance"]
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(model.optimizer.get_state(), loaded.optimizer.get_state()):
        np.testing.assert_array_equal(a, b)
    model.fit(x, y, epochs=1, batch_size=6, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, batch_size=6, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_array_equal(a, b)
