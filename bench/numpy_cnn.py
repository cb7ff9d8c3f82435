"""A plain NumPy (im2col + BLAS) trainer for small conv nets: the "NumPy baseline" of the bench.

Written the way a careful NumPy user would: float32, sliding_window_view + matmul for conv,
reshape-max for 2x2 pooling, Adam. Supports the layers of the Keras MNIST CNN.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


class NumpyCNN:
    """spec: list of ("conv", filters, k) | ("pool",) | ("flatten",) | ("dropout", rate) | ("dense", units)."""

    def __init__(self, spec, input_shape, seed=0, lr=1e-3):
        rng = np.random.default_rng(seed)
        self.spec, self.params, shape = [], [], input_shape
        for layer in spec:
            kind = layer[0]
            if kind == "conv":
                _, k_out, k = layer
                c = shape[2]
                lim = np.sqrt(6 / (k * k * c + k * k * k_out))
                w = rng.uniform(-lim, lim, (k * k * c, k_out)).astype(np.float32)
                b = np.zeros(k_out, np.float32)
                self.params += [w, b]
                shape = (shape[0] - k + 1, shape[1] - k + 1, k_out)
                self.spec.append(("conv", k, len(self.params) - 2))
            elif kind == "pool":
                shape = (shape[0] // 2, shape[1] // 2, shape[2])
                self.spec.append(("pool",))
            elif kind == "flatten":
                shape = (int(np.prod(shape)),)
                self.spec.append(("flatten",))
            elif kind == "dropout":
                self.spec.append(("dropout", layer[1]))
            elif kind == "dense":
                lim = np.sqrt(6 / (shape[0] + layer[1]))
                self.params += [rng.uniform(-lim, lim, (shape[0], layer[1])).astype(np.float32),
                                np.zeros(layer[1], np.float32)]
                shape = (layer[1],)
                self.spec.append(("dense", len(self.params) - 2))
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.t, self.lr, self.rng = 0, lr, rng

    def train_step(self, x, y):
        cache, h = [], x
        for layer in self.spec:
            kind = layer[0]
            if kind == "conv":
                k, i = layer[1], layer[2]
                cols = sliding_window_view(h, (k, k), axis=(1, 2))  # N,OH,OW,C,k,k
                cols = cols.transpose(0, 1, 2, 4, 5, 3).reshape(-1, k * k * h.shape[3])
                out = cols @ self.params[i] + self.params[i + 1]
                out = out.reshape(h.shape[0], h.shape[1] - k + 1, h.shape[2] - k + 1, -1)
                np.maximum(out, 0, out=out)
                cache.append((h.shape, cols, out))
                h = out
            elif kind == "pool":
                n, hh, ww, c = h.shape
                hc = h[:, : hh // 2 * 2, : ww // 2 * 2].reshape(n, hh // 2, 2, ww // 2, 2, c)
                out = hc.max(axis=(2, 4))
                mask = hc == out[:, :, None, :, None, :]
                cache.append((h.shape, mask))
                h = out
            elif kind == "flatten":
                cache.append(h.shape)
                h = h.reshape(h.shape[0], -1)
            elif kind == "dropout":
                keep = (self.rng.random(h.shape, dtype=np.float32) >= layer[1]) / np.float32(1 - layer[1])
                cache.append(keep)
                h = h * keep
            elif kind == "dense":
                cache.append(h)
                h = h @ self.params[layer[1]] + self.params[layer[1] + 1]
        z = h - h.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        loss = -np.mean(np.log(np.clip((p * y).sum(axis=1), 1e-7, 1)))
        d = (p - y) / len(x)
        grads = [None] * len(self.params)
        for layer, c in zip(reversed(self.spec), reversed(cache)):
            kind = layer[0]
            if kind == "dense":
                i = layer[1]
                grads[i], grads[i + 1] = c.T @ d, d.sum(axis=0)
                d = d @ self.params[i].T
            elif kind == "dropout":
                d = d * c
            elif kind == "flatten":
                d = d.reshape(c)
            elif kind == "pool":
                shape, mask = c
                n, hh, ww, ch = shape
                full = np.zeros(shape, np.float32)
                full[:, : hh // 2 * 2, : ww // 2 * 2] = (mask * d[:, :, None, :, None, :]).reshape(
                    n, hh // 2 * 2, ww // 2 * 2, ch)
                d = full
            elif kind == "conv":
                k, i = layer[1], layer[2]
                in_shape, cols, out = c
                d = d * (out > 0)
                d2 = d.reshape(-1, d.shape[-1])
                grads[i], grads[i + 1] = cols.T @ d2, d2.sum(axis=0)
                if layer is self.spec[0]:
                    break
                dcols = (d2 @ self.params[i].T).reshape(d.shape[:3] + (k, k, in_shape[3]))
                dx = np.zeros(in_shape, np.float32)
                for a in range(k):
                    for b in range(k):
                        dx[:, a:a + d.shape[1], b:b + d.shape[2]] += dcols[:, :, :, a, b]
                d = dx
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-7
        lr_t = self.lr * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        for p_, g, m, v in zip(self.params, grads, self.m, self.v):
            m += (g - m) * (1 - b1)
            v += (g * g - v) * (1 - b2)
            p_ -= lr_t * m / (np.sqrt(v) + eps)
        return loss
