"""Plain NumPy float64 reference of every kernel: the spec the C++ kernels are tested against.

Written for clarity, not speed. Layouts: NHWC activations, conv kernels (KH, KW, C_in, C_out),
dense kernels (in, out). Each family has its own section below.
"""

from __future__ import annotations

import numpy as np

# ---- gemm ------------------------------------------------------------------------------


def gemm(a, b, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None):
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    out = alpha * ((a.T if trans_a else a) @ (b.T if trans_b else b))
    if beta != 0.0:
        out = out + beta * np.asarray(c, np.float64)
    return out


# ---- conv2d / dense / pooling -------------------------------------------------------------

# Paddings are explicit per side, ((top, bottom), (left, right)); the output size is
# floor((n + before + after - k) / s) + 1, so rows a stride never reaches are ignored.


def conv2d_forward(x, w, b=None, strides=(1, 1), pads=((0, 0), (0, 0)), groups=1):
    """x (N,H,W,C), w (KH,KW,C/groups,K), b (K,) -> y (N,OH,OW,K), float64."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    N = x.shape[0]
    KH, KW, Cg, K = w.shape
    G, Kg = groups, K // groups
    sh, sw = strides
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    OH = (xp.shape[1] - KH) // sh + 1
    OW = (xp.shape[2] - KW) // sw + 1
    y = np.zeros((N, OH, OW, G, Kg))
    # Sum over kernel taps: the input pixels tap (kh, kw) sees for every output, per group.
    for kh in range(KH):
        for kw in range(KW):
            patch = xp[:, kh:kh + sh * (OH - 1) + 1:sh, kw:kw + sw * (OW - 1) + 1:sw, :]
            patch = patch.reshape(N, OH, OW, G, Cg)
            tap = w[kh, kw].reshape(Cg, G, Kg)
            y += np.einsum("nhwgc,cgk->nhwgk", patch, tap)
    y = y.reshape(N, OH, OW, K)
    if b is not None:
        y = y + np.asarray(b, np.float64)
    return y


def conv2d_backward(x, w, dy, strides=(1, 1), pads=((0, 0), (0, 0)), groups=1):
    """Gradients (dx, dw, db) of conv2d_forward given dy (N,OH,OW,K), float64."""
    x = np.asarray(x, np.float64)
    w = np.asarray(w, np.float64)
    dy = np.asarray(dy, np.float64)
    N, H, W, C = x.shape
    KH, KW, Cg, K = w.shape
    G, Kg = groups, K // groups
    sh, sw = strides
    _, OH, OW, _ = dy.shape
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    dxp = np.zeros_like(xp)
    dw = np.zeros((KH, KW, Cg, G, Kg))
    dyg = dy.reshape(N, OH, OW, G, Kg)
    for kh in range(KH):
        for kw in range(KW):
            rows = slice(kh, kh + sh * (OH - 1) + 1, sh)
            cols = slice(kw, kw + sw * (OW - 1) + 1, sw)
            patch = xp[:, rows, cols, :].reshape(N, OH, OW, G, Cg)
            tap = w[kh, kw].reshape(Cg, G, Kg)
            dw[kh, kw] = np.einsum("nhwgc,nhwgk->cgk", patch, dyg)
            dxp[:, rows, cols, :] += np.einsum("nhwgk,cgk->nhwgc", dyg, tap).reshape(
                N, OH, OW, C)
    dx = dxp[:, pads[0][0]:pads[0][0] + H, pads[1][0]:pads[1][0] + W, :]
    return dx, dw.reshape(KH, KW, Cg, K), dy.sum(axis=(0, 1, 2))


# Winograd F(4x4, 3x3)'s matrices (src/cpp/kernels/conv2d_winograd_avx512.cpp).
WINOGRAD_F4_BT = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                           [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], float)
WINOGRAD_F4_G = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                          [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])
WINOGRAD_F4_AT = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
                           [0, 1, -1, 8, -8, 1]], float)


# Winograd F(2x2, 3x3)'s matrices (the same file's F(2x2) transforms).
WINOGRAD_F2_BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float)
WINOGRAD_F2_G = np.array([[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]])
WINOGRAD_F2_AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float)


def winograd_f4_abs(x, w, b=None, pads=((0, 0), (0, 0))):
    """F(4x4, 3x3) on absolute values, float64: |A^T| [sum_c (|G||g||G^T|) (.) (|B^T||d||B|)] |A|
    + |b| per output of a 3x3 stride-1 convolution, 4x4 tiles from output (0, 0). What rounding
    errors of the algorithm scale with (each value's error is at most its chain of roundings
    times its absolute-value term), as sum |x||w| is for the direct sums."""
    return _winograd_abs(x, w, b, pads, 4, WINOGRAD_F4_BT, WINOGRAD_F4_G, WINOGRAD_F4_AT)


def winograd_f2_abs(x, w, b=None, pads=((0, 0), (0, 0))):
    """winograd_f4_abs for F(2x2, 3x3): 2x2 tiles of 4x4 patches."""
    return _winograd_abs(x, w, b, pads, 2, WINOGRAD_F2_BT, WINOGRAD_F2_G, WINOGRAD_F2_AT)


def _winograd_abs(x, w, b, pads, m, BT, G, AT):
    x = np.abs(np.asarray(x, np.float64))
    w = np.abs(np.asarray(w, np.float64))
    xp = np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))
    N, H, W, C = xp.shape
    OH, OW = H - 2, W - 2
    TH, TW = -(-OH // m), -(-OW // m)
    d = np.zeros((N, m * TH + 2, m * TW + 2, C))
    d[:, :H, :W] = xp
    BT, G, AT = np.abs(BT), np.abs(G), np.abs(AT)
    U = np.einsum("ai,ijck,bj->abck", G, w, G)
    y = np.zeros((N, m * TH, m * TW, w.shape[-1]))
    for th in range(TH):
        for tw in range(TW):
            V = np.einsum("ai,nijc,bj->nabc", BT, d[:, m * th:m * th + m + 2,
                                                   m * tw:m * tw + m + 2], BT)
            M = np.einsum("nabc,abck->nabk", V, U)
            y[:, m * th:m * th + m, m * tw:m * tw + m] = np.einsum("pa,nabk,qb->npqk", AT, M, AT)
    y = y[:, :OH, :OW]
    return y if b is None else y + np.abs(np.asarray(b, np.float64))


def dense_forward(x, w, b=None):
    """x (N,IN), w (IN,OUT), b (OUT,) -> y (N,OUT), float64."""
    y = np.asarray(x, np.float64) @ np.asarray(w, np.float64)
    return y if b is None else y + np.asarray(b, np.float64)


def dense_backward(x, w, dy):
    """(dx, dw, db) of dense_forward given dy (N,OUT), float64."""
    x, w, dy = (np.asarray(a, np.float64) for a in (x, w, dy))
    return dy @ w.T, x.T @ dy, dy.sum(axis=0)


def _pool_windows(H, W, pool, strides, pads):
    """Yield (oh, ow, rows, cols): each window's in-input index ranges."""
    (ph, pw), (sh, sw) = pool, strides
    OH = (H + pads[0][0] + pads[0][1] - ph) // sh + 1
    OW = (W + pads[1][0] + pads[1][1] - pw) // sw + 1
    for oh in range(OH):
        r0 = oh * sh - pads[0][0]
        rows = range(max(r0, 0), min(r0 + ph, H))
        for ow in range(OW):
            c0 = ow * sw - pads[1][0]
            yield oh, ow, rows, range(max(c0, 0), min(c0 + pw, W))


def _pool_out_shape(x, pool, strides, pads):
    N, H, W, C = x.shape
    OH = (H + pads[0][0] + pads[0][1] - pool[0]) // strides[0] + 1
    OW = (W + pads[1][0] + pads[1][1] - pool[1]) // strides[1] + 1
    return N, OH, OW, C


def max_pool2d_forward(x, pool=(2, 2), strides=(2, 2), pads=((0, 0), (0, 0))):
    """Max over the in-input positions of each window: x (N,H,W,C) -> (N,OH,OW,C)."""
    x = np.asarray(x, np.float64)
    y = np.empty(_pool_out_shape(x, pool, strides, pads))
    for oh, ow, rows, cols in _pool_windows(x.shape[1], x.shape[2], pool, strides, pads):
        window = x[:, rows.start:rows.stop, cols.start:cols.stop, :]
        y[:, oh, ow, :] = window.max(axis=(1, 2))  # NaN propagates through max
    return y


def max_pool2d_backward(x, dy, pool=(2, 2), strides=(2, 2), pads=((0, 0), (0, 0))):
    """dx: each window's dy goes to its first maximum in row-major window order (or first NaN)."""
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    N, _, _, C = x.shape
    dx = np.zeros_like(x)
    n_idx, c_idx = np.meshgrid(np.arange(N), np.arange(C), indexing="ij")
    for oh, ow, rows, cols in _pool_windows(x.shape[1], x.shape[2], pool, strides, pads):
        window = x[:, rows.start:rows.stop, cols.start:cols.stop, :].reshape(N, -1, C)
        first = np.argmax(window, axis=1)  # first maximum (first NaN if any)
        r = rows.start + first // len(cols)
        c = cols.start + first % len(cols)
        np.add.at(dx, (n_idx, r, c, c_idx), dy[:, oh, ow, :])
    return dx


def avg_pool2d_forward(x, pool=(2, 2), strides=(2, 2), pads=((0, 0), (0, 0))):
    """Mean over the in-input positions of each window (padding not counted)."""
    x = np.asarray(x, np.float64)
    y = np.empty(_pool_out_shape(x, pool, strides, pads))
    for oh, ow, rows, cols in _pool_windows(x.shape[1], x.shape[2], pool, strides, pads):
        y[:, oh, ow, :] = x[:, rows.start:rows.stop, cols.start:cols.stop, :].mean(axis=(1, 2))
    return y


def avg_pool2d_backward(x_shape, dy, pool=(2, 2), strides=(2, 2), pads=((0, 0), (0, 0))):
    """dx (x_shape): each window's dy spread evenly over its in-input positions."""
    dy = np.asarray(dy, np.float64)
    dx = np.zeros(x_shape)
    for oh, ow, rows, cols in _pool_windows(x_shape[1], x_shape[2], pool, strides, pads):
        count = len(rows) * len(cols)
        dx[:, rows.start:rows.stop, cols.start:cols.stop, :] += (
            dy[:, oh, ow, None, None, :] / count)
    return dx



# ---- activations / losses / dropout / optimizers -----------------------------------------

_KERAS_EPS = float(np.float32(1e-7))
_KERAS_ONE_MINUS_EPS = float(np.float32(1.0 - 1e-7))


def _sigmoid64(x):
    x = np.asarray(x, np.float64)
    z = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + z), z / (1.0 + z))


def activation(x, kind, alpha=1.0):
    """Forward of relu / sigmoid / tanh / elu / swish / leaky_relu / linear in float64."""
    x = np.asarray(x, np.float64)
    if kind == "relu":
        return np.maximum(x, 0.0)
    if kind == "sigmoid":
        return _sigmoid64(x)
    if kind == "tanh":
        return np.tanh(x)
    if kind == "elu":
        return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0)))
    if kind == "swish":
        return x * _sigmoid64(x)
    if kind == "leaky_relu":
        return np.where(x > 0, x, alpha * x)
    if kind == "linear":
        return x.copy()
    raise ValueError(kind)


def activation_derivative(x, kind, alpha=1.0):
    """f'(x) in float64 (0 for relu at x == 0, alpha for elu at 0)."""
    x = np.asarray(x, np.float64)
    if kind == "relu":
        return (x > 0).astype(np.float64)
    if kind == "sigmoid":
        s = _sigmoid64(x)
        return s * (1.0 - s)
    if kind == "tanh":
        return 1.0 - np.tanh(x) ** 2
    if kind == "elu":
        return np.where(x > 0, 1.0, alpha * np.exp(np.minimum(x, 0.0)))
    if kind == "swish":
        s = _sigmoid64(x)
        return s * (1.0 + x * (1.0 - s))
    if kind == "leaky_relu":
        return np.where(x > 0, 1.0, alpha)
    if kind == "linear":
        return np.ones_like(x)
    raise ValueError(kind)


def prelu(x, alpha):
    """Keras PReLU: alpha broadcasts against the trailing axes of x."""
    x = np.asarray(x, np.float64)
    return np.where(x > 0, x, np.asarray(alpha, np.float64) * x)


def prelu_backward(x, alpha, dy):
    """(dx, dalpha); dalpha sums dy * min(x, 0) over the axes alpha broadcasts along."""
    x = np.asarray(x, np.float64)
    a = np.asarray(alpha, np.float64)
    dy = np.asarray(dy, np.float64)
    dx = np.where(x > 0, dy, a * dy)
    contrib = dy * np.minimum(x, 0.0)
    a_full = a.reshape((1,) * (x.ndim - a.ndim) + a.shape)
    axes = tuple(i for i in range(x.ndim) if a_full.shape[i] == 1 and x.shape[i] != 1)
    dalpha = contrib.sum(axis=axes, keepdims=True).reshape(a.shape)
    return dx, dalpha


def softmax(x):
    x = np.asarray(x, np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(y, dy):
    y = np.asarray(y, np.float64)
    dy = np.asarray(dy, np.float64)
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def softmax_cross_entropy(logits, labels):
    """(loss, dlogits): Keras categorical_crossentropy on softmax(logits), clip inside the log."""
    logits = np.asarray(logits, np.float64)
    labels = np.asarray(labels, np.float64)
    n = logits.shape[0]
    logp = np.clip(log_softmax(logits), np.log(_KERAS_EPS), np.log(_KERAS_ONE_MINUS_EPS))
    loss = -(labels * logp).sum() / n
    return loss, (softmax(logits) - labels) / n


def one_hot(labels, classes):
    out = np.zeros((len(labels), classes))
    out[np.arange(len(labels)), np.asarray(labels)] = 1.0
    return out


def categorical_crossentropy(probs, labels):
    """(loss, dprobs): Keras 3 from-probabilities crossentropy and its exact gradient.

    q = p / sum(p); c = clip(q, eps, 1 - eps); loss = mean_rows(-sum(y log c)). The gradient is
    derived by the chain rule through the clip (0 outside [eps, 1 - eps]) and the renormalisation.
    """
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels, np.float64)
    n = p.shape[0]
    s = p.sum(axis=-1, keepdims=True)
    q = p / s
    c = np.clip(q, _KERAS_EPS, _KERAS_ONE_MINUS_EPS)
    loss = -(y * np.log(c)).sum() / n
    inside = (q >= _KERAS_EPS) & (q <= _KERAS_ONE_MINUS_EPS)
    g = np.where(inside & (y != 0), -y / np.where(inside, q, 1.0) / n, 0.0)  # dloss/dq
    dp = (g - (g * q).sum(axis=-1, keepdims=True)) / s
    return loss, dp


def mse(pred, target):
    pred = np.asarray(pred, np.float64)
    target = np.asarray(target, np.float64)
    d = pred - target
    return (d * d).mean(), 2.0 * d / d.size


def dropout_backward(dy, mask, rate):
    return np.asarray(dy, np.float64) * np.asarray(mask, np.float64) / (1.0 - rate)


def sgd_step(w, g, velocity, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """One Keras SGD step in float64; returns (w, velocity)."""
    w = np.asarray(w, np.float64) * (1.0 - lr * weight_decay)
    g = np.asarray(g, np.float64)
    if momentum == 0.0:
        return w - lr * g, velocity
    velocity = momentum * np.asarray(velocity, np.float64) - lr * g
    if nesterov:
        return w + momentum * velocity - lr * g, velocity
    return w + velocity, velocity


def adam_step(w, g, m, v, step, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
              weight_decay=0.0):
    """One Keras Adam step in float64 (1-based step); returns (w, m, v)."""
    w = np.asarray(w, np.float64) * (1.0 - lr * weight_decay)
    g = np.asarray(g, np.float64)
    m = np.asarray(m, np.float64) + (g - m) * (1.0 - beta_1)
    v = np.asarray(v, np.float64) + (g * g - v) * (1.0 - beta_2)
    alpha = lr * np.sqrt(1.0 - beta_2**step) / (1.0 - beta_1**step)
    return w - alpha * m / (np.sqrt(v) + epsilon), m, v


def rmsprop_step(w, g, velocity, mom, avg, lr=1e-3, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, weight_decay=0.0):
    """One Keras RMSprop step in float64 (epsilon inside the square root); returns
    (w, velocity, mom, avg)."""
    w = np.asarray(w, np.float64) * (1.0 - lr * weight_decay)
    g = np.asarray(g, np.float64)
    velocity = rho * velocity + (1.0 - rho) * g * g
    if centered:
        avg = rho * avg + (1.0 - rho) * g
        denominator = velocity - avg * avg + epsilon
    else:
        denominator = velocity + epsilon
    increment = lr * g / np.sqrt(denominator)
    if momentum > 0:
        mom = momentum * mom + increment
        return w - mom, velocity, mom, avg
    return w - increment, velocity, mom, avg


def adagrad_step(w, g, acc, lr=1e-3, epsilon=1e-7, weight_decay=0.0):
    """One Keras Adagrad step in float64; returns (w, accumulator)."""
    w = np.asarray(w, np.float64) * (1.0 - lr * weight_decay)
    g = np.asarray(g, np.float64)
    acc = acc + g * g
    return w - lr * g / np.sqrt(acc + epsilon), acc


def adadelta_step(w, g, acc_g, acc_d, lr=1e-3, rho=0.95, epsilon=1e-7, weight_decay=0.0):
    """One Keras Adadelta step in float64; returns (w, accumulated_grad, accumulated_delta)."""
    w = np.asarray(w, np.float64) * (1.0 - lr * weight_decay)
    g = np.asarray(g, np.float64)
    acc_g = rho * acc_g + (1.0 - rho) * g * g
    delta = -np.sqrt(acc_d + epsilon) * g / np.sqrt(acc_g + epsilon)
    acc_d = rho * acc_d + (1.0 - rho) * delta * delta
    return w + lr * delta, acc_g, acc_d


def adamax_step(w, g, m, u, step, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                weight_decay=0.0):
    """One Keras Adamax step in float64 (1-based step); returns (w, m, u)."""
    w = np.asarray(w, np.float64) * (1.0 - lr * weight_decay)
    g = np.asarray(g, np.float64)
    m = m + (g - m) * (1.0 - beta_1)
    u = np.maximum(beta_2 * u, np.abs(g))
    return w - lr * m / ((1.0 - beta_1**step) * (u + epsilon)), m, u


def nadam_step(w, g, m, v, step, lr=1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
               weight_decay=0.0):
    """One Keras Nadam step in float64 (1-based step); returns (w, m, v)."""
    def u(k):
        return beta_1 * (1.0 - 0.5 * 0.96**k)
    u_product = float(np.prod([u(k) for k in range(1, step + 1)]))
    w = np.asarray(w, np.float64) * (1.0 - lr * weight_decay)
    g = np.asarray(g, np.float64)
    m = m + (g - m) * (1.0 - beta_1)
    v = v + (g * g - v) * (1.0 - beta_2)
    m_hat = u(step + 1) * m / (1.0 - u_product * u(step + 1)) + (1.0 - u(step)) * g / \
        (1.0 - u_product)
    v_hat = v / (1.0 - beta_2**step)
    return w - m_hat * lr / (np.sqrt(v_hat) + epsilon), m, v


def lion_step(w, g, m, lr=1e-3, beta_1=0.9, beta_2=0.99, weight_decay=0.0):
    """One Keras Lion step in float64; returns (w, m)."""
    w = np.asarray(w, np.float64) * (1.0 - lr * weight_decay)
    g = np.asarray(g, np.float64)
    w = w - lr * np.sign(beta_1 * m + (1.0 - beta_1) * g)
    return w, beta_2 * m + (1.0 - beta_2) * g


def clip_gradients(grads, clipnorm=None, clipvalue=None, global_clipnorm=None):
    """Keras's gradient clipping of a list of gradients, in float64."""
    grads = [np.asarray(g, np.float64) for g in grads]
    if clipnorm:
        return [g * clipnorm / max(np.sqrt(np.sum(g * g)), clipnorm) for g in grads]
    if global_clipnorm:
        norm = np.sqrt(sum(np.sum(g * g) for g in grads))
        return [g * global_clipnorm * min(1.0 / norm, 1.0 / global_clipnorm) for g in grads]
    if clipvalue:
        return [np.clip(g, -clipvalue, clipvalue) for g in grads]
    return grads


# ---- lrn ----------------------------------------------------------------------------------


def lrn_forward(x, depth_radius=2, bias=1.0, alpha=1e-4, beta=0.75):
    """Local response normalization across the last axis, TensorFlow's parametrisation.

    scale_c = bias + alpha * sum_{|c'-c| <= r, 0 <= c' < C} x_{c'}^2 (alpha not divided by the
    window size); y = x * scale^-beta. Returns (y, scale) in float64.
    """
    x = np.asarray(x, np.float64)
    c = x.shape[-1]
    sq = x * x
    window = np.zeros_like(x)
    for k in range(c):
        lo, hi = max(0, k - depth_radius), min(c, k + depth_radius + 1)
        window[..., k] = sq[..., lo:hi].sum(axis=-1)
    scale = bias + alpha * window
    return x * scale ** (-beta), scale


def lrn_backward(x, dy, depth_radius=2, bias=1.0, alpha=1e-4, beta=0.75):
    """Gradient of lrn_forward, written out from the chain rule (float64):

    dx_i = dy_i * scale_i^-beta - 2*alpha*beta * x_i * sum_{j: |i-j| <= r} dy_j * x_j * scale_j^(-beta-1)
    """
    x = np.asarray(x, np.float64)
    dy = np.asarray(dy, np.float64)
    _, scale = lrn_forward(x, depth_radius, bias, alpha, beta)
    c = x.shape[-1]
    t = dy * x * scale ** (-beta - 1.0)
    window = np.zeros_like(x)
    for k in range(c):
        lo, hi = max(0, k - depth_radius), min(c, k + depth_radius + 1)
        window[..., k] = t[..., lo:hi].sum(axis=-1)
    return dy * scale ** (-beta) - 2.0 * alpha * beta * x * window


# ---- merge --------------------------------------------------------------------------------

def merge_forward(xs, op):
    xs = [np.asarray(x, np.float64) for x in xs]
    if op == "subtract":
        return xs[0] - xs[1]
    if op == "multiply":
        return np.prod(xs, axis=0)
    if op == "maximum":
        return np.max(xs, axis=0)
    total = np.sum(xs, axis=0)
    return total / len(xs) if op == "average" else total


def merge_backward(dy, xs, op):
    """d/dx_k of merge_forward; maximum: the first input holding the maximum gets dy."""
    dy = np.asarray(dy, np.float64)
    xs = [np.asarray(x, np.float64) for x in xs]
    if op == "add":
        return [dy.copy() for _ in xs]
    if op == "subtract":
        return [dy.copy(), -dy]
    if op == "average":
        return [dy / len(xs) for _ in xs]
    if op == "multiply":
        return [dy * np.prod([x for j, x in enumerate(xs) if j != k], axis=0) for k in range(len(xs))]
    winner = np.argmax(np.stack(xs), axis=0)  # argmax returns the first maximum
    return [np.where(winner == k, dy, 0.0) for k in range(len(xs))]
