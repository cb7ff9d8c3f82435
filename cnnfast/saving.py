"""Model files: architecture, weights and training state in one safetensors-layout file.

``model.save(path)`` / :func:`load_model` write and read one file that any safetensors reader
can open (``safetensors.numpy.load_file`` returns the weights), that a small C or C++ reader
can parse without Python, and that never involves pickle. The layout, byte for byte, is
specified in ``docs/model-format.md``; in short::

    [8 bytes]  N, unsigned 64-bit little-endian: length of the header
    [N bytes]  UTF-8 JSON object (ASCII in files cnnfast writes), right-padded with spaces so
               that N is a multiple of 8:
               {"__metadata__": {"format": "cnnfast", "format_version": "1",
                                 "architecture": "<JSON of model.get_config()>",
                                 "optimizer": "<JSON>",   (optional)
                                 "training": "<JSON>"},   (optional)
                "<layer>/<weight>": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ..}
    [rest]     the tensors' bytes, float32 little-endian, row-major; offsets are relative to
               the first byte after the header; the tensors tile the rest exactly (no gaps,
               no overlaps, nothing after the last one)

Writes are atomic (temporary file in the same directory, fsync, rename). Reading validates
the whole header against the file size and the rebuilt architecture before creating any
weight, and reports every problem as a ValueError naming the file.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from cnnfast import layers as layers_module
from cnnfast import losses as losses_module
from cnnfast import metrics as metrics_module
from cnnfast import mixed_precision
from cnnfast import optimizers as optimizers_module
from cnnfast import random as random_module
from cnnfast.model import Model, Sequential

FORMAT = "cnnfast"
FORMAT_VERSION = "1"
# Quantized models (cnnfast.quantize; docs/model-format.md, section 8): int8 and int32 tensors
# and the "quantization" metadata entry, which version-1 readers must refuse.
QUANTIZED_FORMAT_VERSION = "2"
# Bytes per element of each tensor dtype; version 1 has F32 only.
DTYPE_SIZES = {"F32": 4, "I32": 4, "I8": 1}
_NUMPY_DTYPES = {"F32": np.dtype("<f4"), "I32": np.dtype("<i4"), "I8": np.dtype("i1")}
# The safetensors library's own limit; a real header (architecture + names) is a few kB.
MAX_HEADER_BYTES = 100_000_000
# Dimensions must fit the int32 sizes of the C++ kernels.
MAX_DIM = 2**31 - 1
OPTIMIZER_PREFIX = "optimizer/"
# __metadata__ keys that save_model writes itself.
RESERVED_METADATA = frozenset({"format", "format_version", "architecture", "optimizer", "training",
                               "quantization"})

_OPTIMIZERS: dict[str, type[optimizers_module.Optimizer]] = {
    cls.__name__: cls for cls in optimizers_module._CLASSES
}


# -- writing --------------------------------------------------------------------------------

def save_model(model: Sequential, filepath: str | os.PathLike, include_optimizer: bool = True,
               epoch: int | None = None, step: int | None = None,
               metadata: dict[str, str] | None = None) -> None:
    """Write `model` to `filepath` atomically: architecture, weights and, when the model is
    compiled and `include_optimizer` is true, loss, metrics and optimizer state.

    Parameters
    ----------
    model : Sequential
        A model with a known input shape (it is built if needed).
    filepath : str or path-like
        Destination; an existing file is replaced only once the new one is complete.
    include_optimizer : bool
        Store the compile settings and the optimizer's state (slots and iteration count).
    epoch : int, optional
        Record a training position for exact resume: the number of completed epochs (the
        ``initial_epoch`` to pass to ``fit``) together with the state of ``cnnfast.random``
        and of the dropout layers. Written by :class:`cnnfast.callbacks.ModelCheckpoint`.
    step : int, optional
        With `epoch`: the file was written after `step` batches of epoch `epoch` (0-based);
        such a position cannot be resumed exactly with ``fit(initial_epoch=...)``.
    metadata : dict of str to str, optional
        Extra entries for the header's ``__metadata__`` (``cnnfast train`` records the class
        names and the input scaling there for ``cnnfast predict``); read them back with
        ``read_header(path).metadata``. The keys cnnfast itself writes are refused.
    """
    if not isinstance(model, Model):
        raise TypeError(f"save_model: expected a cnnfast Model or Sequential, got "
                        f"{type(model).__name__}")
    check_save_path(filepath, "save_model")
    if model.input_shape_ is None:
        raise ValueError("save_model: the model has no input shape; build it or start with Input()")
    model._require_built()
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not isinstance(value, str) or key in RESERVED_METADATA:
            raise ValueError(f"save_model: metadata must map str to str, without the keys "
                             f"{sorted(RESERVED_METADATA)}; got {key!r}: {type(value).__name__}")
    header = {**(metadata or {}), "format": FORMAT, "format_version": FORMAT_VERSION,
              "architecture": _dumps(model.get_config())}
    tensors: list[tuple[str, np.ndarray]] = [
        (f"{layer.name}/{name}", w) for layer in model.layers for name, w in layer.weights_.items()
    ]
    training: dict[str, Any] = {}
    if include_optimizer and getattr(model, "compiled", False):
        compile_config = _compile_config(model)
        if compile_config is not None:
            training.update(compile_config)
            optimizer_config, slot_tensors = _optimizer_state(model)
            header["optimizer"] = _dumps(optimizer_config)
            tensors += slot_tensors
    if epoch is not None:
        training["epoch"] = int(epoch)
        if step is not None:
            training["step"] = int(step)
        training["rng"] = random_module.get_state()
        training["dropout_calls"] = {layer.name: layer._calls for layer in model.layers
                                     if isinstance(layer, layers_module.Dropout)}
    if training:
        header["training"] = _dumps(training)
    names = [n for n, _ in tensors]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"save_model: tensor names collide: {dup} (rename the layers)")
    _write_atomic(filepath, lambda f: _write_safetensors(f, header, tensors))


class SavePathIsDirectory(ValueError, IsADirectoryError):
    """``model.save`` was given an existing folder (a ValueError, and an IsADirectoryError)."""


_FOREIGN_SUFFIXES = {".h5": "HDF5 (Keras 2)", ".hdf5": "HDF5 (Keras 2)", ".keras": "Keras 3"}


def check_save_path(filepath: str | os.PathLike, what: str = "save_model") -> None:
    """Refuse, before anything is written, a destination that cannot mean a cnnfast file: an
    existing folder, or a Keras file name (``.h5``, ``.keras``) that would hold cnnfast's own
    format under another format's name.

    Raises
    ------
    ValueError
        :class:`SavePathIsDirectory` for a folder; a plain ValueError for a Keras suffix.
    """
    path = os.fspath(filepath)
    if os.path.isdir(path):
        raise SavePathIsDirectory(
            f"{what}: {path!r} is a folder; cnnfast saves a model as one file, e.g. "
            f"{os.path.join(path, 'model.cnnfast')!r}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix in _FOREIGN_SUFFIXES:
        raise ValueError(
            f"{what}: {path!r} names a {_FOREIGN_SUFFIXES[suffix]} file, but cnnfast writes its "
            "own single-file format (the safetensors layout: weights plus architecture), which "
            f"Keras cannot read; use the .cnnfast suffix (e.g. {path[:-len(suffix)] + '.cnnfast'!r})."
            " For interchange with other frameworks, export ONNX with cf.export_onnx(model, "
            "path)")


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _compile_config(model: Sequential) -> dict[str, Any] | None:
    """Loss and metrics by name, or None (with a warning) when they cannot be stored by name."""
    loss, optimizer = model.loss, model.optimizer
    try:
        loss_record = losses_module.serialize(loss)
    except ValueError:
        warnings.warn(f"save_model: loss {type(loss).__name__} cannot be stored by name; the "
                      "file will load as an uncompiled model", stacklevel=3)
        return None
    if _OPTIMIZERS.get(type(optimizer).__name__) is not type(optimizer):
        warnings.warn(f"save_model: optimizer {type(optimizer).__name__} cannot be stored; the "
                      "file will load as an uncompiled model", stacklevel=3)
        return None
    try:
        metrics = [metrics_module.serialize(m) for m in model._metric_objects]
    except ValueError as err:
        warnings.warn(f"save_model: {err}; the file will load as an uncompiled model",
                      stacklevel=3)
        return None
    record = {"loss": loss_record, "metrics": metrics}
    if model.precision != "float32":  # files of float32 models stay as they were
        record["precision"] = model.precision
    return record


def _trainable_names(model: Sequential) -> list[tuple[str, np.ndarray]]:
    """(tensor name, array) of the trainable parameters, in the optimizer's index order."""
    return [(f"{layer.name}/{name}", layer.weights_[name]) for layer in model.layers
            for name in layer.trainable_names()]


def _optimizer_state(model: Sequential) -> tuple[dict[str, Any], list[tuple[str, np.ndarray]]]:
    optimizer = model.optimizer
    params = _trainable_names(model)
    slot_names = list(optimizer.slot_names)
    with_slots, tensors = [], []
    for index in sorted(optimizer._slots):
        arrays = optimizer._slots[index]
        # Slots of a parameter that no longer exists (layers frozen since) are dropped.
        if index >= len(params) or len(arrays) != len(slot_names) or \
                any(a.shape != params[index][1].shape for a in arrays):
            continue
        name = params[index][0]
        with_slots.append(name)
        tensors += [(f"{OPTIMIZER_PREFIX}{name}/{s}", a) for s, a in zip(slot_names, arrays)]
    config = {"class_name": type(optimizer).__name__, "config": optimizer.get_config(),
              "iterations": int(optimizer.iterations), "slot_names": slot_names,
              "slots": with_slots}
    return config, tensors


def _dtype_name(array: np.ndarray) -> str:
    """The file dtype of an array: I8 and I32 for int8 and int32 arrays, F32 for the rest."""
    return {np.dtype(np.int8): "I8", np.dtype(np.int32): "I32"}.get(array.dtype, "F32")


def _write_array(f: BinaryIO, array: np.ndarray) -> None:
    data = np.ascontiguousarray(array, _NUMPY_DTYPES[_dtype_name(array)])
    f.write(memoryview(data).cast("B"))


def _write_safetensors(f: BinaryIO, metadata: dict[str, str],
                       tensors: list[tuple[str, np.ndarray]]) -> None:
    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, array in tensors:
        dtype = _dtype_name(array)
        end = offset + array.size * DTYPE_SIZES[dtype]
        header[name] = {"dtype": dtype, "shape": [int(s) for s in array.shape],
                        "data_offsets": [offset, end]}
        offset = end
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    raw = text.encode("ascii")
    raw += b" " * (-len(raw) % 8)  # safetensors pads so the data starts 8-byte aligned
    f.write(len(raw).to_bytes(8, "little"))
    f.write(raw)
    for _, array in tensors:
        _write_array(f, array)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_atomic(filepath: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Run `write` on a temporary file beside `filepath`, fsync it, then rename it over
    `filepath`. On any error the temporary file is removed and `filepath` is untouched.
    On a rank other than 0 of a data-parallel run it writes nothing: rank 0 writes the file
    (every rank holds the same model)."""
    from cnnfast.distributed import writes_suppressed

    if writes_suppressed():
        return
    path = os.fspath(filepath)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # Make the rename itself durable (not possible on every platform / file system).
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


# -- reading the container ------------------------------------------------------------------

@dataclass
class TensorEntry:
    name: str
    shape: tuple[int, ...]
    begin: int  # byte offsets relative to the start of the data section
    end: int
    dtype: str = "F32"


@dataclass
class FileHeader:
    """The validated header of a model file."""

    path: str
    metadata: dict[str, str]
    tensors: dict[str, TensorEntry]  # in file order
    data_start: int  # absolute byte offset of the data section
    file_size: int


class _Invalid(ValueError):
    pass


def _fail(what: str) -> None:
    raise _Invalid(what)


def _reject_constant(name: str) -> None:
    _fail(f"JSON constant {name} is not allowed")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _fail(f"JSON number {text} is out of range")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        _fail(f"duplicate JSON key {dup!r}")
    return result


def _loads(text: str, what: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant,
                          parse_float=_finite_float)
    except _Invalid as err:
        raise _Invalid(f"{what}: {err}") from None
    except (ValueError, RecursionError) as err:
        raise _Invalid(f"{what} is not valid JSON: {err}") from None


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_ZIP_MAGIC = b"PK\x03\x04"


def _foreign_format(f: BinaryIO, path: str) -> str | None:
    """What another known format a file is in (HDF5, a Keras zip, ONNX), or None.

    A cnnfast file starts with an 8-byte little-endian header length and then "{"; an ONNX
    file is a protobuf ModelProto whose first field (ir_version, tag 0x08) comes first."""
    start = f.read(16)
    f.seek(0)
    if start.startswith(_HDF5_MAGIC):
        return "an HDF5 file (a Keras 2 .h5 model?)"
    if start.startswith(_ZIP_MAGIC):
        return "a ZIP archive (a Keras 3 .keras model?)"
    if len(start) > 8 and start[8:9] == b"{":
        return None
    # ir_version = 1..127 as a one-byte varint, then the tag of a later ModelProto field
    # (producer_name, producer_version, domain, model_version, doc_string, graph, opset_import).
    protobuf = (len(start) >= 3 and start[0] == 0x08 and 0 < start[1] < 0x80
                and start[2] in (0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42))
    if protobuf or path.lower().endswith(".onnx"):
        return "an ONNX model"
    return None


def _refuse_foreign(f: BinaryIO, path: str) -> None:
    kind = _foreign_format(f, path)
    if kind is not None:
        hint = (" Run ONNX models with onnxruntime." if "ONNX" in kind else
                " Rebuild the model with cnnfast layers and copy the weights with set_weights.")
        raise ValueError(f"{path}: this is {kind}; cnnfast loads only its own model files "
                         f"(written by model.save).{hint}")


def read_header(filepath: str | os.PathLike) -> FileHeader:
    """Read and validate the container of a model file (header and byte ranges, not the
    architecture). Raises ValueError naming the file on any inconsistency."""
    path = os.fspath(filepath)
    with open(path, "rb") as f:
        _refuse_foreign(f, path)
        try:
            return _read_header(f, path)
        except _Invalid as err:
            raise ValueError(f"{path}: not a valid cnnfast model file: {err}") from None


def _read_header(f: BinaryIO, path: str) -> FileHeader:
    size = os.fstat(f.fileno()).st_size
    if size < 8:
        _fail(f"file is {size} bytes, shorter than the 8-byte header length")
    n = int.from_bytes(f.read(8), "little")
    if n > MAX_HEADER_BYTES:
        _fail(f"header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes")
    if n > size - 8:
        _fail(f"header length {n} is larger than the {size - 8} bytes after the length field")
    raw = f.read(n)
    if len(raw) != n:
        _fail(f"file ended inside the {n}-byte header")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        _fail(f"header is not UTF-8: {err}")
    if not text.lstrip().startswith("{"):
        _fail("header is not a JSON object")
    header = _loads(text, "header")
    if not isinstance(header, dict):
        _fail("header is not a JSON object")
    metadata = header.pop("__metadata__", None)
    if not isinstance(metadata, dict):
        _fail("header has no __metadata__ object")
    for key, value in metadata.items():
        if not isinstance(value, str):
            _fail(f"__metadata__[{key!r}] must be a string, got {type(value).__name__}")
    if metadata.get("format") != FORMAT:
        _fail(f"__metadata__ format is {metadata.get('format')!r}, expected {FORMAT!r}")
    version = metadata.get("format_version")
    if version not in (FORMAT_VERSION, QUANTIZED_FORMAT_VERSION):
        _fail(f"unsupported format_version {version!r} "
              f"(this cnnfast reads versions {FORMAT_VERSION!r} and {QUANTIZED_FORMAT_VERSION!r})")
    if (version == QUANTIZED_FORMAT_VERSION) != ("quantization" in metadata):
        _fail(f"format_version {version!r} " + ("needs" if version == QUANTIZED_FORMAT_VERSION
                                                else "does not allow") +
              " a quantization entry in __metadata__")
    if "architecture" not in metadata:
        _fail("__metadata__ has no architecture")
    data_size = size - 8 - n
    tensors: dict[str, TensorEntry] = {}
    for name, info in header.items():
        tensors[name] = _tensor_entry(name, info, data_size,
                                      quantized=version == QUANTIZED_FORMAT_VERSION)
    # The tensors must tile the data section exactly, as safetensors requires.
    position = 0
    for entry in sorted(tensors.values(), key=lambda e: (e.begin, e.end)):
        if entry.begin != position:
            kind = "overlaps the previous tensor" if entry.begin < position else "leaves a gap"
            _fail(f"tensor {entry.name!r} at bytes [{entry.begin}, {entry.end}) {kind} "
                  f"(expected to start at {position})")
        position = entry.end
    if position != data_size:
        _fail(f"{data_size - position} bytes of trailing data after the last tensor "
              f"(tensors cover {position} of {data_size} data bytes)")
    return FileHeader(path, metadata, tensors, 8 + n, size)


def _tensor_entry(name: str, info: Any, data_size: int, quantized: bool = False) -> TensorEntry:
    if not name:
        _fail("empty tensor name")
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        _fail(f"tensor {name!r} must have exactly dtype, shape and data_offsets, got {info!r:.200}")
    dtype = info["dtype"]
    if dtype != "F32" and not (quantized and dtype in DTYPE_SIZES):
        _fail(f"tensor {name!r} has dtype {dtype!r:.50}; only F32 is supported" +
              (" (and I32, I8 in quantized files)" if not quantized else
               ", I32 and I8 are supported"))
    shape = info["shape"]
    if not isinstance(shape, list) or not all(_is_int(s) and 0 <= s <= MAX_DIM for s in shape):
        _fail(f"tensor {name!r} shape must be a list of non-negative ints, got {shape!r:.200}")
    offsets = info["data_offsets"]
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
        _fail(f"tensor {name!r} data_offsets must be [begin, end] ints, got {offsets!r:.200}")
    begin, end = offsets
    if not 0 <= begin <= end <= data_size:
        _fail(f"tensor {name!r} data_offsets [{begin}, {end}] are outside the "
              f"{data_size}-byte data section")
    count = math.prod(shape)
    if (end - begin) != count * DTYPE_SIZES[dtype]:
        _fail(f"tensor {name!r} of shape {shape} needs {count * DTYPE_SIZES[dtype]} bytes, "
              f"data_offsets give {end - begin}")
    return TensorEntry(name, tuple(shape), begin, end, dtype)


def _read_into(f: BinaryIO, header: FileHeader, entry: TensorEntry, out: np.ndarray) -> None:
    f.seek(header.data_start + entry.begin)
    view = memoryview(out).cast("B")
    done = 0
    while done < len(view):
        got = f.readinto(view[done:])
        if not got:
            _fail(f"file ended while reading tensor {entry.name!r}")
        done += got
    if sys.byteorder == "big":
        out.byteswap(inplace=True)


# -- rebuilding -----------------------------------------------------------------------------

def model_from_config(config: dict[str, Any]) -> Model:
    """The model ``model.get_config()`` describes: an unbuilt Sequential (weights created on
    first use) or, for a functional config (with ``input_layers``), a Model whose layers are
    built with zero weights and the global random state untouched (loading overwrites them)."""
    if not isinstance(config, dict):
        raise TypeError(f"model config must be an object, got {type(config).__name__}")
    if "input_layers" in config:
        return _functional_from_config(config)
    name, entries = _model_header(config, {"input_shape"}, "sequential")
    shape = _sample_shape(config.get("input_shape"), "input_shape")
    layers = []
    for i, entry in enumerate(entries):
        if isinstance(entry, dict) and entry.get("class_name") == "InputLayer":
            raise ValueError(f"layer {i}: InputLayer belongs in input_shape, not in the layer list")
        layer_config = entry.get("config") if isinstance(entry, dict) else None
        if isinstance(layer_config, dict):
            # A per-layer input shape would build (allocate) the model before validation.
            if "input_shape" in layer_config:
                raise ValueError(f"layer {i}: unexpected key 'input_shape'")
            if not isinstance(layer_config.get("name"), str) or not layer_config["name"]:
                raise ValueError(f"layer {i}: name must be a non-empty string, "
                                 f"got {layer_config.get('name')!r}")
        layers.append(layers_module.deserialize(entry))
    model = Sequential(layers, name=name)
    # Set after adding the layers, so nothing is built (allocated) yet.
    model.input_shape_ = tuple(shape)
    model.shapes()  # every shape formula validates its input
    return model


def _model_header(config: dict[str, Any], keys: set[str],
                  default_name: str) -> tuple[str, list[Any]]:
    """The name and the layer entries of a model config that may hold `keys` besides them."""
    unknown = set(config) - {"name", "layers"} - keys
    if unknown:
        raise ValueError(f"model config has unknown keys {sorted(unknown)}")
    name = config.get("name", default_name)
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {name!r}")
    entries = config.get("layers")
    if not isinstance(entries, list) or not entries:
        raise ValueError("model config needs a non-empty list of layers")
    return name, entries


def _sample_shape(shape: Any, what: str) -> tuple[int, ...]:
    if not isinstance(shape, list) or not shape or \
            not all(_is_int(s) and 0 < s <= MAX_DIM for s in shape):
        raise ValueError(f"{what} must be a non-empty list of positive ints, got {shape!r}")
    return tuple(shape)


def _node_ref(ref: Any, where: str) -> tuple[str, int]:
    if not (isinstance(ref, list) and len(ref) >= 2 and isinstance(ref[0], str) and
            _is_int(ref[1]) and 0 <= ref[1] <= MAX_DIM):
        raise ValueError(f"{where}: a node reference must be [layer_name, node_index], got {ref!r}")
    return ref[0], int(ref[1])


def _functional_from_config(config: dict[str, Any]) -> Model:
    """Replay the layer calls of a functional config in dependency order (each layer's calls
    in their index order); a call waiting on a node no layer produces, or on a cycle, is an
    error naming the layers."""
    name, entries = _model_header(config, {"input_layers", "output_layers"}, "functional")
    ends = []
    for key in ("input_layers", "output_layers"):
        refs = config.get(key)
        if not isinstance(refs, list) or len(refs) != 1:
            raise ValueError(f"{key} must list exactly one node (cnnfast models take one input "
                             f"and one output), got {refs!r}")
        ends.append(_node_ref(refs[0], key))
    tensors: dict[tuple[str, int], Any] = {}
    pending: list[tuple[Any, str, int, list[tuple[str, int]]]] = []
    names: set[str] = set()
    created: list[layers_module.Layer] = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or set(entry) - {"class_name", "config", "inbound_nodes"}:
            raise ValueError(f"layer {i}: expected class_name, config and inbound_nodes")
        layer_config = entry.get("config")
        if not isinstance(layer_config, dict) or not isinstance(layer_config.get("name"), str):
            raise TypeError(f"layer {i}: config needs a string name")
        lname = layer_config["name"]
        if lname in names:
            raise ValueError(f"layer {i}: two layers are named {lname!r}")
        names.add(lname)
        calls = entry.get("inbound_nodes", [])
        if not isinstance(calls, list):
            raise TypeError(f"layer {lname!r}: inbound_nodes must be a list of calls")
        if entry.get("class_name") == "InputLayer":
            if calls or (lname, 0) != ends[0]:
                raise ValueError(f"InputLayer {lname!r} must be the model's input, with no calls")
            shape = _sample_shape(layer_config.get("shape"), f"InputLayer {lname!r} shape")
            tensors[(lname, 0)] = layers_module.Input(shape, name=lname)
            continue
        layer = layers_module.deserialize({"class_name": entry.get("class_name"),
                                           "config": layer_config})
        created.append(layer)
        for k, call in enumerate(calls):
            if not isinstance(call, list) or not call:
                raise ValueError(f"layer {lname!r}: call {k} must list its inputs")
            pending.append((layer, lname, k, [_node_ref(r, f"layer {lname!r}") for r in call]))
    if ends[0] not in tensors:
        raise ValueError(f"input_layers names {ends[0][0]!r}, which is not an InputLayer")
    with _zero_initialisation(created):
        while pending:
            ready = [c for c in pending if all(r in tensors for r in c[3]) and
                     (c[2] == 0 or (c[1], c[2] - 1) in tensors)]
            if not ready:
                waiting = ", ".join(f"{n}[{k}] <- " + ", ".join(f"{a}[{b}]" for a, b in refs
                                                               if (a, b) not in tensors)
                                    for _, n, k, refs in pending)
                raise ValueError(f"these calls wait on nodes that no layer produces, or on a "
                                 f"cycle: {waiting}")
            for call in ready:
                layer, lname, k, refs = call
                ins = [tensors[r] for r in refs]
                if not layer.takes_many_inputs and len(ins) != 1:
                    raise ValueError(f"{layer.describe()}: takes one input, the config gives "
                                     f"it {len(ins)}")
                tensors[(lname, k)] = layer(ins if layer.takes_many_inputs else ins[0])
                pending.remove(call)
    if ends[1] not in tensors:
        raise ValueError(f"output_layers names {ends[1][0]}[{ends[1][1]}], which no layer produces")
    return Model(tensors[ends[0]], tensors[ends[1]], name=name)


@contextlib.contextmanager
def _zero_initialisation(layers: list[layers_module.Layer]):
    """`layers` built inside get zero weights (the file's values replace them: random
    initialisation would cost seconds on large models) and cnnfast.random's state is left as
    it was."""
    saved = {}
    for layer in layers:
        for key in vars(layer):
            if key.endswith("_initializer"):
                saved[(layer, key)] = getattr(layer, key)
                setattr(layer, key, "zeros")
    state = random_module.get_state()
    try:
        yield
    finally:
        random_module.set_state(state)
        for (layer, key), value in saved.items():
            setattr(layer, key, value)


def model_from_json(json_string: str, custom_objects: Any = None) -> Model:
    """The unbuilt model that :meth:`Sequential.to_json` describes (weights created on first
    use, as for a new model). Keras's own JSON cannot be read.

    Parameters
    ----------
    json_string : str
    custom_objects : None
        Accepted for Keras compatibility; cnnfast has no custom layers to look up.
    """
    if custom_objects:
        raise NotImplementedError("model_from_json: custom_objects are not supported")
    try:
        data = json.loads(json_string)
    except (TypeError, ValueError) as err:
        raise ValueError(f"model_from_json: not valid JSON: {err}") from None
    if not isinstance(data, dict):
        raise TypeError(f"model_from_json: expected a JSON object, got {type(data).__name__}")
    if data.get("module") == "keras" or "keras_version" in data:
        raise ValueError("model_from_json: this is a Keras model's JSON; cnnfast reads only the "
                         "JSON of its own Sequential.to_json()")
    if "class_name" in data:
        if data["class_name"] not in ("Sequential", "Functional") or \
                set(data) != {"class_name", "config"}:
            raise ValueError("model_from_json: expected {\"class_name\": \"Sequential\", "
                             f"\"config\": ...}}, got keys {sorted(data)} and class_name "
                             f"{data['class_name']!r}")
        data = data["config"]
    return model_from_config(data)


def _expected_weights(model: Sequential) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape of every weight, from the shape formulas (nothing allocated)."""
    expected = {}
    for layer, in_shape, _ in model.shapes():
        for name, shape in layer.param_shapes(in_shape).items():
            expected[f"{layer.name}/{name}"] = tuple(int(s) for s in shape)
    return expected


def _build_for_loading(model: Model) -> None:
    """Create the weights as zeros (see _zero_initialisation)."""
    with _zero_initialisation(model.layers):
        model.build()


def _check_weights(header: FileHeader, expected: dict[str, tuple[int, ...]],
                   optional_prefix: str | None) -> None:
    present = {n for n in header.tensors
               if optional_prefix is None or not n.startswith(optional_prefix)}
    missing = [n for n in expected if n not in header.tensors]
    extra = sorted(present - set(expected))
    if missing:
        _fail(f"missing weight tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if extra:
        _fail(f"unexpected tensors {extra[:5]}{' ...' if len(extra) > 5 else ''} "
              "not in the architecture")
    for name, shape in expected.items():
        if header.tensors[name].shape != shape:
            _fail(f"tensor {name!r} has shape {list(header.tensors[name].shape)}, "
                  f"the architecture needs {list(shape)}")


def _parse_optimizer(header: FileHeader, model: Sequential,
                     expected: dict[str, tuple[int, ...]]) -> tuple[Any, dict[str, tuple[int, ...]]]:
    """The optimizer config and the slot tensors it declares (name -> shape)."""
    config = _loads(header.metadata["optimizer"], "optimizer metadata")
    keys = {"class_name", "config", "iterations", "slot_names", "slots"}
    if not isinstance(config, dict) or set(config) != keys:
        _fail(f"optimizer metadata must have keys {sorted(keys)}")
    cls = _OPTIMIZERS.get(config["class_name"])
    if cls is None:
        _fail(f"unknown optimizer {config['class_name']!r}; known: {sorted(_OPTIMIZERS)}")
    if not isinstance(config["config"], dict):
        _fail("optimizer config must be an object")
    if not _is_int(config["iterations"]) or config["iterations"] < 0:
        _fail(f"optimizer iterations must be a non-negative int, got {config['iterations']!r}")
    try:
        names = list(cls.from_config(config["config"]).slot_names)
    except (TypeError, ValueError) as err:
        _fail(f"invalid optimizer config {config['config']!r}: {err}")
    if config["slot_names"] != names:
        _fail(f"{cls.__name__} slot names are {names}, file has {config['slot_names']!r}")
    slots = config["slots"]
    trainable = [n for n, _ in _expected_trainable(model)]
    if not isinstance(slots, list) or not all(isinstance(s, str) for s in slots) or \
            len(set(slots)) != len(slots):
        _fail("optimizer slots must be a list of distinct parameter names")
    for name in slots:
        if name not in trainable:
            _fail(f"optimizer slots name {name!r}, which is not a trainable weight of the model")
    slot_tensors = {f"{OPTIMIZER_PREFIX}{p}/{s}": expected[p] for p in slots for s in names}
    return config, slot_tensors


def _expected_trainable(model: Sequential) -> list[tuple[str, tuple[int, ...]]]:
    rows = []
    for layer, in_shape, _ in model.shapes():
        if layer.trainable:
            rows += [(f"{layer.name}/{n}", s) for n, s in layer.param_shapes(in_shape).items()
                     if n not in layer.non_trainable_names]
    return rows


def _parse_training(header: FileHeader) -> dict[str, Any]:
    training = _loads(header.metadata["training"], "training metadata")
    if not isinstance(training, dict):
        _fail("training metadata must be an object")
    unknown = set(training) - {"loss", "metrics", "precision", "epoch", "step", "rng",
                                "dropout_calls"}
    if unknown:
        _fail(f"training metadata has unknown keys {sorted(unknown)}")
    if "loss" in training:
        try:
            losses_module.deserialize(training["loss"])
        except (TypeError, ValueError) as err:
            _fail(f"invalid loss {training['loss']!r}: {err}")
    metrics = training.get("metrics", [])
    if not isinstance(metrics, list):
        _fail(f"metrics must be a list, got {metrics!r}")
    for m in metrics:
        try:
            metrics_module.get(m)
        except (TypeError, ValueError) as err:
            _fail(f"invalid metric {m!r}: {err}")
    for key in ("epoch", "step"):
        if key in training and (not _is_int(training[key]) or training[key] < 0):
            _fail(f"training {key} must be a non-negative int, got {training[key]!r}")
    calls = training.get("dropout_calls", {})
    if not isinstance(calls, dict) or not all(_is_int(v) and v >= 0 for v in calls.values()):
        _fail("dropout_calls must map layer names to non-negative ints")
    return training


def load_model(filepath: str | os.PathLike, compile: bool = True,
               restore_training_state: bool = True) -> Sequential:
    """Read a model written by ``model.save`` or ``ModelCheckpoint``.

    Parameters
    ----------
    filepath : str or path-like
    compile : bool
        When the file holds loss and optimizer, return the model compiled with them and the
        optimizer's saved state (iterations, moments/velocities), ready to continue ``fit``.
    restore_training_state : bool
        When the file records a training position (checkpoints), set ``cnnfast.random``'s
        generator and the dropout layers to their saved state, so that
        ``model.fit(..., initial_epoch=model.saved_epoch)`` repeats exactly what the
        uninterrupted run would have done. ``model.saved_epoch`` is the number of completed
        epochs (None when the file has no training position).

    A file written by ``QuantizedModel.save`` gives a :class:`cnnfast.QuantizedModel`
    (inference only; `compile` and `restore_training_state` do not apply).

    Raises
    ------
    ValueError
        The file is truncated, corrupted, of another format or version, or its tensors do not
        match its architecture; the message names the file and the problem.
    """
    path = os.fspath(filepath)
    with open(path, "rb") as f:
        _refuse_foreign(f, path)
        try:
            return _load_model(f, path, compile, restore_training_state)
        except _Invalid as err:
            raise ValueError(f"{path}: not a valid cnnfast model file: {err}") from None


def _load_model(f: BinaryIO, path: str, compile: bool, restore: bool) -> Sequential:
    header = _read_header(f, path)
    if "quantization" in header.metadata:  # a cnnfast.quantize model: inference only
        from cnnfast.quantization import _load_quantized

        return _load_quantized(f, header)
    architecture = _loads(header.metadata["architecture"], "architecture")
    try:
        model = model_from_config(architecture)
        expected = _expected_weights(model)
    except Exception as err:  # noqa: BLE001 - whatever a bad config makes a constructor raise
        raise _Invalid(f"invalid architecture: {type(err).__name__}: {err}") from None
    training = _parse_training(header) if "training" in header.metadata else {}
    optimizer_config, slot_tensors = None, {}
    if "optimizer" in header.metadata:
        if "loss" not in training:
            _fail("the file has optimizer state but no loss in its training metadata")
        optimizer_config, slot_tensors = _parse_optimizer(header, model, expected)
    _check_weights(header, {**expected, **slot_tensors}, None)
    for name in training.get("dropout_calls", {}):
        if not any(layer.name == name for layer in model.layers
                   if isinstance(layer, layers_module.Dropout)):
            _fail(f"dropout_calls names {name!r}, which is not a Dropout layer")

    optimizer = None
    if compile and optimizer_config is not None and "loss" in training:
        try:
            optimizer = _OPTIMIZERS[optimizer_config["class_name"]].from_config(
                optimizer_config["config"])
        except (TypeError, ValueError) as err:
            _fail(f"invalid optimizer config {optimizer_config['config']!r}: {err}")

    _build_for_loading(model)
    for layer in model.layers:
        for name, w in layer.weights_.items():
            _read_into(f, header, header.tensors[f"{layer.name}/{name}"], w)

    model.saved_epoch = training.get("epoch") if "step" not in training else None
    if optimizer is not None:
        precision = training.get("precision", "float32")
        if precision not in mixed_precision.PRECISIONS:
            _fail(f"unknown training precision {precision!r}; known: "
                  f"{list(mixed_precision.PRECISIONS)}")
        with warnings.catch_warnings():
            # Loading (perhaps only to predict) is no place for compile's warning that
            # bfloat16 training would be slow on this CPU; compiling again gives it.
            warnings.filterwarnings("ignore", "compile: this CPU has no AVX512-BF16",
                                    RuntimeWarning)
            model.compile(optimizer, losses_module.deserialize(training["loss"]),
                          training.get("metrics"), precision=precision)
        optimizer.iterations = optimizer_config["iterations"]
        params = [layer.weights_[n] for layer in model.layers for n in layer.trainable_names()]
        names = [n for n, _ in _expected_trainable(model)]
        for pname in optimizer_config["slots"]:
            index = names.index(pname)
            arrays = tuple(np.empty_like(params[index]) for _ in optimizer.slot_names)
            for slot, array in zip(optimizer.slot_names, arrays):
                _read_into(f, header, header.tensors[f"{OPTIMIZER_PREFIX}{pname}/{slot}"], array)
            optimizer._slots[index] = arrays
    if restore and "epoch" in training:
        for layer in model.layers:
            if isinstance(layer, layers_module.Dropout):
                layer._calls = training.get("dropout_calls", {}).get(layer.name, 0)
        if "rng" in training:
            try:
                random_module.set_state(training["rng"])
            except ValueError as err:
                _fail(f"invalid random state: {err}")
    return model


def load_weights(model: Sequential, filepath: str | os.PathLike) -> None:
    """Copy the weights stored in a model file into `model` (same layer names and shapes).

    Optimizer state in the file is ignored. The model is changed only once the whole file
    has been read and checked.
    """
    path = os.fspath(filepath)
    model._require_built()
    expected = {f"{layer.name}/{n}": w.shape for layer in model.layers
                for n, w in layer.weights_.items()}
    with open(path, "rb") as f:
        _refuse_foreign(f, path)
        try:
            header = _read_header(f, path)
            if "quantization" in header.metadata:
                _fail("this is a quantized model (int8 weights); read it with load_model")
            _check_weights(header, expected, OPTIMIZER_PREFIX)
            values = {}
            for name, shape in expected.items():
                values[name] = np.empty(shape, np.float32)
                _read_into(f, header, header.tensors[name], values[name])
        except _Invalid as err:
            raise ValueError(f"{path}: cannot load weights: {err}") from None
    for layer in model.layers:
        for n, w in layer.weights_.items():
            np.copyto(w, values[f"{layer.name}/{n}"])


__all__ = ["FORMAT", "FORMAT_VERSION", "QUANTIZED_FORMAT_VERSION", "FileHeader", "SavePathIsDirectory", "TensorEntry",
           "check_save_path", "load_model", "load_weights", "model_from_config", "model_from_json",
           "read_header", "save_model"]
