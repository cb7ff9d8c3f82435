"""One model's training step or batch-1 predict, repeated for a profiler, with its time.

    OMP_PROC_BIND=close PYTHONPATH=. python dev/profile_step.py train vgg16_cifar --steps 12
    perf record -o step.data python dev/profile_step.py train keras_mnist_cnn --steps 60
    perf report -i step.data --no-children --stdio

`perf` names cnnfast's kernels only on a build with symbols (the Release extension is
stripped): configure a copy of the tree with -DCMAKE_BUILD_TYPE=RelWithDebInfo
-DCNNFAST_INPLACE=ON. The step runs on synthetic data, as bench/bench_train.py does.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import cnnfast as cf

# name: (model, batch, optimizer); bench/bench_train.py's and bench/bench_resnet.py's settings.
MODELS = {
    "resnet20": (lambda: cf.models.resnet20(), 128, "sgd"),
    "vgg16_cifar": (lambda: cf.models.vgg16(input_shape=(32, 32, 3), classes=10, fc_units=512),
                    64, "sgd"),
    "keras_mnist_cnn": (lambda: cf.models.keras_mnist_cnn((28, 28, 1)), 128, "adam"),
    "lenet5": (lambda: cf.models.lenet5((28, 28, 1)), 128, "sgd"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["train", "predict"])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", default="float32", choices=["float32", "bfloat16"],
                        help="compile(precision=...) for train")
    args = parser.parse_args()
    cf.set_num_threads(args.threads)
    cf.set_seed(0)
    build, batch, opt = MODELS[args.model]
    model = build()
    model.build()
    model.compile(cf.optimizers.SGD(0.01, momentum=0.9) if opt == "sgd" else "adam",
                  "sparse_categorical_crossentropy", precision=args.precision)
    rng = np.random.default_rng(0)
    n = batch if args.what == "train" else 1
    x = rng.random((n,) + model.input_shape_, dtype=np.float32)
    y = rng.integers(0, model.output_shape_[-1], n)
    step = (lambda: model.train_on_batch(x, y)) if args.what == "train" else (
        lambda: model.predict(x))
    for _ in range(3):  # buffers, page faults, thread pools
        step()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    ms = (time.perf_counter() - start) / args.steps * 1e3
    print(f"{args.what} {args.model} batch {n}, {args.threads} thread(s), {args.precision}: "
          f"{ms:.3f} ms per call")


if __name__ == "__main__":
    main()
