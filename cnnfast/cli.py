"""The ``cnnfast`` command: train, evaluate and run classic CNNs without writing Python.

    cnnfast train lenet5                      # the embedded MNIST sample, ~10 s on 2 cores
    cnnfast train keras_mnist_cnn --data mnist --epochs 10
    cnnfast train lenet5.cnnfast --epochs 5   # continue training a saved model
    cnnfast evaluate lenet5.cnnfast
    cnnfast predict lenet5.cnnfast digit.pgm photo.png batch.npy --top 3 [--json]
    cnnfast summary vgg16 [--input-shape 32,32,3 --classes 10 --fc-units 512 --markdown]
    cnnfast train lenet5 --log run.json       # also record a training log for the report
    cnnfast report lenet5.cnnfast --log run.json -o report.html   # one offline HTML page
    cnnfast info

Inputs are preprocessed as in training: pixel values (0-255, as the datasets store them)
are divided by 255 and standardised with the per-channel mean and standard deviation of the
training images. ``cnnfast train`` records that recipe, the class names and the dataset in
the model file's metadata, and ``predict`` / ``evaluate`` apply it; a model file written by
other code is fed x / 255.

Every error is one line on stderr with exit status 2 (``--debug`` shows the traceback);
Ctrl-C exits with status 130 and writes nothing.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DATASETS = ("mnist", "fashion_mnist", "cifar10", "sample")
DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 32
# Zoo models whose defaults differ: LeNet-5 on the 10,000-image sample reads 97.7-98.1% after
# 10 epochs of batch 32 and 97.9-98.5% after 20 epochs of batch 64 (about 3 s on 2 cores).
TRAINING_DEFAULTS = {"lenet5": {"epochs": 20, "batch_size": 64}}
# What a model file written by other code is assumed to take: pixels scaled to [0, 1].
PLAIN_PREPROCESSING = {"scale": 1 / 255, "mean": [0.0], "std": [1.0]}
META_PREPROCESSING, META_CLASSES, META_DATASET = "preprocessing", "class_names", "dataset"


class UsageError(Exception):
    """A problem with what the user typed or named: reported in one line, exit status 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the usage and exits by itself)."""

    def error(self, message: str):  # type: ignore[override]
        raise UsageError(f"{message} (see '{self.prog} --help')")


# -- data -----------------------------------------------------------------------------------

@dataclass
class Dataset:
    """Train and test arrays as the datasets store them: x uint8 (N, H, W, C), y int labels."""

    name: str
    description: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] | None = None
    note: str = ""

    @property
    def sample_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    @property
    def classes(self) -> int:
        if self.class_names:
            return len(self.class_names)
        return int(max(self.y_train.max(initial=0), self.y_test.max(initial=0))) + 1


def _with_channels(x: np.ndarray) -> np.ndarray:
    return x[..., None] if x.ndim == 3 else x


def _dataset(name: str, description: str, arrays, class_names=None, note: str = "") -> Dataset:
    (x_train, y_train), (x_test, y_test) = arrays
    return Dataset(name, description, _with_channels(x_train), np.asarray(y_train).reshape(-1),
                   _with_channels(x_test), np.asarray(y_test).reshape(-1),
                   list(class_names) if class_names else None, note)


def _loader(name: str):
    from cnnfast.datasets import cifar10, fashion_mnist, mnist

    modules = {"mnist": mnist, "fashion_mnist": fashion_mnist, "cifar10": cifar10}
    return modules[name]


def _class_names(name: str) -> list[str] | None:
    # MNIST's classes are the digits themselves, reported as integers.
    return None if name == "mnist" else list(_loader(name).CLASS_NAMES)


def _sample(note: str = "") -> Dataset:
    from cnnfast.datasets import mnist

    return _dataset("sample", "the MNIST sample shipped with cnnfast", mnist.load_data(sample=True),
                    note=note)


def _search_places(name: str) -> str:
    from cnnfast.datasets import store

    folder = {"fashion_mnist": "fashion-mnist"}.get(name, name)
    places = [str(d) for _, d in store.search_dirs(folder)]
    if not os.environ.get(store.ENV_DATA):
        places.insert(0, f"${store.ENV_DATA}/{folder}")
    return ", ".join(places)


def _npz_dataset(path: Path) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: np.asarray(f[k]) for k in ("x_train", "y_train", "x_test", "y_test")}
    except KeyError as err:
        raise UsageError(f"{path}: a dataset .npz needs arrays x_train, y_train, x_test, y_test "
                         f"({err})") from None
    except (OSError, ValueError) as err:
        raise UsageError(f"{path}: not a readable .npz file ({err})") from None
    for k in ("x_train", "x_test"):
        if arrays[k].ndim not in (3, 4) or arrays[k].dtype.kind not in "uif":
            raise UsageError(f"{path}: {k} is {arrays[k].dtype} {arrays[k].shape}, expected "
                             f"images (N, H, W) or (N, H, W, C) of pixel values 0-255")
    for k in ("y_train", "y_test"):
        if arrays[k].dtype.kind not in "ui":
            raise UsageError(f"{path}: {k} has dtype {arrays[k].dtype}, expected integer labels")
    return _dataset(str(path), f"{path}",
                    ((arrays["x_train"], arrays["y_train"]), (arrays["x_test"], arrays["y_test"])))


def load_dataset(spec: str, natural: str = "mnist") -> Dataset:
    """The dataset `spec` names: a dataset name, "sample", "auto" (`natural` if found on this
    machine, else the sample; never a download) or a path (.npz, MNIST-format IDX directory or
    CIFAR-10 batch directory)."""
    from cnnfast.datasets import DatasetNotFoundError

    key = spec.strip().lower().replace("-", "_")
    if key == "sample":
        return _sample()
    if key == "auto":
        if natural == "sample":
            return _sample()
        if natural not in ("mnist", "fashion_mnist", "cifar10"):
            # A saved model records the path it was trained on (a .npz or a directory).
            if Path(natural).expanduser().exists():
                return load_dataset(natural)
            raise UsageError(f"the model was trained on {natural}, which is not there; name "
                             "its data with --data")
        try:
            arrays = _loader(natural).load_data(download=False)
        except DatasetNotFoundError:
            return _sample(note=f"the full {natural} was not found in {_search_places(natural)}; "
                                f"--data {natural} downloads it")
        return _dataset(natural, f"{natural} (found on this machine)", arrays, _class_names(natural))
    if key in ("mnist", "fashion_mnist", "cifar10"):
        try:
            arrays = _loader(key).load_data()
        except DatasetNotFoundError as err:
            first = str(err).splitlines()[0]
            raise UsageError(f"{first} Looked in {_search_places(key)}; put the files there or "
                             f"set $CNNFAST_DATA (--data sample uses the embedded MNIST sample)"
                             ) from None
        return _dataset(key, key, arrays, _class_names(key))
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix == ".npz":
        return _npz_dataset(path)
    if path.is_dir():
        errors = []
        for name in ("mnist", "cifar10"):
            try:
                arrays = _loader(name).load_data(path=path, download=False)
            except (OSError, ValueError) as err:
                errors.append(str(err).splitlines()[0])
                continue
            return _dataset(str(path), f"{path} ({name} format)", arrays,
                            None if name == "mnist" else _class_names(name))
        raise UsageError(f"{path}: neither MNIST-format IDX files nor CIFAR-10 batches "
                         f"({'; '.join(errors)})")
    raise UsageError(f"unknown dataset {spec!r}: expected one of {', '.join(DATASETS)}, a .npz "
                     f"file or a dataset directory")


# Images converted to float64 at a time: bounds the temporaries (CIFAR-10's 50,000 images in
# float64 would take 1.2 GB at once).
CHUNK = 4096


def preprocessing_of(x_train: np.ndarray) -> dict[str, Any]:
    """The recipe the model is trained with: x / 255, then per-channel standardisation with
    the training images' statistics (two float64 passes over chunks, rounded to 6 digits)."""
    channels = x_train.shape[-1]
    rows = x_train.reshape(-1, channels)
    chunks = [rows[i:i + CHUNK * 1024] for i in range(0, len(rows), CHUNK * 1024)]
    mean = sum(c.sum(axis=0, dtype=np.float64) for c in chunks) / (255.0 * len(rows))
    var = sum(np.square(c / 255.0 - mean).sum(axis=0) for c in chunks) / len(rows)
    return {"scale": 1 / 255, "mean": [round(float(m), 6) for m in mean],
            "std": [round(float(s), 6) if s > 0 else 1.0 for s in np.sqrt(var)]}


def apply_preprocessing(x: np.ndarray, recipe: dict[str, Any]) -> np.ndarray:
    """float32 model input from pixel values (0-255), by the recorded recipe (float64
    arithmetic, a chunk of images at a time)."""
    mean = np.asarray(recipe["mean"], np.float64)
    std = np.asarray(recipe["std"], np.float64)
    x = np.asarray(x)
    out = np.empty(x.shape, np.float32)
    for i in range(0, len(x), CHUNK):
        out[i:i + CHUNK] = (x[i:i + CHUNK].astype(np.float64) * recipe["scale"] - mean) / std
    return out


# -- model files ----------------------------------------------------------------------------

def _looks_like_path(name: str) -> bool:
    return os.sep in name or "/" in name or os.path.exists(name) or \
        name.lower().endswith((".keras", ".h5", ".npz", ".json", ".cnnfast", ".onnx"))


@dataclass
class ModelFile:
    path: str
    metadata: dict[str, str] = field(default_factory=dict)

    def recorded(self, key: str, default: Any = None) -> Any:
        text = self.metadata.get(key)
        if text is None:
            return default
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise UsageError(f"{self.path}: metadata {key!r} is not valid JSON") from None


def _open_model_file(path: str) -> ModelFile:
    from cnnfast.saving import read_header

    if not os.path.exists(path):
        raise UsageError(f"no such model file {path!r}")
    if os.path.isdir(path):
        raise UsageError(f"{path!r} is a directory, expected a model file (.cnnfast)")
    return ModelFile(path, dict(read_header(path).metadata))


def _load(path: str, compile: bool, float_for: str | None = None):
    """(the file's header, its model); `float_for`: the command, which refuses int8 files."""
    from cnnfast.saving import load_model

    info, model = _open_model_file(path), load_model(path, compile=compile)
    if float_for and _is_quantized(model):
        raise UsageError(f"{path} is an int8 model (cnnfast quantize); {float_for} takes a "
                         f"float32 model file")
    return info, model


def _zoo_builder(name: str, fc_units: int | None) -> tuple[str, Any, dict[str, Any]]:
    """(key, constructor, kwargs) of a zoo name; refuses unknown names and --fc-units where the
    model has no such parameter."""
    from cnnfast import models

    key = name.strip().lower().replace("-", "_")
    if key not in models.names():
        raise UsageError(f"unknown model {name!r}: expected a saved model file or one of "
                         f"{', '.join(models.names())}")
    build = models._ZOO[key]
    kwargs: dict[str, Any] = {}
    if fc_units is not None:
        if "fc_units" not in inspect.signature(build).parameters:
            takes = [n for n in models.names()
                     if "fc_units" in inspect.signature(models._ZOO[n]).parameters]
            raise UsageError(f"--fc-units does not apply to {key} (only to {', '.join(takes)})")
        kwargs["fc_units"] = fc_units
    return key, build, kwargs


def _zoo_model(name: str, data: Dataset, fc_units: int | None):
    key, build, kwargs = _zoo_builder(name, fc_units)
    try:
        return build(input_shape=data.sample_shape, classes=data.classes, **kwargs)
    except ValueError as err:
        raise UsageError(f"{key} cannot take {data.description}'s {data.sample_shape} images: "
                         f"{err}") from None


def _natural_dataset(name: str) -> str:
    """The dataset a zoo model is made for: MNIST for grayscale inputs, CIFAR-10 for colour."""
    from cnnfast import models

    key = name.strip().lower().replace("-", "_")
    build = models._ZOO.get(key)
    if build is None:
        return "mnist"
    shape = inspect.signature(build).parameters["input_shape"].default
    return "cifar10" if shape[-1] == 3 else "mnist"


def _optimizer_class(name: str):
    from cnnfast import optimizers

    cls = optimizers._BY_NAME.get(name.lower())
    if cls is None:
        raise UsageError(f"unknown optimizer {name!r}: expected one of "
                         f"{', '.join(sorted(optimizers._BY_NAME))}")
    return cls


def _optimizer(name: str | None, lr: float | None):
    cls = _optimizer_class(name or "adam")
    return cls() if lr is None else cls(learning_rate=lr)


def _targets_for(model, y: np.ndarray) -> np.ndarray:
    """Integer labels as the model's loss wants them (one-hot for categorical_crossentropy)."""
    if model.loss.name == "categorical_crossentropy":
        classes = model.output_shape_[-1]
        if y.max(initial=0) >= classes:
            raise UsageError(f"label {int(y.max())} does not fit the model's {classes} classes")
        return np.eye(classes, dtype=np.float32)[y]
    return y


def _check_fits(model, data: Dataset, what: str) -> None:
    if tuple(model.input_shape_) != data.sample_shape:
        raise UsageError(f"{what} takes {model.input_shape_} images but {data.description} has "
                         f"{data.sample_shape}")
    classes = model.output_shape_[-1]
    if data.classes > classes:
        raise UsageError(f"{what} has {classes} outputs but {data.description} has "
                         f"{data.classes} classes")


def _recorded_data(data_arg: str, info: ModelFile, model, path: str):
    """The dataset a saved model is run on (DATA, or with "auto" the one its file records),
    checked against the model's input and classes, and the input scaling the file records."""
    data = load_dataset(data_arg, info.recorded(META_DATASET, "mnist")
                        if data_arg == "auto" else "mnist")
    _check_fits(model, data, path)
    return data, info.recorded(META_PREPROCESSING, PLAIN_PREPROCESSING)


# -- commands -------------------------------------------------------------------------------

def _say(args, text: str) -> None:
    if not getattr(args, "quiet", False):
        print(text, flush=True)


def cmd_train(args) -> int:
    from cnnfast import distributed

    # Started by mpirun/mpiexec/srun as one of several ranks: train data-parallel, rank 0
    # printing and saving (cnnfast/distributed.py).
    strategy = None
    if distributed.launched_under_mpi():
        if args.threads is not None and args.threads <= 0:
            raise UsageError(f"--threads must be positive, got {args.threads}")
        strategy = distributed.MPIStrategy(threads="auto" if args.threads is None else None)
        if not strategy.is_root:
            with strategy.quiet_unless_root():
                return _train(args, strategy)
    return _train(args, strategy)


def _train(args, strategy) -> int:
    import cnnfast as cf

    if args.threads is not None:
        if args.threads <= 0:
            raise UsageError(f"--threads must be positive, got {args.threads}")
        cf.set_num_threads(args.threads)
    if args.seed is not None:
        cf.set_seed(args.seed)
    for opt, value in (("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value is not None and value <= 0:
            raise UsageError(f"{opt} must be positive, got {value}")
    if args.lr is not None and not args.lr > 0:
        raise UsageError(f"--lr must be positive, got {args.lr}")
    if not 0 <= args.validation_split < 1:
        raise UsageError(f"--validation-split must be in [0, 1), got {args.validation_split}")

    started = time.perf_counter()
    from_file = _looks_like_path(args.model)
    if from_file:
        if args.fc_units is not None:
            raise UsageError("--fc-units does not apply to a saved model file (its architecture "
                             "is stored in it)")
        info, model = _load(args.model, compile=True, float_for="train")
        data, recipe = _recorded_data(args.data, info, model, args.model)
        class_names = info.recorded(META_CLASSES) or data.class_names
        if not model.compiled or args.optimizer or args.lr is not None:
            if model.compiled:
                _say(args, "note: --optimizer/--lr given: the optimizer starts afresh")
            model.compile(_optimizer(args.optimizer, args.lr), "sparse_categorical_crossentropy",
                          metrics=["accuracy"])
        if "accuracy" not in model.metrics or (args.precision or model.precision) != \
                model.precision:
            model.compile(model.optimizer, model.loss, metrics=["accuracy"],
                          precision=args.precision or model.precision)
        out = args.out or Path(args.model).stem + ".cnnfast"
    else:
        data = load_dataset(args.data, _natural_dataset(args.model))
        model = _zoo_model(args.model, data, args.fc_units)
        recipe = preprocessing_of(data.x_train)
        class_names = data.class_names
        model.compile(_optimizer(args.optimizer, args.lr), "sparse_categorical_crossentropy",
                      metrics=["accuracy"], precision=args.precision or "float32")
        out = args.out or model.name + ".cnnfast"

    _say(args, f"data: {data.description}, {len(data.x_train):,} training and "
               f"{len(data.x_test):,} test images of {'x'.join(map(str, data.sample_shape))}"
               + (f" ({data.note})" if data.note else ""))
    x_train = apply_preprocessing(data.x_train, recipe)
    x_test = apply_preprocessing(data.x_test, recipe)
    defaults = TRAINING_DEFAULTS.get(model.name, {})
    epochs = args.epochs or defaults.get("epochs", DEFAULT_EPOCHS)
    batch_size = args.batch_size or defaults.get("batch_size", DEFAULT_BATCH_SIZE)
    callbacks = []
    if args.log and (strategy is None or strategy.is_root):  # only rank 0 writes files
        from cnnfast.inside import TrainingDiagnostics

        callbacks.append(TrainingDiagnostics(args.log, x_probe=x_train[:256]))
    fit_started = time.perf_counter()
    model.fit(x_train, _targets_for(model, data.y_train), epochs=epochs, batch_size=batch_size,
              validation_split=args.validation_split, verbose=0 if args.quiet else 1,
              callbacks=callbacks, distributed=strategy or False)
    fit_seconds = time.perf_counter() - fit_started
    interrupted = getattr(model, "_interrupted", False)
    if strategy is not None:  # Ctrl-C reached some ranks: all of them stop without saving
        interrupted = strategy.agree(interrupted, "the end of training")
    if interrupted:
        if strategy is None or strategy.is_root:
            print("cnnfast train: interrupted; nothing was saved", file=sys.stderr)
        return EXIT_INTERRUPTED
    if strategy is not None and not strategy.is_root:
        return 0  # rank 0 evaluates, saves and reports
    loss, accuracy = model.evaluate(x_test, _targets_for(model, data.y_test), batch_size=256,
                                    verbose=0)
    metadata = {META_PREPROCESSING: json.dumps(recipe), META_DATASET: json.dumps(data.name)}
    if class_names:
        metadata[META_CLASSES] = json.dumps(class_names)
    from cnnfast.saving import save_model

    save_model(model, out, metadata=metadata)
    print(f"test accuracy: {100 * accuracy:.1f}% (loss {loss:.4f}, {len(x_test):,} test images)")
    print(f"wall time: {time.perf_counter() - started:.1f} s ({fit_seconds:.1f} s training, "
          f"{epochs} epoch{'' if epochs == 1 else 's'})"
          + (f", {strategy.size} MPI ranks of {cf.get_num_threads()} threads, "
             f"{strategy.allreduce_seconds:.1f} s in the gradient allreduce (rank 0)"
             if strategy is not None else ""))
    print(f"saved to {out}")
    if args.log:
        print(f"training log: {args.log}")
    return 0


def _is_quantized(model) -> bool:
    from cnnfast.quantization import QuantizedModel

    return isinstance(model, QuantizedModel)


def _last_activation(model) -> str | None:
    if _is_quantized(model):
        return model.config["layers"][-1]["config"].get("activation")
    return model.layers[-1].get_config().get("activation")


def _probabilities(model, out: np.ndarray) -> np.ndarray:
    """The model's outputs as class probabilities (softmax of logits or other activations)."""
    if _last_activation(model) == "softmax":
        return out
    shifted = np.exp(out - out.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def cmd_evaluate(args) -> int:
    info, model = _load(args.model_file, compile=True)
    data, recipe = _recorded_data(args.data, info, model, args.model_file)
    if args.batch_size <= 0:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    if _is_quantized(model):
        # An int8 model has no loss of its own: the cross-entropy of its probabilities.
        probs = _probabilities(model, model.predict(apply_preprocessing(data.x_test, recipe),
                                                    batch_size=args.batch_size))
        picked = probs[np.arange(len(probs)), data.y_test]
        loss = float(-np.mean(np.log(np.maximum(picked, 1e-7))))
        accuracy = float(np.mean(probs.argmax(axis=1) == data.y_test))
        print(f"{data.description}: {len(data.x_test):,} test images (int8 model)")
        print(f"loss: {loss:.4f}")
        print(f"accuracy: {100 * accuracy:.2f}%")
        return 0
    if not model.compiled:
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    elif "accuracy" not in model.metrics:
        model.compile(model.optimizer, model.loss, metrics=["accuracy"])
    loss, accuracy = model.evaluate(apply_preprocessing(data.x_test, recipe),
                                    _targets_for(model, data.y_test),
                                    batch_size=args.batch_size, verbose=0)
    print(f"{data.description}: {len(data.x_test):,} test images")
    print(f"loss: {loss:.4f}")
    print(f"accuracy: {100 * accuracy:.2f}%")
    return 0


def _read_inputs(path: str, shape: tuple[int, int, int], resize: bool) -> list[tuple[str, Any]]:
    """(label, image) pairs from one INPUT: an image file or a .npy of one image or a batch."""
    from cnnfast import images

    if not os.path.exists(path):
        raise UsageError(f"no such input file {path!r}")
    if path.lower().endswith(".npy"):
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise UsageError(f"{path}: not a readable .npy array ({err})") from None
        if array.dtype.kind not in "uif":
            raise UsageError(f"{path}: dtype {array.dtype}, expected pixel values")
        # One image is (H, W) or (H, W, C); a batch adds a leading axis. A 3-D array is a
        # batch of grayscale images unless it matches the model's (H, W, C) or ends in 1, 3
        # or 4 channels while the first axis is not the model's height.
        gray_batch = array.ndim == 3 and (array.shape[1:] == shape[:2] or (
            array.shape != shape and array.shape[-1] not in (1, 3, 4)))
        if array.ndim == 2 or (array.ndim == 3 and not gray_batch):
            batch = [(path, array)]
        elif array.ndim in (3, 4):
            batch = [(f"{path}[{i}]", a) for i, a in enumerate(array)]
        else:
            raise UsageError(f"{path}: array of shape {array.shape}; expected one image "
                             f"{shape} or a batch (N, {', '.join(map(str, shape))})")
        if array.size and array.dtype.kind == "f" and float(array.max()) <= 1.0:
            print(f"note: {path} holds values within [0, 1]; predict expects pixel values "
                  f"0-255, as the datasets store them", file=sys.stderr)
    else:
        batch = [(path, images.read_image(path))]
    return [(label, images.to_model_input(a, shape, resize, what=label)) for label, a in batch]


def cmd_quantize(args) -> int:
    import cnnfast as cf

    info, model = _load(args.model_file, compile=False)
    if _is_quantized(model):
        raise UsageError(f"{args.model_file} is already an int8 model")
    if args.calibration <= 0:
        raise UsageError(f"--calibration must be positive, got {args.calibration}")
    data, recipe = _recorded_data(args.data, info, model, args.model_file)
    # Calibration on training images, preprocessed as in training; the test images judge it.
    calibration = apply_preprocessing(data.x_train[:args.calibration], recipe)
    try:
        qmodel = cf.quantize(model, calibration, skip=args.skip or ())
    except ValueError as err:
        raise UsageError(f"{args.model_file}: {err}") from None
    x_test = apply_preprocessing(data.x_test, recipe)
    float_top = model.predict(x_test, batch_size=256).argmax(axis=1)
    int8_top = qmodel.predict(x_test, batch_size=256).argmax(axis=1)
    out = args.out or Path(args.model_file).stem + "-int8.cnnfast"
    # The float file's class names, input scaling and dataset, for predict and evaluate.
    keep = (META_PREPROCESSING, META_CLASSES, META_DATASET)
    qmodel.save(out, metadata={k: v for k, v in info.metadata.items() if k in keep})
    print(f"calibrated on {len(calibration):,} training images of {data.description}")
    print(f"test accuracy: float32 {100 * np.mean(float_top == data.y_test):.2f}%, int8 "
          f"{100 * np.mean(int8_top == data.y_test):.2f}% ({len(x_test):,} test images)")
    print(f"saved to {out}")
    return 0


def cmd_predict(args) -> int:
    info, model = _load(args.model_file, compile=False)
    shape = tuple(model.input_shape_)
    if len(shape) != 3:
        raise UsageError(f"{args.model_file}: predict takes image models (H, W, C), this one "
                         f"takes {shape}")
    if args.top <= 0:
        raise UsageError(f"--top must be positive, got {args.top}")
    recipe = info.recorded(META_PREPROCESSING, PLAIN_PREPROCESSING)
    class_names = info.recorded(META_CLASSES)
    inputs = [item for path in args.inputs for item in _read_inputs(path, shape, args.resize)]
    x = apply_preprocessing(np.stack([a for _, a in inputs]), recipe)
    # Logits or another activation: reported as softmax probabilities.
    out = _probabilities(model, model.predict(x, batch_size=128).reshape(len(inputs), -1))
    k = min(args.top, out.shape[1])
    results = []
    for (label, _), probs in zip(inputs, out):
        best = np.argsort(-probs, kind="stable")[:k]
        top = [[class_names[i] if class_names and i < len(class_names) else int(i),
                round(float(probs[i]), 6)] for i in best]
        results.append({"input": label, "top": top})
    if args.json:
        print(json.dumps(results))
    else:
        for r in results:
            print(f"{r['input']}: " + ", ".join(f"{c} ({p:.4f})" for c, p in r["top"]))
    return 0


def cmd_summary(args) -> int:
    from cnnfast.analyzer import analyze

    if _looks_like_path(args.model):
        for opt, value in (("--input-shape", args.input_shape), ("--classes", args.classes),
                           ("--fc-units", args.fc_units)):
            if value is not None:
                raise UsageError(f"{opt} does not apply to a saved model file (its architecture "
                                 f"is stored in it)")
        info = _open_model_file(args.model)
        from cnnfast.saving import model_from_config

        try:
            model = model_from_config(json.loads(info.metadata["architecture"]))
        except (KeyError, json.JSONDecodeError) as err:
            raise UsageError(f"{args.model}: no readable architecture in the header ({err})"
                             ) from None
    else:
        _, build, kwargs = _zoo_builder(args.model, args.fc_units)
        if args.input_shape is not None:
            kwargs["input_shape"] = args.input_shape
        if args.classes is not None:
            kwargs["classes"] = args.classes
        model = build(**kwargs)
    if args.optimizer is not None:
        _optimizer_class(args.optimizer)
    if args.batch_size <= 0:
        raise UsageError(f"--batch-size must be positive, got {args.batch_size}")
    report = analyze(model, optimizer=args.optimizer, batch_size=args.batch_size)
    print(report.to_markdown() if args.markdown else report)
    return 0


def cmd_report(args) -> int:
    from cnnfast.inside import load_diagnostics
    from cnnfast.report import write_report

    info, model = _load(args.model_file, compile=False, float_for="report")
    if len(model.input_shape_) != 3:
        raise UsageError(f"{args.model_file}: report takes image models (H, W, C), this one "
                         f"takes {model.input_shape_}")
    data, recipe = _recorded_data(args.data, info, model, args.model_file)
    if args.samples < 1:
        raise UsageError(f"--samples must be positive, got {args.samples}")
    log = None
    if args.log is not None:
        if not os.path.isfile(args.log):
            raise UsageError(f"no such training log {args.log!r}")
        log = load_diagnostics(args.log)
        if log.get("model") != model.name:
            print(f"note: {args.log} is the log of a model named {log.get('model')!r}, "
                  f"{args.model_file} holds {model.name!r}", file=sys.stderr)
    class_names = info.recorded(META_CLASSES) or data.class_names
    out = write_report(model, args.out, apply_preprocessing(data.x_test, recipe), data.y_test,
                       images=data.x_test, class_names=class_names, log=log,
                       dataset=data.description, samples=args.samples, png_dir=args.png)
    print(f"{data.description}: {len(data.x_test):,} test images")
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB); open it in a browser")
    return 0


def cmd_info(args) -> int:
    import cnnfast

    cnnfast.show_config()
    return 0


# -- parser ---------------------------------------------------------------------------------

def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(p) for p in text.replace("x", ",").split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W,C (e.g. 32,32,3), got {text!r}") from None
    if len(dims) != 3 or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"expected three positive sizes H,W,C, got {text!r}")
    return dims


def _saved_data_option(command) -> None:
    """--data of the commands that run a saved model (evaluate, quantize, report)."""
    command.add_argument("--data", default="auto", metavar="DATA",
                         help="as for train; default: the dataset the model was trained on")


def build_parser() -> ArgumentParser:
    from cnnfast import models

    common = ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    parser = ArgumentParser(prog="cnnfast", parents=[common],
                            description="Train, evaluate and run classic CNNs on the CPU.",
                            epilog="'cnnfast COMMAND --help' describes each command.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    zoo = ", ".join(models.names())

    t = sub.add_parser("train", parents=[common], help="train a zoo model or continue a saved one",
                       description="Train a zoo model (or continue training a saved model file) "
                                   "and save it; prints the test accuracy.")
    t.add_argument("model", help=f"a zoo name ({zoo}) or a saved model file")
    t.add_argument("--data", default="auto", metavar="DATA",
                   help="mnist, fashion_mnist, cifar10, sample (the MNIST sample inside "
                        "cnnfast) or a path (.npz with x_train/y_train/x_test/y_test, or a "
                        "dataset directory); default: the model's dataset if found on this "
                        "machine, else the sample")
    t.add_argument("--epochs", type=int, help=f"epochs to train (default {DEFAULT_EPOCHS}; "
                                              f"lenet5: {TRAINING_DEFAULTS['lenet5']['epochs']})")
    t.add_argument("--batch-size", type=int, help=f"batch size (default {DEFAULT_BATCH_SIZE}; "
                                                  f"lenet5: {TRAINING_DEFAULTS['lenet5']['batch_size']})")
    t.add_argument("--optimizer", help="adam (default), sgd, rmsprop, adagrad, adadelta, adamax, "
                                        "nadam, adamw or lion")
    t.add_argument("--lr", type=float, help="learning rate (default: the optimizer's)")
    t.add_argument("--seed", type=int, help="seed initialisation, shuffling and dropout")
    t.add_argument("--threads", type=int, help="kernel threads (default: all cores; under "
                                               "mpirun, the rank's cores)")
    t.add_argument("--validation-split", type=float, default=0.0, metavar="FRACTION",
                   help="fraction of the training images held out for validation")
    t.add_argument("--fc-units", type=int, help="width of the VGG fully connected layers")
    t.add_argument("--precision", choices=["float32", "bfloat16"],
                   help="bfloat16: mixed-precision training, bfloat16 products with float32 "
                        "weights (default: float32, or a saved model's own)")
    t.add_argument("--out", help="where to save the model (default MODEL.cnnfast here)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--log", metavar="RUN_FILE",
                   help="write a training log (JSON: per-epoch metrics, weight and gradient "
                        "histograms, dead ReLUs, first-layer filters) for 'cnnfast report'")
    t.set_defaults(run=cmd_train)

    e = sub.add_parser("evaluate", parents=[common], help="loss and accuracy of a saved model",
                       description="Loss and accuracy of a saved model on a test set.")
    e.add_argument("model_file", help="a saved model file")
    _saved_data_option(e)
    e.add_argument("--batch-size", type=int, default=256)
    e.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("predict", parents=[common], help="classify images with a saved model",
                       description="Classify images: PGM/PPM, PNG/JPEG (needs Pillow: "
                                   "pip install 'cnnfast[image]') or .npy arrays of pixel values "
                                   "0-255 (one image or a batch). One line per image: "
                                   "FILE: CLASS (PROBABILITY).")
    p.add_argument("model_file", help="a saved model file")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image or .npy files")
    p.add_argument("--top", type=int, default=1, metavar="K", help="the K most likely classes")
    p.add_argument("--json", action="store_true",
                   help='print [{"input": FILE, "top": [[class, probability], ...]}, ...]')
    p.add_argument("--resize", action="store_true",
                   help="resize (bilinear) images whose size differs from the model's input")
    p.set_defaults(run=cmd_predict)

    q = sub.add_parser("quantize", parents=[common], help="an int8 copy of a saved model",
                       description="Quantize a saved model to int8 (cnnfast.quantize: int8 "
                                   "weights per output channel, uint8 activations calibrated "
                                   "on training images) and save it; prints the test accuracy "
                                   "of both. predict, evaluate and the C API run the result.")
    q.add_argument("model_file", help="a saved (float32) model file")
    _saved_data_option(q)
    q.add_argument("--calibration", type=int, default=500, metavar="N",
                   help="training images to calibrate the activation ranges on (default 500)")
    q.add_argument("--skip", nargs="+", metavar="LAYER", help="layers to keep in float32")
    q.add_argument("--out", help="where to save (default MODEL-int8.cnnfast here)")
    q.set_defaults(run=cmd_quantize)

    s = sub.add_parser("summary", parents=[common], help="shape/parameter/FLOP/memory analysis",
                       description="Analyse a model from its shapes alone (no weights are "
                                   "created).")
    s.add_argument("model", help=f"a saved model file or a zoo name: {zoo}")
    s.add_argument("--input-shape", type=_shape, metavar="H,W,C", help="input shape, e.g. 32,32,3")
    s.add_argument("--classes", type=int, help="number of output classes")
    s.add_argument("--fc-units", type=int, help="width of the VGG fully connected layers")
    s.add_argument("--optimizer", default=None,
                   help='optimizer whose state counts in the training memory ("adam", "sgd", ...)')
    s.add_argument("--batch-size", type=int, default=1, help="batch size for the memory totals")
    s.add_argument("--markdown", action="store_true", help="print a Markdown table")
    s.set_defaults(run=cmd_summary)

    r = sub.add_parser("report", parents=[common], help="one offline HTML page about a model",
                       description="Write one self-contained HTML page about a saved model: "
                                   "architecture, a convolution playground, filters, feature "
                                   "maps, saliency maps, the confusion matrix with its "
                                   "mistakes, and (with --log) training curves and histograms.")
    r.add_argument("model_file", help="a saved model file")
    _saved_data_option(r)
    r.add_argument("--log", metavar="RUN_FILE", help="a training log from 'cnnfast train --log'")
    r.add_argument("-o", "--out", default="report.html", help="the page to write "
                                                              "(default report.html)")
    r.add_argument("--samples", type=int, default=4,
                   help="test images shown with saliency maps (default 4)")
    r.add_argument("--png", metavar="DIR", help="also save every picture as a PNG file in DIR "
                                                "(needs matplotlib: pip install 'cnnfast[plot]')")
    r.set_defaults(run=cmd_report)

    i = sub.add_parser("info", parents=[common], help="the build: SIMD paths, threads, flags",
                       description="Print cnnfast.show_config().")
    i.set_defaults(run=cmd_info)
    return parser


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines() or [type(err).__name__]
    return lines[0] + (" (--debug for details)" if len(lines) > 1 else "")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0, 2 for errors, 130 for Ctrl-C)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    command = next((a for a in argv if not a.startswith("-")), "")
    prog = f"cnnfast {command}".strip()
    try:
        parser = build_parser()
        if not argv:
            parser.print_help()
            return 0
        args = parser.parse_args(argv)
        if args.command is None:
            parser.print_help()
            return 0
        return args.run(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `cnnfast ... | head`: the reader is gone; end quietly, and keep Python from
        # complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except SystemExit:
        raise
    except Exception as err:  # every error becomes one line, unless --debug
        if debug:
            raise
        known = isinstance(err, (UsageError, ValueError, TypeError, OSError, KeyError,
                                 NotImplementedError, FloatingPointError))
        text = _one_line(err)
        if known:
            print(f"{prog}: error: {text}", file=sys.stderr)
            return EXIT_USAGE
        print(f"{prog}: internal error: {type(err).__name__}: {text} (--debug shows the "
              f"traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
