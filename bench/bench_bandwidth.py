"""Memory-bound kernels against the machine's copy bandwidth, cnnfast vs PyTorch, in one run.

    OMP_PROC_BIND=close python -m bench bandwidth

For pooling, activations, batch normalization, the residual join and softmax-cross-entropy on
training-sized tensors, prints the
effective bandwidth (bytes each kernel must read and write / median time). The `numpy` column
is a single-threaded `np.copyto` over the same number of bytes (one core's bandwidth ceiling
for this working set), so at one thread `x numpy` is the fraction of that ceiling a kernel
reaches; `x torch` compares with PyTorch's channels-last kernel for the same op. Every
contender (and the copy) is timed in rounds of its own, so none starts from caches another filled.
"""

from __future__ import annotations

import numpy as np

from bench.common import median, set_threads, time_rounds, torch
from cnnfast import _core

# (label, input shape NHWC) - the Keras MNIST CNN's first pooling and activation at batch 128.
FEATURES = (128, 26, 26, 64)
LOGITS = (4096, 1000)
RESNET_STAGE1 = (128, 32, 32, 16)


def _copy_bandwidth(nbytes: int, rounds: int) -> float:
    src = np.ones(nbytes // 4, np.float32)
    dst = np.empty_like(src)
    t = median(time_rounds({"copy": lambda: np.copyto(dst, src)}, rounds=rounds)["copy"])
    return 2 * nbytes / t / 1e9


def _case(label, nbytes, ours, theirs, rounds):
    # Each contender in rounds of its own, like the np.copyto baseline: alternating with PyTorch
    # would start every cnnfast round from caches PyTorch just filled (up to ~100 MB here), which
    # the copy it is compared with never pays.
    fns = {"cnnfast": ours}
    if theirs is not None:
        fns["torch"] = theirs
    gbs = {k: nbytes / median(time_rounds({k: fn}, rounds=rounds)[k]) / 1e9 for k, fn in fns.items()}
    copy = _copy_bandwidth(nbytes // 2, rounds)
    t = gbs.get("torch")
    return [label, "GB/s", gbs["cnnfast"], t, copy, gbs["cnnfast"] / t if t else None,
            gbs["cnnfast"] / copy]


def rows(threads: int, rounds: int = 15) -> list[list]:
    set_threads(threads)
    rng = np.random.default_rng(0)
    x = rng.standard_normal(FEATURES, dtype=np.float32)
    n, h, w, c = FEATURES
    pooled = np.empty((n, h // 2, w // 2, c), np.float32)
    argmax = np.empty(pooled.shape, np.int32)
    dx = np.empty_like(x)
    y = np.empty_like(x)
    tx = torch.from_numpy(x).permute(0, 3, 1, 2) if torch is not None else None  # NHWC memory
    out = []

    def add(row):
        out.append(row)
        print(row, flush=True)

    # Max-pool forward with argmax: reads x, writes y and the int32 argmax.
    nbytes = x.nbytes + pooled.nbytes + argmax.nbytes
    theirs = (lambda: torch.nn.functional.max_pool2d(tx, 2, return_indices=True)) if tx is not None else None
    add(_case(f"max-pool 2x2 forward {FEATURES} ({threads}T)", nbytes,
              lambda: _core.max_pool2d_forward(pooled, argmax, x, 2, 2, 2, 2, 0, 0), theirs, rounds))
    # Max-pool backward: reads dy and argmax, writes dx.
    dy = rng.standard_normal(pooled.shape, dtype=np.float32)
    _core.max_pool2d_forward(pooled, argmax, x, 2, 2, 2, 2, 0, 0)
    nbytes = dy.nbytes + argmax.nbytes + dx.nbytes
    add(_case(f"max-pool 2x2 backward {FEATURES} ({threads}T)", nbytes,
              lambda: _core.max_pool2d_backward(dx, dy, argmax, 2, 2, 2, 2, 0, 0), None, rounds))
    # Average pooling (LeNet's 2x2): forward reads x, writes y; backward reads dy, writes dx.
    nbytes = x.nbytes + pooled.nbytes
    theirs = (lambda: torch.nn.functional.avg_pool2d(tx, 2)) if tx is not None else None
    add(_case(f"avg-pool 2x2 forward {FEATURES} ({threads}T)", nbytes,
              lambda: _core.avg_pool2d_forward(pooled, x, 2, 2, 2, 2, 0, 0), theirs, rounds))
    add(_case(f"avg-pool 2x2 backward {FEATURES} ({threads}T)", nbytes,
              lambda: _core.avg_pool2d_backward(dx, dy, 2, 2, 2, 2, 0, 0), None, rounds))
    # Element-wise activations: read x, write y.
    for kind in ("relu", "tanh", "sigmoid"):
        fn = getattr(torch, kind) if torch is not None else None
        theirs = (lambda fn=fn: fn(tx)) if fn is not None else None
        add(_case(f"{kind} forward {FEATURES} ({threads}T)", 2 * x.nbytes,
                  lambda kind=kind: _core.activation_forward(y, x, kind, 1.0), theirs, rounds))
    # ReLU backward: reads x and dy, writes dx.
    add(_case(f"relu backward {FEATURES} ({threads}T)", 3 * x.nbytes,
              lambda: _core.activation_backward(dx, x, y, y, "relu", 1.0), None, rounds))
    # ResNet-20's first stage at batch 128: batch-norm training passes and the residual join,
    # each with the ReLU the train plan fuses into it. Forward: the statistics pass and the
    # affine pass read x, and y is written; backward: the sums pass and the data pass each read
    # x, dy and the ReLU's output, and dx is written; the join reads two inputs and writes one,
    # and backward reads dy and the ReLU's output and writes both inputs' gradients.
    r = rng.standard_normal(RESNET_STAGE1, dtype=np.float32)
    r2, ry, rdx, rdx2 = (np.empty_like(r) for _ in range(4))
    ch = RESNET_STAGE1[-1]
    gamma, beta = np.ones(ch, np.float32), np.zeros(ch, np.float32)
    mean, var = np.empty(ch, np.float32), np.empty(ch, np.float32)
    dgamma, dbeta = np.empty(ch, np.float32), np.empty(ch, np.float32)
    _core.batchnorm_forward_training(ry, mean, var, r, gamma, beta, relu=True)
    tr = torch.from_numpy(r).permute(0, 3, 1, 2) if torch is not None else None
    theirs = ((lambda: torch.relu(torch.nn.functional.batch_norm(tr, None, None, training=True,
                                                                  eps=1e-3)))
              if tr is not None else None)
    add(_case(f"batch-norm+relu training forward {RESNET_STAGE1} ({threads}T)", 3 * r.nbytes,
              lambda: _core.batchnorm_forward_training(r2, mean, var, r, gamma, beta, relu=True),
              theirs, rounds))
    add(_case(f"batch-norm+relu training backward {RESNET_STAGE1} ({threads}T)", 7 * r.nbytes,
              lambda: _core.batchnorm_backward_training(rdx, dgamma, dbeta, r, r2, mean, var,
                                                        gamma, relu_y=ry), None, rounds))
    add(_case(f"add+relu join forward {RESNET_STAGE1} ({threads}T)", 3 * r.nbytes,
              lambda: _core.merge_forward(r2, [r, ry], "add", relu=True), None, rounds))
    add(_case(f"add+relu join backward {RESNET_STAGE1} ({threads}T)", 4 * r.nbytes,
              lambda: _core.merge_backward([rdx, rdx2], r2, [r, ry], "add", relu_y=ry), None,
              rounds))
    # Fused softmax + cross-entropy with gradient: reads logits and one-hot labels, writes dlogits.
    # (Timed alternating with PyTorch, whose turn touches ~100 MB, even the bare traffic of this
    # op, np.subtract(logits, labels, out=dlogits), dropped from ~27 to ~14.6 GB/s on
    # intel-xeon-2c, and the fused kernel from ~24 to ~17.5: hence contenders in own rounds.)
    logits = rng.standard_normal(LOGITS, dtype=np.float32)
    labels = np.eye(LOGITS[1], dtype=np.float32)[rng.integers(0, LOGITS[1], LOGITS[0])]
    dlogits = np.empty_like(logits)
    theirs = None
    if torch is not None:
        tl, tt = torch.from_numpy(logits).requires_grad_(), torch.from_numpy(labels)

        def theirs():
            tl.grad = None
            torch.nn.functional.cross_entropy(tl, tt).backward()

    add(_case(f"softmax-CE fwd+bwd {LOGITS} ({threads}T)", 3 * logits.nbytes,
              lambda: _core.softmax_xent(dlogits, None, logits, labels), theirs, rounds))
    return out


def main() -> None:
    from bench.common import HEADER_ROW, environment, markdown_table

    print("\n".join(environment()))
    print(markdown_table(HEADER_ROW, rows(1) + rows(2)))


if __name__ == "__main__":
    main()
