"""Train CIFAR-10 networks within a time budget and record the accuracy they reach.

    OMP_PROC_BIND=close python bench/train_cifar10.py --budget 1800         # both models
    python bench/train_cifar10.py --models vgg-small --budget 3600 --download
    python bench/train_cifar10.py --quick --synthetic                        # smoke test

Models:
  cifar10-simple  zoo.cifar10_simple (conv 12@3x3 same, max-pool, dense 10), Adam 1e-3.
  vgg-small       a VGG-style network for 32x32 inputs: [conv 3x3 same relu x2, max-pool 2]
                  with 32, 64, 128 filters, then dense 256 relu, dropout 0.5, dense 10
                  (814,122 parameters); Adam 1e-3.
  vgg16           zoo.vgg16(input_shape=(32, 32, 3), classes=10, fc_units=512) (15 M
                  parameters; slow on few cores).

Training data stays uint8 and is fed by cnnfast.data.BatchIterator (scale 1/255, random crop
with zero padding 4 and horizontal flip, seeded); each run trains until its time budget is
spent (checked after every batch) or --epochs, then evaluates the full test set.

CIFAR-10 is looked up like cnnfast.datasets.cifar10.load_data (no download unless --download).
When it is not available the script says so and skips; --synthetic trains on random
CIFAR-shaped data instead, which measures speed only (accuracy is then meaningless and is not
reported). Results: bench/results/training.md (+ <run>.png curves); --quick writes to a temporary
directory. Not run in CI.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

import cnnfast as cf
from bench.training_report import TimeBudget, TrainTimer, output_dir, record, result_row
from cnnfast import datasets
from cnnfast import layers as L
from cnnfast.data import BatchIterator, cifar10_augmentation


def vgg_small(input_shape=(32, 32, 3), classes: int = 10) -> cf.Sequential:
    """Three VGG blocks (two 3x3 'same' convolutions and a 2x2 max-pool each), then a
    256-unit dense layer with dropout: the usual 'VGG-style' CIFAR-10 tutorial network."""
    layers: list[L.Layer] = [L.Input(input_shape)]
    for filters in (32, 64, 128):
        layers += [L.Conv2D(filters, 3, padding="same", activation="relu"),
                   L.Conv2D(filters, 3, padding="same", activation="relu"),
                   L.MaxPooling2D(2)]
    layers += [L.Flatten(), L.Dense(256, activation="relu"), L.Dropout(0.5),
               L.Dense(classes, activation="softmax")]
    return cf.Sequential(layers, name="vgg_small")


MODELS = {
    "cifar10-simple": lambda: cf.models.cifar10_simple(),
    "vgg-small": vgg_small,
    "vgg16": lambda: cf.models.vgg16(input_shape=(32, 32, 3), classes=10, fc_units=512),
}


def load(args):
    """(x_train, y_train, x_test, y_test, description) or None when CIFAR-10 is missing."""
    if args.synthetic:
        rng = np.random.default_rng(0)
        n_train, n_test = (2000, 500) if args.quick else (10000, 2000)
        return (rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
                rng.integers(0, 10, (n_train, 1), dtype=np.uint8),
                rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8),
                rng.integers(0, 10, (n_test, 1), dtype=np.uint8), "synthetic")
    try:
        (x_train, y_train), (x_test, y_test) = datasets.cifar10.load_data(
            path=args.data_dir, download=args.download)
    except datasets.DatasetNotFoundError as err:
        print("CIFAR-10 is not available on this machine, so the CIFAR-10 runs are skipped "
              "(use --download, --data-dir, or --synthetic for a speed-only run).\n"
              f"{err}", file=sys.stderr)
        return None
    if args.quick:
        x_train, y_train, x_test, y_test = x_train[:2000], y_train[:2000], x_test[:500], y_test[:500]
    return x_train, y_train, x_test, y_test, "cifar10"


def run(name: str, data, args, out: Path) -> None:
    x_train, y_train, x_test, y_test, source = data
    synthetic = source == "synthetic"
    cf.set_seed(args.seed)
    model = MODELS[name]()
    model.compile(optimizer=cf.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    batches = BatchIterator(x_train, y_train, batch_size=args.batch, scale=1 / 255,
                            augment=None if args.no_augment else cifar10_augmentation(), seed=args.seed)
    x_test_f = x_test.astype(np.float32) / 255
    timer = TrainTimer(len(x_train))
    budget = TimeBudget(args.budget)
    epochs = args.epochs or (1 if args.quick else 1000)
    print(f"== {name} on {source}: {len(x_train)}/{len(x_test)} images, batch {args.batch}, "
          f"budget {args.budget or 'none'} s, {cf.get_num_threads()} threads, "
          f"{model.count_params():,} parameters", flush=True)
    start = time.perf_counter()
    history = model.fit(batches, epochs=epochs, validation_data=(x_test_f, y_test),
                        callbacks=[timer, budget], verbose=args.verbose)
    _, accuracy = model.evaluate(x_test_f, y_test, batch_size=500, verbose=0)
    wall = time.perf_counter() - start
    shown = None if synthetic else accuracy
    print(f"   test accuracy {'n/a (synthetic data)' if synthetic else f'{100 * accuracy:.2f}%'}, "
          f"{len(history.epoch)} epochs in {wall:.0f} s", flush=True)
    suffix = ("-synthetic" if synthetic else "") + ("-quick" if args.quick else "")
    budget_text = f", budget {args.budget:.0f} s" if args.budget else ""
    row = result_row(name + suffix, name, f"{source} {len(x_train)}/{len(x_test)}",
                     len(history.epoch), args.batch,
                     f"Adam 1e-3{'' if args.no_augment else ', crop+flip'}{budget_text}",
                     shown, None, wall, timer)
    record(out, name + suffix, row, None if synthetic else history, f"{name} on {source}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cifar10-simple,vgg-small",
                        help=f"comma-separated from {list(MODELS)}")
    parser.add_argument("--budget", type=float, default=1800.0,
                        help="seconds of training per model (default 1800)")
    parser.add_argument("--epochs", type=int, help="at most this many epochs")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--quick", action="store_true", help="1 epoch on 2000/500 images (smoke test)")
    parser.add_argument("--synthetic", action="store_true", help="random data: speed only")
    parser.add_argument("--download", action="store_true", help="allow the 170 MB download")
    parser.add_argument("--data-dir", help="directory with the CIFAR-10 binary batches or archive")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="results directory (default bench/results; --quick: a temp dir)")
    parser.add_argument("--verbose", type=int, default=2, choices=[0, 1, 2])
    args = parser.parse_args(argv)
    if args.quick and args.budget == 1800.0:
        args.budget = None
    if args.threads:
        cf.set_num_threads(args.threads)
    names = args.models.split(",")
    for name in names:
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; known: {list(MODELS)}")
    data = load(args)
    if data is None:
        return
    out = output_dir(args.out, args.quick)
    for name in names:
        run(name, data, args, out)


if __name__ == "__main__":
    main()
