"""Per-step times of a zoo model's float32 and int8 (cnnfast.quantize) networks at batch 128.

    OMP_PROC_BIND=close PYTHONPATH=. python dev/int8_step_times.py lenet5 [--skip c1] [--calls 300]

As bench/bench_quantize.py runs them: Glorot weights, the embedded MNIST sample's first 128
images (calibration on the same), one thread unless --threads. Prints, per step of each
network's describe(), the mean microseconds over the calls (each timed inside the one C++
call), then the whole forward's.
"""

from __future__ import annotations

import argparse

import numpy as np

import cnnfast as cf
from dev.network_step_times import print_step_times

MODELS = {"lenet5": lambda: cf.models.lenet5((28, 28, 1)),
          "keras_mnist_cnn": lambda: cf.models.keras_mnist_cnn()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("--skip", nargs="*", default=[], help="layers quantize() keeps float32")
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    cf.set_num_threads(args.threads)
    cf.set_seed(0)
    model = MODELS[args.model]()
    model.build()
    (x, _), _ = cf.datasets.mnist.load_data(sample=True)
    x = (x[:128].astype(np.float32) / 255.0)[..., None]
    model.predict(x, batch_size=128)
    print(f"== {args.model} float32")
    print_step_times(model._inference_network(), x, model.output_shape_, args.calls)
    quantized = cf.quantize(model, x, skip=args.skip)
    print(f"== {args.model} int8" + (f", {args.skip} float32" if args.skip else ""))
    print_step_times(quantized._net(), x, model.output_shape_, args.calls)


if __name__ == "__main__":
    main()
