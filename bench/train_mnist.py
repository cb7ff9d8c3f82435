"""Train the classic MNIST networks to their published accuracy and record the results.

    OMP_PROC_BIND=close python bench/train_mnist.py                  # all runs, full length
    python bench/train_mnist.py --runs lenet5-mnist --epochs 20
    python bench/train_mnist.py --quick                               # smoke test: 1 epoch, 2000 images
    python bench/train_mnist.py --runs keras-cnn-mnist --precision bfloat16   # mixed precision

Runs (targets from the literature):
  lenet5-mnist        LeNet-5 (zoo.lenet5, 28x28 zero-padded to 32x32, inputs standardised),
                      Adam 1e-3 decayed x0.3 at epochs 10 and 15, batch 128, 20 epochs: >= 99.0%
                      (LeCun et al. 1998 report 0.95% error).
  keras-cnn-mnist     the Keras MNIST CNN (zoo.keras_mnist_cnn), Adam defaults, batch 128,
                      10 epochs, inputs x/255: >= 99.2%.
  keras-cnn-fashion   the same network and recipe on Fashion-MNIST: >= 91%.
  keras-example-cnn-mnist / -fashion
                      the engine issue's example network (README "Use": Conv2D(64,3,relu),
                      MaxPool 2, Conv2D(64,3,relu), Flatten, Dropout(0.2), Dense(10, softmax);
                      115,018 parameters), same recipe: >= 99.2% / >= 91%.

Results go to bench/results/training.md (+ training.json, <run>.png curves); --quick writes to
a temporary directory instead so smoke runs never overwrite the recorded numbers. Not run in CI.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

import cnnfast as cf
from bench.training_report import (
    TimeBudget,
    TrainTimer,
    output_dir,
    record,
    result_row,
    step_decay,
)
from cnnfast import datasets

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"

RUNS = {
    # run: (dataset module, model builder, epochs, batch, target accuracy)
    "lenet5-mnist": ("mnist", "lenet5", 20, 128, 0.990),
    "keras-cnn-mnist": ("mnist", "keras_mnist_cnn", 10, 128, 0.992),
    "keras-cnn-fashion": ("fashion_mnist", "keras_mnist_cnn", 10, 128, 0.91),
    "keras-example-cnn-mnist": ("mnist", "keras_example_cnn", 10, 128, 0.992),
    "keras-example-cnn-fashion": ("fashion_mnist", "keras_example_cnn", 10, 128, 0.91),
}


def keras_example_cnn(input_shape=(28, 28, 1), classes=10) -> cf.Sequential:
    """The network of the README's "Use" example (two convolutions, one pooling)."""
    layers = cf.layers
    return cf.Sequential([
        layers.Input(input_shape),
        layers.Conv2D(64, 3, activation="relu"),
        layers.MaxPooling2D(2),
        layers.Conv2D(64, 3, activation="relu"),
        layers.Flatten(),
        layers.Dropout(0.2),
        layers.Dense(classes, activation="softmax"),
    ], name="keras_example_cnn")


BUILDERS = {"lenet5": cf.models.lenet5, "keras_mnist_cnn": cf.models.keras_mnist_cnn,
            "keras_example_cnn": keras_example_cnn}


def load(name: str, quick: bool, data_dir: str | None):
    loader = getattr(datasets, name)
    folder = "mnist" if name == "mnist" else "fashion-mnist"
    if data_dir:
        arrays = loader.load_data(path=Path(data_dir) / folder)
    else:
        try:
            arrays = loader.load_data()
        except datasets.DatasetNotFoundError:
            # The team's shared copy (../shared/datasets/mnist) when nothing else has it.
            if not (SHARED / folder).is_dir():
                raise
            arrays = loader.load_data(path=SHARED / folder)
    (x_train, y_train), (x_test, y_test) = arrays
    if quick:
        x_train, y_train, x_test, y_test = x_train[:2000], y_train[:2000], x_test[:500], y_test[:500]
    return x_train, y_train, x_test, y_test


def prepare(model_name: str, x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32) / 255.0
    if model_name == "lenet5":
        # LeNet-5 takes 32x32 inputs (the paper pads MNIST's 28x28 digits); standardise so the
        # background sits near -0.42, close to the paper's -0.1, which suits the tanh units.
        x = np.pad(x, ((0, 0), (2, 2), (2, 2)))
        x = (x - MNIST_MEAN) / MNIST_STD
    return x[..., None]


def run(name: str, args, out: Path) -> None:
    data_name, model_name, epochs, batch, target = RUNS[name]
    epochs = args.epochs or (1 if args.quick else epochs)
    x_train, y_train, x_test, y_test = load(data_name, args.quick, args.data_dir)
    x_train, x_test = prepare(model_name, x_train), prepare(model_name, x_test)
    y_train_1h = cf.utils.to_categorical(y_train, 10)
    y_test_1h = cf.utils.to_categorical(y_test, 10)

    cf.set_seed(args.seed)
    model = BUILDERS[model_name](input_shape=x_train.shape[1:], classes=10)
    optimizer = cf.optimizers.Adam(1e-3)
    model.compile(optimizer=optimizer, loss="categorical_crossentropy", metrics=["accuracy"],
                  precision=args.precision)
    timer = TrainTimer(len(x_train))
    callbacks = [timer, TimeBudget(args.budget)]
    opt_text = "Adam 1e-3" + (", bfloat16 products" if args.precision == "bfloat16" else "")
    if model_name == "lenet5" and not args.quick:
        callbacks.append(step_decay(1e-3, {10: 0.3, 15: 0.3}))
        opt_text = "Adam 1e-3, x0.3 at 10, 15"
    print(f"== {name}: {model_name} on {data_name}, {len(x_train)}/{len(x_test)} images, "
          f"{epochs} epochs, batch {batch}, {cf.get_num_threads()} threads, {args.precision}",
          flush=True)
    start = time.perf_counter()
    history = model.fit(x_train, y_train_1h, batch_size=batch, epochs=epochs,
                        validation_data=(x_test, y_test_1h), callbacks=callbacks,
                        verbose=args.verbose)
    loss, accuracy = model.evaluate(x_test, y_test_1h, batch_size=500, verbose=0)
    wall = time.perf_counter() - start
    print(f"   test accuracy {100 * accuracy:.2f}% (target {100 * target:.1f}%), loss {loss:.4f}, "
          f"{wall:.0f} s", flush=True)
    run_name = (name + ("-bf16" if args.precision == "bfloat16" else "")
                + ("-quick" if args.quick else ""))
    row = result_row(run_name, model_name, f"{data_name} {len(x_train)}/{len(x_test)}",
                     len(history.epoch), batch, opt_text, accuracy,
                     None if args.quick else target, wall, timer)
    record(out, run_name, row, history, f"{name}: {model_name} on {data_name}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=",".join(RUNS), help=f"comma-separated from {list(RUNS)}")
    parser.add_argument("--quick", action="store_true", help="1 epoch on 2000/500 images (smoke test)")
    parser.add_argument("--epochs", type=int, help="override every run's epoch count")
    parser.add_argument("--budget", type=float, help="stop each run after this many seconds")
    parser.add_argument("--threads", type=int, help="cnnfast threads (default: all cores)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                        help="compile(precision=...): bfloat16 is mixed-precision training "
                             "(runs are recorded as <run>-bf16)")
    parser.add_argument("--data-dir", help="directory holding mnist/ and fashion-mnist/ "
                        "(default: the cnnfast.datasets lookup, then ../shared/datasets)")
    parser.add_argument("--out", help="results directory (default bench/results; --quick: a temp dir)")
    parser.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2])
    args = parser.parse_args(argv)
    if args.threads:
        cf.set_num_threads(args.threads)
    out = output_dir(args.out, args.quick)
    for name in args.runs.split(","):
        if name not in RUNS:
            parser.error(f"unknown run {name!r}; known: {list(RUNS)}")
        try:
            run(name, args, out)
        except datasets.DatasetNotFoundError as err:
            print(f"== {name}: skipped, dataset not available:\n{err}", file=sys.stderr)


if __name__ == "__main__":
    main()
