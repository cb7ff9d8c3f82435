"""End-to-end training and inference throughput: cnnfast vs PyTorch (channels-last) vs NumPy.

    OMP_PROC_BIND=close env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python -m bench train

The PyTorch network is translated layer by layer from the cnnfast model, so both train the same
architecture with the same optimizer and batch size on the same synthetic data.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

import cnnfast as cf
from bench.common import SETTLE_SECONDS, environment, median, set_threads, time_rounds, torch
from bench.numpy_cnn import NumpyCNN
from cnnfast import layers as L
from cnnfast import models


def torch_model(model: cf.Sequential):
    """The same architecture in PyTorch (NCHW tensors in channels_last memory)."""
    nn = torch.nn
    mods = []
    acts = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "elu": nn.ELU, "swish": nn.SiLU}
    for layer, in_shape, _ in model.shapes():
        if isinstance(layer, L.Conv2D):
            kh, kw = layer.kernel_size
            if layer.padding == "same":
                pad = (layer.pad_top, layer.pad_left)
            elif layer.padding == "valid":
                pad = (0, 0)
            else:
                pad = layer.padding
            mods.append(nn.Conv2d(in_shape[-1], layer.filters, (kh, kw), layer.strides, pad,
                                  groups=layer.groups, bias=layer.use_bias))
            if layer.act.kind in acts:
                mods.append(acts[layer.act.kind]())
        elif isinstance(layer, L.MaxPooling2D):
            mods.append(nn.MaxPool2d(layer.pool_size, layer.strides))
        elif isinstance(layer, L.AveragePooling2D):
            mods.append(nn.AvgPool2d(layer.pool_size, layer.strides))
        elif isinstance(layer, L.Flatten):
            mods.append(nn.Flatten())
        elif isinstance(layer, L.Dropout):
            mods.append(nn.Dropout(layer.rate))
        elif isinstance(layer, L.Dense):
            mods.append(nn.Linear(in_shape[-1], layer.units))
            if layer.act.kind in acts:  # a softmax output folds into CrossEntropyLoss
                mods.append(acts[layer.act.kind]())
        elif type(layer).__name__ == "LocalResponseNormalization":
            mods.append(nn.LocalResponseNorm(2 * layer.depth_radius + 1, layer.alpha * (2 * layer.depth_radius + 1),
                                             layer.beta, layer.bias))
        else:
            raise NotImplementedError(f"no torch translation for {layer.describe()}")
    return nn.Sequential(*mods).to(memory_format=torch.channels_last)


NETWORKS = {
    # name: (constructor, optimizer, batch sizes)
    "keras_mnist_cnn": (models.keras_mnist_cnn, "adam", (128,)),
    "lenet5": (models.lenet5, "sgd", (128, 32)),
    "vgg16_cifar": (lambda: models.vgg16(input_shape=(32, 32, 3), classes=10, fc_units=512), "sgd", (64,)),
}
NUMPY_SPEC = [("conv", 64, 3), ("pool",), ("conv", 64, 3), ("pool",), ("conv", 64, 3), ("flatten",),
              ("dropout", 0.2), ("dense", 10)]


def synthetic(model: cf.Sequential, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.random((n,) + model.input_shape_, dtype=np.float32)
    labels = rng.integers(0, model.output_shape_[-1], n)
    return x, np.eye(model.output_shape_[-1], dtype=np.float32)[labels], labels


def torch_training_epoch(tm, topt, x: np.ndarray, labels: np.ndarray, batch: int,
                         steps: int, autocast: bool = False):
    """One shuffled epoch of `steps` batches of PyTorch training (channels-last, cross-entropy
    on the logits), as a callable for time_rounds; x is NHWC, converted once. `autocast`: the
    forward and loss under torch.autocast("cpu", dtype=torch.bfloat16)."""
    tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(
        memory_format=torch.channels_last)
    ty = torch.from_numpy(labels)
    loss_fn = torch.nn.CrossEntropyLoss()

    def torch_epoch():
        tm.train()
        perm = torch.randperm(len(tx))
        for s in range(steps):
            idx = perm[s * batch:(s + 1) * batch]
            topt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = loss_fn(tm(tx[idx].contiguous(memory_format=torch.channels_last)),
                               ty[idx])
            loss.backward()
            topt.step()

    return torch_epoch


def training_epochs(name: str, batch: int, steps: int,
                    precision: str = "float32") -> dict[str, Callable[[], object]]:
    """One epoch of `steps` batches for each contender, on the same synthetic data (cnnfast
    compiled with `precision`)."""
    build, opt, _ = NETWORKS[name]
    cf.set_seed(0)
    model = build()
    model.build()
    model.compile(optimizer=cf.optimizers.SGD(0.01, momentum=0.9) if opt == "sgd" else "adam",
                  loss="categorical_crossentropy", precision=precision)
    x, y, labels = synthetic(model, batch * steps)
    fns = {"cnnfast": lambda: model.fit(x, y, batch_size=batch, epochs=1, verbose=0)}
    if torch is not None:
        tm = torch_model(model)
        topt = (torch.optim.SGD(tm.parameters(), lr=0.01, momentum=0.9) if opt == "sgd"
                else torch.optim.Adam(tm.parameters(), lr=1e-3, eps=1e-7))
        fns["torch"] = torch_training_epoch(tm, topt, x, labels, batch, steps)
    if name == "keras_mnist_cnn":
        npm = NumpyCNN(NUMPY_SPEC, model.input_shape_)

        def numpy_epoch():
            perm = np.random.default_rng(0).permutation(len(x))
            for s in range(steps):
                idx = perm[s * batch:(s + 1) * batch]
                npm.train_step(x[idx], y[idx])

        fns["numpy"] = numpy_epoch
    return fns


def bench_training(name: str, batch: int, steps: int, rounds: int) -> dict[str, float]:
    """images/s of one epoch of `steps` batches for each contender."""
    times = time_rounds(training_epochs(name, batch, steps), rounds=rounds, settle=SETTLE_SECONDS)
    return {k: batch * steps / median(v) for k, v in times.items()}


def bench_scaling(name: str, batch: int, steps: int, threads: int, rounds: int) -> dict[str, float]:
    """Speedup of `threads` threads over one, for cnnfast and torch, with the 1-thread and
    `threads`-thread epochs alternating in the same rounds.

    The quotient of the train rows at 1T and 2T compares runs a minute or more apart, and this
    VM's throughput drifts by 10% between minutes: for the same code on one morning it read
    1.65x to 2.04x for the Keras CNN. Alternating both thread counts in one window, as the
    contenders alternate everywhere else, leaves the drift out of the quotient."""
    epochs = training_epochs(name, batch, steps)
    setters = {"cnnfast": cf.set_num_threads}
    if torch is not None:
        setters["torch"] = torch.set_num_threads

    def with_threads(contender: str, n: int):
        def run():
            setters[contender](n)
            return epochs[contender]()
        return run

    fns = {f"{c} {n}T": with_threads(c, n) for c in setters for n in (1, threads)}
    times = time_rounds(fns, rounds=rounds, settle=SETTLE_SECONDS)
    set_threads(threads)
    return {c: median(times[f"{c} 1T"]) / median(times[f"{c} {threads}T"]) for c in setters}


def bench_inference(name: str, batch: int, steps: int, rounds: int) -> dict[str, float]:
    build, _, _ = NETWORKS[name]
    cf.set_seed(0)
    model = build()
    model.build()
    x, _, _ = synthetic(model, batch * steps)
    fns = {"cnnfast": lambda: model.predict(x, batch_size=batch)}
    if torch is not None:
        tm = torch_model(model).eval()
        tx = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).contiguous(memory_format=torch.channels_last)

        def torch_predict():
            with torch.inference_mode():
                for s in range(steps):
                    tm(tx[s * batch:(s + 1) * batch])

        fns["torch"] = torch_predict
    times = time_rounds(fns, rounds=rounds)
    return {k: batch * steps / median(v) for k, v in times.items()}


def rows(threads: int, rounds: int = 5, quick: bool = False) -> list[list]:
    """Rows: [benchmark, unit, cnnfast, torch, numpy, cnnfast/torch, cnnfast/numpy]."""
    set_threads(threads)
    out = []

    def add(label, unit, res):
        c, t, n = res.get("cnnfast"), res.get("torch"), res.get("numpy")
        out.append([label, unit, c, t, n, c / t if t else None, c / n if n else None])
        print(out[-1], flush=True)

    # Batches per epoch: VGG16 always 4 (a step takes ~0.3 s), and --quick leaves it out.
    names = [n for n in NETWORKS if not (quick and n == "vgg16_cifar")]
    steps = {n: 4 if quick or n == "vgg16_cifar" else 10 for n in names}
    for name in names:
        for b in NETWORKS[name][2]:
            add(f"train {name} b{b} ({threads}T)", "img/s",
                bench_training(name, b, steps[name], rounds))
    if not quick:
        add(f"infer vgg16_cifar b64 ({threads}T)", "img/s",
            bench_inference("vgg16_cifar", 64, steps["vgg16_cifar"], rounds))
    if threads > 1:
        # The conv-heavy networks' speedup over one thread, both timed in the same rounds.
        for name in (n for n in ("keras_mnist_cnn", "vgg16_cifar") if n in names):
            b = NETWORKS[name][2][0]
            sp = bench_scaling(name, b, steps[name], threads, rounds)
            out.append([f"train {name} b{b}, speedup {threads}T / 1T (same rounds)", "x",
                        sp["cnnfast"], sp.get("torch"), None, None, None])
            print(out[-1], flush=True)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print("\n".join(environment()))
    rows(args.threads, args.rounds, args.quick)


if __name__ == "__main__":
    main()
