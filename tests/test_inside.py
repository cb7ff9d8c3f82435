"""cnnfast.inside: the lecture's filters, learned filters, feature maps and attribution maps,
each against a NumPy float64 reference (textbook numbers, finite differences, manual
Grad-CAM, an analytic occlusion)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cnnfast as cf
from cnnfast import inside
from cnnfast.layers import AveragePooling2D, Conv2D, Dense, Dropout, Flatten, Input, MaxPooling2D


def xcorr_reference(image: np.ndarray, kernel: np.ndarray, stride: int = 1,
                    pad: int = 0) -> np.ndarray:
    """Cross-correlation of a 2-D float64 image, by the definition."""
    img = np.pad(np.asarray(image, np.float64), pad)
    kh, kw = kernel.shape
    oh = (img.shape[0] - kh) // stride + 1
    ow = (img.shape[1] - kw) // stride + 1
    out = np.empty((oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[i, j] = np.sum(img[i * stride:i * stride + kh, j * stride:j * stride + kw]
                               * kernel)
    return out


# -- the lecture's filters ------------------------------------------------------------------

def test_vertical_edge_textbook_step():
    img = np.zeros((6, 6))
    img[:, :3] = 10
    out = inside.apply_filter(img, inside.KERNELS["vertical_edge"])
    assert out.shape == (4, 4)
    np.testing.assert_array_equal(out, np.tile([0, 30, 30, 0], (4, 1)))  # exact: small integers
    mirrored = inside.apply_filter(img[:, ::-1], "vertical_edge")
    np.testing.assert_array_equal(mirrored, np.tile([0, -30, -30, 0], (4, 1)))


def test_classic_6x6_example_top_left_is_minus_5():
    # The lecture's 6x6 example (Ng, deep learning course): its top-left patch
    # [[3,0,1],[1,5,8],[2,7,2]] with the vertical-edge kernel gives 3+1+2 - (1+8+2) = -5.
    img = np.array([[3, 0, 1, 2, 7, 4], [1, 5, 8, 9, 3, 1], [2, 7, 2, 5, 1, 3],
                    [0, 1, 3, 1, 7, 8], [4, 2, 1, 6, 2, 8], [2, 4, 5, 2, 3, 9]])
    out = inside.apply_filter(img, "vertical_edge")
    assert out[0, 0] == -5
    np.testing.assert_array_equal(out, xcorr_reference(img, inside.KERNELS["vertical_edge"]))
    assert out.tolist()[0] == [-5, -4, 0, 8]  # the first row the lecture shows


def test_named_kernels():
    assert set(inside.KERNELS) == {"identity", "vertical_edge", "horizontal_edge", "laplacian_4",
                                   "laplacian_8", "sharpen", "box_blur", "gaussian_blur"}
    for name, k in inside.KERNELS.items():
        assert k.shape == (3, 3) and k.dtype == np.float32, name
    # Edge detectors sum to 0 (flat regions give 0); identity, sharpen and blurs sum to 1.
    for name in ("vertical_edge", "horizontal_edge", "laplacian_4", "laplacian_8"):
        assert inside.KERNELS[name].sum() == 0, name
    for name in ("identity", "sharpen", "box_blur", "gaussian_blur"):
        assert abs(float(inside.KERNELS[name].sum()) - 1) < 1e-6, name  # fp32 of 1/9, 1/16
    img = np.random.default_rng(1).uniform(0, 255, (9, 11))
    np.testing.assert_array_equal(inside.apply_filter(img, "identity"),
                                  img[1:-1, 1:-1].astype(np.float32))


@pytest.mark.parametrize("stride,pad", [(1, 0), (2, 0), (1, 1), (2, 1)])
def test_apply_filter_matches_reference(stride, pad):
    rng = np.random.default_rng(stride * 10 + pad)
    img = rng.uniform(0, 255, (13, 10))
    for name, k in inside.KERNELS.items():
        got = inside.apply_filter(img, name, stride=stride, padding=pad)
        ref = xcorr_reference(img, k.astype(np.float64), stride, pad)
        # fp32 sum of 9 products of values <= 255 * 8: relative error of a few ulps of 2^11.
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-3, err_msg=name)


def test_apply_filter_rgb_is_per_channel():
    rng = np.random.default_rng(2)
    img = rng.uniform(0, 1, (7, 8, 3))
    k = rng.standard_normal((3, 2))
    got = inside.apply_filter(img, k, padding="same")
    assert got.shape == (7, 8, 3)
    for c in range(3):
        ref = xcorr_reference(np.pad(img[..., c], ((1, 1), (0, 1))), k)  # TF "same": odd pad at end
        np.testing.assert_allclose(got[..., c], ref, rtol=1e-5, atol=1e-6)  # fp32, 6 terms <= 3


def test_apply_filter_bad_input():
    with pytest.raises(ValueError, match="unknown kernel 'edge'"):
        inside.apply_filter(np.zeros((5, 5)), "edge")
    with pytest.raises(ValueError, match=r"\(2, 3, 4, 5\)"):
        inside.apply_filter(np.zeros((2, 3, 4, 5)), "identity")
    with pytest.raises(ValueError, match=r"kernel must be .*\(3,\)"):
        inside.apply_filter(np.zeros((5, 5)), np.ones(3))
    with pytest.raises(ValueError, match=r"image \(2, 2\), kernel \(3, 3\)"):
        inside.apply_filter(np.zeros((2, 2)), "identity")


# -- a small model and its float64 reference ------------------------------------------------

def small_model(seed: int = 0) -> cf.Sequential:
    cf.set_seed(seed)
    model = cf.Sequential([Input((9, 9, 2)), Conv2D(4, 3, activation="relu", name="conv_a"),
                           MaxPooling2D(2, name="pool"), Dropout(0.5, name="drop"),
                           Conv2D(3, 2, activation="tanh", name="conv_b"), Flatten(),
                           Dense(5, activation="softmax", name="out")])
    rng = np.random.default_rng(seed)
    for layer in model.layers:  # non-zero biases so that every term is exercised
        if "bias" in layer.weights_:
            layer.weights_["bias"][...] = rng.normal(0, 0.1, layer.weights_["bias"].shape)
    return model


def conv_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W, C) x (KH, KW, C, K) valid cross-correlation + bias, float64."""
    kh, kw, _, k = w.shape
    oh, ow = x.shape[0] - kh + 1, x.shape[1] - kw + 1
    out = np.empty((oh, ow, k))
    for i in range(oh):
        for j in range(ow):
            out[i, j] = np.tensordot(x[i:i + kh, j:j + kw], w, axes=3) + b
    return out


def reference_forward(model: cf.Sequential, x: np.ndarray) -> dict[str, np.ndarray]:
    """small_model in float64 for one sample: every named value; "logits" before softmax."""
    p = {l.name: {k: np.asarray(v, np.float64) for k, v in l.weights_.items()}
         for l in model.layers}
    a = np.maximum(conv_reference(x, p["conv_a"]["kernel"], p["conv_a"]["bias"]), 0)
    h, w, c = a.shape
    pooled = a[:h // 2 * 2, :w // 2 * 2].reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))
    b = np.tanh(conv_reference(pooled, p["conv_b"]["kernel"], p["conv_b"]["bias"]))
    logits = b.reshape(-1) @ p["out"]["kernel"] + p["out"]["bias"]
    return {"conv_a": a, "conv_b": b, "logits": logits}


def test_input_gradient_matches_finite_differences():
    model = small_model()
    x = np.random.default_rng(3).standard_normal((2, 9, 9, 2)).astype(np.float32)
    g = inside.input_gradient(model, x, class_index=[1, 4])
    assert g.shape == x.shape
    for n, c in ((0, 1), (1, 4)):
        x64 = x[n].astype(np.float64)
        ref = np.empty_like(x64)
        eps = 1e-6  # central differences in float64: error ~eps^2 * f''' plus 1e-16 / eps
        for idx in np.ndindex(x64.shape):
            up, down = x64.copy(), x64.copy()
            up[idx] += eps
            down[idx] -= eps
            ref[idx] = (reference_forward(model, up)["logits"][c]
                        - reference_forward(model, down)["logits"][c]) / (2 * eps)
        # float32 forward and backward through ~40-term sums of O(1) values: 1e-5 absolute.
        np.testing.assert_allclose(g[n], ref, rtol=1e-4, atol=1e-5)
    # The default class is the predicted one; saliency is |grad| maxed over channels.
    pred = model.predict(x).argmax(axis=1)
    np.testing.assert_array_equal(inside.input_gradient(model, x),
                                  inside.input_gradient(model, x, pred))
    np.testing.assert_array_equal(inside.saliency(model, x, [1, 4]), np.abs(g).max(axis=-1))


def test_walk_leaves_the_model_as_it_was():
    model = small_model()
    model.compile("sgd", "sparse_categorical_crossentropy")
    x = np.random.default_rng(4).standard_normal((3, 9, 9, 2)).astype(np.float32)
    before = model.predict(x)
    grads = [v.copy() for l in model.layers for v in l.gradients_.values()]
    flags = [l.need_input_grad for l in model.layers]
    inside.input_gradient(model, x)
    inside.grad_cam(model, x)
    np.testing.assert_array_equal(model.predict(x), before)
    for a, b in zip(grads, [v for l in model.layers for v in l.gradients_.values()]):
        np.testing.assert_array_equal(a, b)
    assert [l.need_input_grad for l in model.layers] == flags
    # And training afterwards still takes the gradient from the logits.
    assert model._fused_softmax()


def test_smoothgrad():
    model = small_model()
    x = np.random.default_rng(5).standard_normal((9, 9, 2)).astype(np.float32)
    # No noise: exactly the saliency map.
    np.testing.assert_array_equal(inside.smoothgrad(model, x, 2, samples=3, noise_level=0.0),
                                  inside.saliency(model, x, 2))
    # With noise: the mean of the input gradients at the same noisy inputs.
    got = inside.smoothgrad(model, x, 2, samples=4, noise_level=0.2, seed=7)
    rng = np.random.default_rng(7)
    sigma = 0.2 * (x.max() - x.min())
    grads = [inside.input_gradient(model, x + (sigma * rng.standard_normal((1,) + x.shape))
                                   .astype(np.float32)[0], 2) for _ in range(4)]
    # float64 mean of 4 float32 gradients either way; only the summation order differs.
    np.testing.assert_allclose(got, np.abs(np.mean(grads, axis=0)).max(axis=-1), rtol=1e-6,
                               atol=1e-9)
    assert not np.allclose(got, inside.saliency(model, x, 2))


def test_grad_cam_matches_manual_computation():
    # Conv -> Flatten -> Dense: d logit_c / d A is the Dense column of class c, reshaped.
    cf.set_seed(1)
    model = cf.Sequential([Input((7, 6, 2)), Conv2D(5, 3, activation="relu", name="conv"),
                           Flatten(), Dense(4, activation="softmax", name="out")])
    x = np.random.default_rng(6).standard_normal((2, 7, 6, 2)).astype(np.float32)
    conv, out = model.get_layer("conv"), model.get_layer("out")
    got = inside.grad_cam(model, x, class_index=3, upsample=False)
    for n in range(2):
        a = np.maximum(conv_reference(x[n].astype(np.float64), conv.weights_["kernel"],
                                      conv.weights_["bias"]), 0)
        alpha = np.asarray(out.weights_["kernel"], np.float64)[:, 3].reshape(a.shape).mean((0, 1))
        cam = np.maximum((a * alpha).sum(axis=-1), 0)
        cam = cam / cam.max() if cam.max() > 0 else cam
        np.testing.assert_allclose(got[n], cam, rtol=1e-5, atol=1e-6)  # fp32 conv, 18-term sums
    up = inside.grad_cam(model, x[0], class_index=3)
    assert up.shape == (7, 6) and up.min() >= 0 and up.max() <= 1
    # Through max-pooling, dropout and a tanh layer (small_model): against finite differences
    # of the reference logits with respect to conv_b's output.
    model = small_model()
    xs = np.random.default_rng(8).standard_normal((9, 9, 2))
    ref = reference_forward(model, xs)
    w = np.asarray(model.get_layer("out").weights_["kernel"], np.float64)
    alpha = w[:, 0].reshape(ref["conv_b"].shape).mean((0, 1))  # logits are linear in conv_b
    cam = np.maximum((ref["conv_b"] * alpha).sum(-1), 0)
    cam = cam / cam.max() if cam.max() > 0 else cam
    got = inside.grad_cam(model, xs.astype(np.float32), 0, layer="conv_b", upsample=False)
    np.testing.assert_allclose(got, cam, rtol=1e-4, atol=1e-5)  # fp32 through two conv layers


def test_grad_cam_bad_layer():
    model = small_model()
    x = np.zeros((9, 9, 2), np.float32)
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        inside.grad_cam(model, x, layer="nope")
    with pytest.raises(ValueError, match=r"Dense.*not \(H, W, C\)"):
        inside.grad_cam(model, x, layer="out")
    with pytest.raises(ValueError, match=r"takes samples of shape \(9, 9, 2\).*\(9, 9\)"):
        inside.saliency(model, np.zeros((9, 9)))
    with pytest.raises(ValueError, match="outside the model's 5 outputs"):
        inside.saliency(model, x, class_index=5)


def test_occlusion_of_a_linear_model_is_analytic():
    # Output = sum(w_c * x) + b: hiding a patch (fill 0) lowers class c by the patch's sum of
    # w_c * x; each pixel gets the mean over the patches covering it.
    cf.set_seed(2)
    model = cf.Sequential([Input((6, 5, 2)), Flatten(), Dense(3, name="lin")])
    x = np.random.default_rng(9).standard_normal((6, 5, 2)).astype(np.float32)
    w = np.asarray(model.get_layer("lin").weights_["kernel"], np.float64)[:, 1].reshape(6, 5, 2)
    contrib = (w * x).sum(axis=-1)
    total, count = np.zeros((6, 5)), np.zeros((6, 5))
    for t in (0, 2, 3):       # 0, 2 by the stride, and 3 so the last row is covered
        for l in (0, 2):      # 2 + 3 reaches the last column
            total[t:t + 3, l:l + 3] += contrib[t:t + 3, l:l + 3].sum()
            count[t:t + 3, l:l + 3] += 1
    got = inside.occlusion(model, x, class_index=1, patch=3, stride=2)
    np.testing.assert_allclose(got, total / count, rtol=1e-5, atol=1e-5)  # fp32 30-term dots


def test_feature_maps_and_top_activating():
    model = small_model()
    x = np.random.default_rng(10).standard_normal((12, 9, 9, 2)).astype(np.float32)
    fm = inside.feature_maps(model, x[3], "conv_a")
    ref = reference_forward(model, x[3].astype(np.float64))
    np.testing.assert_allclose(fm, ref["conv_a"], rtol=1e-5, atol=1e-5)  # fp32, 18-term sums
    np.testing.assert_allclose(inside.feature_maps(model, x, "out"), model.predict(x),
                               rtol=1e-6, atol=1e-7)  # the same kernels, maybe another order
    idx, scores = inside.top_activating(model, x, "conv_b", 2, k=4, batch_size=5)
    ref_scores = np.array([reference_forward(model, s.astype(np.float64))["conv_b"][..., 2].max()
                           for s in x])
    np.testing.assert_array_equal(idx, np.argsort(-ref_scores, kind="stable")[:4])
    np.testing.assert_allclose(scores, ref_scores[idx], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="channel 3 is outside .*conv_b.*3 channels"):
        inside.top_activating(model, x, "conv_b", 3)


def test_filter_tiles_and_grids():
    model = small_model()
    tiles = inside.filter_tiles(model.get_layer("conv_a"))  # 2 input channels: grayscale
    assert tiles.shape == (4, 2, 3, 3) and tiles.min() >= 0 and tiles.max() <= 1
    w = np.asarray(model.get_layer("conv_a").weights_["kernel"], np.float64)
    k0 = (w[..., 0] - w[..., 0].min()) / (w[..., 0].max() - w[..., 0].min())
    np.testing.assert_allclose(tiles[0], k0.transpose(2, 0, 1), rtol=1e-6, atol=1e-7)
    assert inside.filter_grid(model.get_layer("conv_a")).shape == (4 * 4 + 1, 2 * 4 + 1)
    rgb = cf.Sequential([Input((8, 8, 3)), Conv2D(5, 3, name="c")])
    tiles = inside.filter_tiles(rgb.get_layer("c"))
    assert tiles.shape == (5, 3, 3, 3)
    assert inside.filter_grid(rgb.get_layer("c")).shape == (2 * 4 + 1, 3 * 4 + 1, 3)
    with pytest.raises(ValueError, match="Conv2D"):
        inside.filter_tiles(model.get_layer("out"))


def test_overlay():
    img = np.arange(12, dtype=np.float64).reshape(3, 4)
    heat = np.zeros((3, 4))
    heat[1, 2] = 1
    out = inside.overlay(img, heat, alpha=0.0)
    assert out.dtype == np.uint8 and out.shape == (3, 4, 3)
    np.testing.assert_array_equal(out[..., 0], np.round(img / 11 * 255))
    hot = inside.overlay(img, heat, alpha=1.0)
    np.testing.assert_array_equal(hot[1, 2], [253, 231, 37])
    with pytest.raises(ValueError, match=r"heatmap \(2, 2\)"):
        inside.overlay(img, np.zeros((2, 2)))


def test_functional_model_walk():
    x_in = Input((8, 8, 1))
    h = Conv2D(3, 3, activation="tanh", name="c")(x_in)
    y = Dense(2, name="d")(Flatten()(AveragePooling2D(2)(h)))
    model = cf.Model(x_in, y)
    x = np.random.default_rng(11).standard_normal((8, 8, 1))
    g = inside.input_gradient(model, x.astype(np.float32), 1)
    c, d = model.get_layer("c"), model.get_layer("d")

    def f(v):
        a = np.tanh(conv_reference(v, c.weights_["kernel"], c.weights_["bias"]))
        p = a.reshape(3, 2, 3, 2, 3).mean(axis=(1, 3))
        return p.reshape(-1) @ np.asarray(d.weights_["kernel"], np.float64)[:, 1]

    eps = 1e-6  # float64 central differences
    ref = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[idx] += eps
        down[idx] -= eps
        ref[idx] = (f(up) - f(down)) / (2 * eps)
    np.testing.assert_allclose(g, ref, rtol=1e-4, atol=1e-6)  # fp32 through 9- and 27-term sums


def test_training_diagnostics_file(tmp_path):
    from cnnfast.datasets import mnist

    (x, y), _ = mnist.load_data(sample=True)
    x = (x[:256, :, :, None] / 255.0).astype(np.float32)
    y = y[:256]
    cf.set_seed(0)
    model = cf.Sequential([Input((28, 28, 1)), Conv2D(4, 5, activation="relu", name="c1"),
                           MaxPooling2D(2), Flatten(), Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    path = tmp_path / "run.json"
    diag = inside.TrainingDiagnostics(path, x_probe=x[:64], bins=12)
    history = model.fit(x, y, epochs=2, batch_size=64, verbose=0, callbacks=[diag])
    record = inside.load_diagnostics(path)
    assert path.stat().st_size < 50_000
    assert [e["epoch"] for e in record["epochs"]] == [1, 2]
    assert [e["logs"]["loss"] for e in record["epochs"]] == pytest.approx(history.history["loss"])
    c1 = record["epochs"][1]["layers"][0]
    assert c1["name"] == "c1" and len(c1["weights"]["kernel"]["counts"]) == 12
    assert sum(c1["weights"]["kernel"]["counts"]) == 5 * 5 * 4
    assert c1["gradients"]["kernel"]["abs_max"] > 0  # the last batch's gradients were seen
    # The histograms are those of the final weights and of the last batch's gradients.
    layer = model.get_layer("c1")
    assert c1["weights"]["kernel"] == inside._histogram(layer.weights_["kernel"], 12)
    assert c1["gradients"]["kernel"] == inside._histogram(layer.gradients_["kernel"], 12)
    outs = inside.layer_outputs(model, x[:64], ["c1"])[0]
    assert c1["dead_relu"] == pytest.approx(float(np.mean(~(outs > 0).any(axis=0))))
    assert [f["epoch"] for f in record["filters"]] == [0, 1, 2]
    np.testing.assert_allclose(record["filters"][-1]["kernel"],
                               model.get_layer("c1").weights_["kernel"], atol=1e-6)  # 6 digits
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ValueError, match="not a cnnfast training log"):
        inside.load_diagnostics(tmp_path / "bad.json")


def test_save_png(tmp_path):
    pytest.importorskip("matplotlib")
    inside.save_png(np.linspace(0, 1, 12).reshape(3, 4), tmp_path / "a.png", scale=4)
    data = (tmp_path / "a.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, 3\)"):
        inside.save_png(np.zeros((2, 2, 2)), tmp_path / "b.png")


def test_walk_runs_batchnorm_in_inference_mode():
    """The attribution walk explains inference: BatchNormalization normalizes with its moving
    statistics (a batch's would give another function of the input) and leaves them alone."""
    cf.set_seed(2)
    model = cf.Sequential([cf.layers.Input((6, 6, 2)), cf.layers.Conv2D(3, 3),
                           cf.layers.BatchNormalization(), cf.layers.ReLU(),
                           cf.layers.GlobalAveragePooling2D(),
                           cf.layers.Dense(4, activation="softmax")])
    model.build()
    bn = model.layers[1]
    bn.moving_mean = [0.3, -0.2, 0.1]
    bn.moving_variance = [2.0, 0.5, 1.5]
    before = [w.copy() for w in bn.get_weights()]
    x = np.random.default_rng(5).standard_normal((3, 6, 6, 2)).astype(np.float32)
    g = inside.input_gradient(model, x, class_index=[0, 1, 2])
    for a, b in zip(before, bn.get_weights()):
        np.testing.assert_array_equal(a, b)
    # One sample at a time gives the same gradient (batch statistics would couple them).
    for n in range(3):
        np.testing.assert_allclose(inside.input_gradient(model, x[n:n + 1], class_index=[n]),
                                   g[n:n + 1], rtol=1e-5, atol=1e-7)  # same float32 kernels
