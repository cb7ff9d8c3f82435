"""Fuzzing harness for cnnfast's file parsers, driven by hypothesis over bytes.

Targets (each takes bytes and must either accept them or raise the documented ValueError; any
other exception, a crash or a hang is a finding):

- ``model_py``: the Python model-file loader, ``cnnfast.load_model``;
- ``model_c``: the C++ reader behind the C API (``parse_model_bytes`` in
  src/cpp/capi/model_file.cpp), through ``cnnfast_model_load`` with ctypes; a model that loads
  also runs one prediction. Run in a child process by tests/test_fuzz.py, so a crash is reported
  rather than fatal; the input being tried is kept in ``$CNNFAST_FUZZ_DIR/current.bin``;
- ``idx`` / ``cifar``: ``cnnfast.datasets.idx.parse_idx`` and ``cifar.parse_cifar10_batch``.

Inputs are derived from valid files: byte-level mutations (bit flips, overwrites, insertions,
deletions, truncation, length-field edits) and structure-aware ones that rewrite one JSON value
of a model file's header or architecture (to huge, negative, fractional, wrongly typed values)
and re-encode it with a correct length prefix, which reaches the deep validation code.

CI runs a few hundred examples per target (tests/test_fuzz.py). On demand::

    CNNFAST_FUZZ_EXAMPLES=100000 python tests/fuzz/fuzz_parsers.py model_c model_py idx cifar
"""

from __future__ import annotations

import copy
import json
import os
import pathlib
import struct
import sys
import tempfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = pathlib.Path(__file__).resolve().parents[2]
STATS: dict[str, int] = {}

# -- seed files ---------------------------------------------------------------------------------


def seed_model_bytes() -> bytes:
    """A small model with every layer kind the reader knows, compiled with Adam (optimizer
    tensors in the file too)."""
    import cnnfast as cf

    L = cf.layers
    cf.set_seed(0)
    model = cf.Sequential([
        L.Input((6, 6, 2)), L.Conv2D(4, 3, padding="same", activation="relu"),
        L.LocalResponseNormalization(1), L.MaxPooling2D(2),
        L.Conv2D(4, (2, 1), groups=2, padding=(1, 0), activation="elu"),
        L.AveragePooling2D(2, padding="same"), L.PReLU(shared_axes=[1, 2]), L.ELU(0.5),
        L.Activation("tanh"), L.ReLU(), L.Flatten(), L.Dropout(0.5),
        L.Dense(5, activation="swish"), L.Dense(3), L.Softmax(),
    ])
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    model.train_on_batch(np.zeros((2, 6, 6, 2), np.float32), np.eye(3, dtype=np.float32)[:2])
    with tempfile.TemporaryDirectory() as d:
        path = pathlib.Path(d) / "seed.cnnfast"
        model.save(path)
        return path.read_bytes()


def seed_idx_bytes() -> bytes:
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    return bytes([0, 0, 0x08, 3]) + struct.pack(">3I", *data.shape) + data.tobytes()


def seed_idx_float_bytes() -> bytes:
    data = np.linspace(-1, 1, 6, dtype=">f4")
    return bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 6) + data.tobytes()


def seed_cifar_bytes() -> bytes:
    return (bytes([7]) + bytes(range(256)) * 12) * 2


# -- mutations ----------------------------------------------------------------------------------

HOSTILE_VALUES = [0, -1, 1, 2, 3, 2**31 - 1, 2**31, 2**40, 2**62, 2**63 - 1, 2**64, -2**63,
                  0.5, 1e308, -0.0, "", "x", "same", "valid", "F16", "relu", "bogus", None, True,
                  False, [], {}, [0], [1, 1], [2**31, 2**31], [-1, 3], [1, 2, 3], ["a", "b"],
                  {"a": 1}]


@st.composite
def byte_mutants(draw, seed: bytes):
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        if not data:
            break
        # Half of the edits land in the first 4 KiB (headers: where the parsing is).
        span = len(data) if draw(st.booleans()) else min(len(data), 4096)
        pos = draw(st.integers(0, span - 1))
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "length",
                                   "digit"]))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        elif op == "length" and len(data) >= 8:
            data[0:8] = struct.pack("<Q", draw(st.sampled_from(
                [0, 1, 2, len(data) - 8, len(data) - 7, len(data), 2**32, 2**63, 2**64 - 1])))
        elif op == "digit":
            data[pos] = ord(draw(st.sampled_from(list('0123456789-.e"{}[]:,'))))
    return bytes(data)


def _leaves(obj, path=()):
    """Paths to every value in a JSON tree (containers included)."""
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, path + (i,))


def _replace(obj, path, value, delete=False):
    if not path:
        return value
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


@st.composite
def json_mutants(draw, seed: bytes):
    """Rewrite one value of the header JSON or of the architecture JSON inside it."""
    n = struct.unpack("<Q", seed[:8])[0]
    header = json.loads(seed[8:8 + n])
    data = seed[8 + n:]
    in_arch = draw(st.booleans())
    tree = json.loads(header["__metadata__"]["architecture"]) if in_arch else header
    paths = list(_leaves(tree))
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_leaves(tree))
        path = draw(st.sampled_from(paths))
        delete = bool(path) and draw(st.integers(0, 5)) == 0
        value = copy.deepcopy(draw(st.sampled_from(HOSTILE_VALUES)))  # never alias the table
        tree = _replace(tree, path, value, delete)
    if in_arch:
        if not isinstance(header.get("__metadata__"), dict):
            return seed
        header["__metadata__"]["architecture"] = json.dumps(tree)
    else:
        header = tree
    text = json.dumps(header).encode()
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return struct.pack("<Q", len(text)) + text + data


def model_inputs(seed: bytes):
    return st.one_of(byte_mutants(seed), json_mutants(seed), st.binary(max_size=64))


# -- targets ------------------------------------------------------------------------------------

def _count(name: str, outcome: str) -> None:
    STATS[f"{name} {outcome}"] = STATS.get(f"{name} {outcome}", 0) + 1


def target_model_py(data: bytes, folder: pathlib.Path) -> None:
    import cnnfast as cf

    path = folder / "m.cnnfast"
    path.write_bytes(data)
    try:
        model = cf.load_model(path)
    except ValueError as e:
        assert str(path) in str(e), e
        _count("model_py", "refused")
        return
    _count("model_py", "loaded")
    shape = model.input_shape_
    if int(np.prod(shape)) <= 1 << 16 and int(np.prod(model.output_shape_)) <= 1 << 16:
        model.predict(np.zeros((1,) + shape, np.float32))


class CApi:
    def __init__(self) -> None:
        import ctypes

        import cnnfast

        lib = ctypes.CDLL(str(pathlib.Path(cnnfast.__file__).parent / "lib" / "libcnnfast.so"))
        lib.cnnfast_model_load.restype = ctypes.c_void_p
        lib.cnnfast_model_load.argtypes = [ctypes.c_char_p]
        lib.cnnfast_last_error.restype = ctypes.c_char_p
        lib.cnnfast_model_free.argtypes = [ctypes.c_void_p]
        for f in ("input", "output"):
            fn = getattr(lib, f"cnnfast_model_{f}_size")
            fn.argtypes = [ctypes.c_void_p]
            fn.restype = ctypes.c_int64
        lib.cnnfast_model_predict.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                              ctypes.c_void_p]
        self.lib = lib


def target_model_c(data: bytes, folder: pathlib.Path, api: CApi) -> None:
    lib = api.lib
    path = folder / "current.bin"  # left behind if the process dies: the crashing input
    path.write_bytes(data)
    model = lib.cnnfast_model_load(str(path).encode())
    if not model:
        msg = lib.cnnfast_last_error().decode(errors="replace")
        assert str(path) in msg and len(msg) > len(str(path)) + 5, msg
        _count("model_c", "refused")
        return
    try:
        _count("model_c", "loaded")
        n_in, n_out = lib.cnnfast_model_input_size(model), lib.cnnfast_model_output_size(model)
        assert n_in > 0 and n_out > 0, (n_in, n_out)
        if n_in <= 1 << 16 and n_out <= 1 << 16:
            x = np.zeros(n_in, np.float32)
            y = np.zeros(n_out, np.float32)
            assert lib.cnnfast_model_predict(model, x.ctypes.data, 1, y.ctypes.data) == 0, \
                lib.cnnfast_last_error()
    finally:
        lib.cnnfast_model_free(model)


def target_idx(data: bytes) -> None:
    from cnnfast.datasets import idx

    try:
        arr = idx.parse_idx(data, "fuzz.idx")
    except ValueError as e:
        assert "fuzz.idx" in str(e)
        _count("idx", "refused")
        return
    _count("idx", "loaded")
    assert arr.nbytes <= len(data)


def target_cifar(data: bytes) -> None:
    from cnnfast.datasets import cifar

    try:
        x, y = cifar.parse_cifar10_batch(data, "fuzz.bin")
    except ValueError as e:
        assert "fuzz.bin" in str(e)
        _count("cifar", "refused")
        return
    _count("cifar", "loaded")
    assert x.shape == (len(y), 32, 32, 3) and int(y.max()) < 10


# -- runners ------------------------------------------------------------------------------------

def examples(default: int) -> int:
    return int(os.environ.get("CNNFAST_FUZZ_EXAMPLES", default))


def _settings(n: int):
    return settings(max_examples=n, deadline=None, database=None, derandomize=False,
                    suppress_health_check=list(HealthCheck), print_blob=True)


def run(target: str, n: int, folder: pathlib.Path) -> int:
    """Run `n` examples of one target; returns how many ran."""
    ran = [0]
    if target in ("model_py", "model_c"):
        seed = seed_model_bytes()
        api = CApi() if target == "model_c" else None

        @_settings(n)
        @given(model_inputs(seed))
        def fuzz(data):
            ran[0] += 1
            if api is None:
                target_model_py(data, folder)
            else:
                target_model_c(data, folder, api)
    elif target == "idx":
        @_settings(n)
        @given(st.one_of(byte_mutants(seed_idx_bytes()), byte_mutants(seed_idx_float_bytes()),
                         st.binary(max_size=64)))
        def fuzz(data):
            ran[0] += 1
            target_idx(data)
    elif target == "cifar":
        @_settings(n)
        @given(st.one_of(byte_mutants(seed_cifar_bytes()), st.binary(max_size=64)))
        def fuzz(data):
            ran[0] += 1
            target_cifar(data)
    else:
        raise ValueError(f"unknown target {target!r}")
    fuzz()
    return ran[0]


def main(argv: list[str]) -> int:
    targets = argv or ["model_c", "model_py", "idx", "cifar"]
    n = examples(2000)
    folder = pathlib.Path(os.environ.get("CNNFAST_FUZZ_DIR") or tempfile.mkdtemp(prefix="fuzz"))
    folder.mkdir(parents=True, exist_ok=True)
    for target in targets:
        ran = run(target, n, folder)
        print(f"fuzz {target}: {ran} inputs", flush=True)
    print("outcomes: " + json.dumps(STATS, sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.append(str(ROOT))  # after $PYTHONPATH: an installed cnnfast wins over the sources
    sys.exit(main(sys.argv[1:]))
