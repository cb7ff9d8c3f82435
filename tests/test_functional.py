"""The functional API: graphs of layer calls (cf.Model(inputs, outputs)), merge layers, shared
layers; training against PyTorch, the C++ executor, saving, ONNX, the analyzer and errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

import cnnfast as cf
from cnnfast import _core

L = cf.layers


def residual(seed=0, shape=(8, 8, 3), filters=4, classes=5):
    cf.set_seed(seed)
    return cf.models.resnet_cifar(shape, classes=classes, filters=filters)


def shared_and_concat(seed=0):
    """A conv called twice (shared weights) and a concatenation of two branches."""
    cf.set_seed(seed)
    x = L.Input((6, 6, 3))
    a = L.Conv2D(3, 3, padding="same", activation="tanh", name="a")(x)
    shared = L.Conv2D(3, 3, padding="same", activation="tanh", name="shared")
    s1 = shared(a)
    s2 = shared(L.multiply([s1, a]))
    m = L.concatenate([s2, L.subtract([s1, x]), L.maximum([a, x])])
    y = L.Dense(4, activation="softmax", name="out")(L.Flatten()(L.average([m, m])))
    return cf.Model(x, y, name="shared_concat")


def data(rng, shape, n=8, classes=5):
    return (rng.standard_normal((n, *shape)).astype(np.float32),
            np.eye(classes, dtype=np.float32)[rng.integers(0, classes, n)])


def test_model_structure_and_keras_attributes():
    model = residual()
    assert isinstance(model, cf.Model) and not isinstance(model, cf.Sequential)
    assert model.layers[0].name == "input" and model.layers[-1].name == "predictions"
    assert model.input_shape == (None, 8, 8, 3) and model.output_shape == (None, 5)
    add = model.get_layer("block1_add")
    assert isinstance(add, L.Add)
    # Keras's functional config: layers with their calls, input and output nodes.
    config = model.get_config()
    entry = next(e for e in config["layers"] if e["config"]["name"] == "block1_add")
    assert entry["inbound_nodes"] == [[["block1_conv2", 0], ["stem", 0]]]
    assert config["input_layers"] == [["input", 0]]
    assert config["output_layers"] == [["predictions", 0]]
    assert json.loads(model.to_json())["class_name"] == "Functional"


def test_shared_layer_has_one_set_of_weights():
    model = shared_and_concat()
    shared = model.get_layer("shared")
    assert sum(layer is shared for layer in model.layers) == 1
    assert len([n for n in model._nodes if n.layer is shared]) == 2
    assert model.count_params() == sum(w.size for w in model.get_weights())
    entry = next(e for e in model.get_config()["layers"] if e["config"]["name"] == "shared")
    assert entry["inbound_nodes"] == [[["a", 0]], [["multiply", 0]]]


@pytest.mark.parametrize("build", [residual, shared_and_concat])
def test_executor_python_walk_and_onnx_agree(build, rng, tmp_path):
    model = build()
    x = rng.standard_normal((3, *model.input_shape_)).astype(np.float32)
    python = model._forward(x, training=False).copy()
    assert model._inference_network() is not None  # the C++ builder took the graph
    # The executor runs the same kernels in the same order: equal up to float32 rounding of
    # kernels whose blocking depends on the batch they see.
    np.testing.assert_allclose(model.predict(x), python, rtol=1e-5, atol=1e-6)
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the ONNX reference")
    cf.export_onnx(model, tmp_path / "m.onnx")
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    # onnxruntime's own float32 kernels: a different summation order.
    np.testing.assert_allclose(session.run(None, {"input": x})[0], python, rtol=1e-4, atol=1e-5)


def torch_residual(torch, w, x):
    """resnet_cifar in torch, float64, NHWC in, logits out; w in cnnfast's order."""
    import torch.nn.functional as F

    def conv(h, k, b):
        out = F.conv2d(h.permute(0, 3, 1, 2), k.permute(3, 2, 0, 1), b, padding=1)
        return out.permute(0, 2, 3, 1)

    h = F.relu(conv(x, w[0], w[1]))
    for block in range(2):
        k1, b1, k2, b2 = w[2 + 4 * block: 6 + 4 * block]
        h = F.relu(conv(F.relu(conv(h, k1, b1)), k2, b2) + h)
        if block == 0:
            h = F.max_pool2d(h.permute(0, 3, 1, 2), 2).permute(0, 2, 3, 1)
    h = h.mean(dim=(1, 2))  # the average pool over the whole map
    return h @ w[10] + w[11]


@pytest.mark.parametrize("opt", ["sgd", "momentum"])
def test_residual_network_trains_to_the_same_weights_as_torch(opt, rng):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference (test extra)")
    import torch.nn.functional as F

    model = residual(seed=1)
    names = [layer.name for layer in model.layers if layer.weights_]
    assert names == ["stem", "block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2",
                     "predictions"]
    lr, momentum = 0.05, (0.9 if opt == "momentum" else 0.0)
    model.compile(cf.optimizers.SGD(lr, momentum=momentum), "categorical_crossentropy")
    weights = [torch.tensor(w.astype(np.float64), requires_grad=True)
               for w in model.get_weights()]
    topt = torch.optim.SGD(weights, lr=lr, momentum=momentum)
    for step in range(8):
        xb, yb = data(rng, (8, 8, 3))
        loss = model.train_on_batch(xb, yb)
        topt.zero_grad()
        ref = F.cross_entropy(torch_residual(torch, weights, torch.tensor(xb, dtype=torch.float64)),
                              torch.tensor(yb, dtype=torch.float64))
        ref.backward()
        topt.step()
        assert loss == pytest.approx(ref.item(), rel=1e-4), f"loss at step {step}"
    # float32 against float64 over 8 steps: cnnfast's rounding compounded (as the Sequential
    # training test in test_torch_reference.py, 2e-6 of the largest weight).
    for got, ref in zip(model.get_weights(), weights):
        ref = ref.detach().numpy()
        np.testing.assert_allclose(got, ref, rtol=0, atol=2e-6 * max(np.abs(ref).max(), 1.0))


def test_shared_layer_gradients_sum_over_its_calls(rng):
    """Weight gradients of a graph with a shared layer, fan-out and every merge kind, against
    torch autograd in float64 on the same weights."""
    torch = pytest.importorskip("torch", reason="PyTorch is the reference (test extra)")
    import torch.nn.functional as F

    model = shared_and_concat(seed=3)
    model.compile("sgd", "categorical_crossentropy")
    x, y = data(rng, (6, 6, 3), n=4, classes=4)
    out = model._forward(x, training=True)
    grad = np.empty_like(out)
    model._loss_and_gradient(out, y, grad)
    model._backward(grad)

    w = [torch.tensor(v.astype(np.float64), requires_grad=True) for v in model.get_weights()]
    conv = lambda h, k, b: torch.tanh(F.conv2d(h.permute(0, 3, 1, 2), k.permute(3, 2, 0, 1), b,
                                               padding=1).permute(0, 2, 3, 1))
    tx = torch.tensor(x, dtype=torch.float64)
    a = conv(tx, w[0], w[1])
    s1 = conv(a, w[2], w[3])
    s2 = conv(s1 * a, w[2], w[3])
    m = torch.cat([s2, s1 - tx, torch.maximum(a, tx)], dim=-1)
    logits = ((m + m) / 2).reshape(len(x), -1) @ w[4] + w[5]
    F.cross_entropy(logits, torch.tensor(y, dtype=torch.float64)).backward()
    grads = [g for layer in model.layers for g in layer.grads()]
    assert len(grads) == len(w) == 6
    for got, ref in zip(grads, w):
        ref = ref.grad.numpy()
        # float32 against float64 through two tanh convolutions: a few ulps of the largest term.
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-6 * max(np.abs(ref).max(), 1))


def test_save_load_and_resume_a_graph(rng, tmp_path):
    model = residual(seed=2)
    model.compile("adam", "categorical_crossentropy", metrics=["accuracy"])
    x, y = data(rng, (8, 8, 3), n=16)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "r.cnnfast")
    state = cf.random.get_state()
    loaded = cf.load_model(tmp_path / "r.cnnfast")
    assert cf.random.get_state() == state  # loading draws nothing from the global generator
    assert isinstance(loaded, cf.Model) and loaded.compiled
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    model.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    for a, b in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    again = cf.saving.model_from_json(model.to_json())
    assert [layer.name for layer in again.layers] == [layer.name for layer in model.layers]


def test_c_reader_runs_a_graph_file(rng, tmp_path):
    """The model-file reader of the C API builds the graph with the same builder."""
    model = residual(seed=4)
    model.save(tmp_path / "r.cnnfast")
    header = cf.saving.read_header(tmp_path / "r.cnnfast")
    weights = {name: np.fromfile(tmp_path / "r.cnnfast", np.float32,
                                 count=int(np.prod(e.shape)) if e.shape else 1,
                                 offset=header.data_start + e.begin).reshape(e.shape)
               for name, e in header.tensors.items()}
    net = _core.Network.from_config(header.metadata["architecture"], weights)
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)
    out = np.empty((2, 5), np.float32)
    net.forward(out, x)
    np.testing.assert_allclose(out, model.predict(x), rtol=1e-6, atol=1e-7)  # same kernels


def test_analyzer_follows_the_longest_path():
    report = cf.analyze(residual(shape=(16, 16, 3)))
    rows = {r.name: r for r in report.layers}
    # stem 3, conv1 5, conv2 7; the skip path carries stem's 3; Add takes the larger.
    assert rows["block1_conv2"].receptive_field == (7, 7)
    assert rows["block1_add"].receptive_field == (7, 7)
    assert rows["block2_add"].receptive_field == rows["block2_conv2"].receptive_field
    assert rows["block1_add"].flops == 16 * 16 * 4  # one add per output element
    assert report.totals["params"] == residual(shape=(16, 16, 3)).count_params()


def test_summary_lists_calls_and_connections(capsys):
    shared_and_concat().summary()
    out = capsys.readouterr().out
    assert "Connected to" in out
    assert "multiply (Multiply)" in out and "shared, a" in out
    assert out.count("shared (Conv2D)") == 2


def test_merge_layers_run_eagerly_on_arrays(rng):
    a, b = (rng.standard_normal((2, 3, 4)).astype(np.float32) for _ in range(2))
    np.testing.assert_allclose(L.Add()([a, b]), a + b, rtol=1e-6)
    np.testing.assert_array_equal(L.Concatenate()([a, b]), np.concatenate([a, b], -1))


def test_graph_errors_name_layers_and_shapes():
    x = L.Input((8, 8, 3), name="x")
    c = L.Conv2D(4, 3, name="c")(x)
    with pytest.raises(ValueError, match=r"Add 'add.*': input 1 has shape \(8, 8, 3\), input 0 "
                                         r"\(6, 6, 4\)"):
        L.add([c, x])
    other = L.Input((8, 8, 3), name="other")
    with pytest.raises(ValueError, match="depends on InputLayer 'other'.*dangling input"):
        cf.Model(x, L.add([L.Conv2D(3, 3, padding="same")(x), other]))
    with pytest.raises(TypeError, match="takes a list of tensors"):
        L.Add()(x)
    with pytest.raises(TypeError, match="takes one tensor"):
        L.Conv2D(2, 3)([x, x])
    with pytest.raises(TypeError, match="must be a symbolic tensor"):
        cf.Model(np.zeros((1, 8, 8, 3)), c)
    shared = L.Conv2D(4, 3, name="s")
    shared(x)
    with pytest.raises(ValueError, match=r"was built for input \(8, 8, 3\), now called on "
                                         r"\(6, 6, 4\)"):
        shared(c)
    with pytest.raises(TypeError, match="a functional model is fixed"):
        cf.Model(x, c).add(L.Flatten())


def test_config_with_a_cycle_or_a_missing_node_is_refused():
    config = residual().get_config()
    conv = next(e for e in config["layers"] if e["config"]["name"] == "block1_conv1")
    conv["inbound_nodes"] = [[["block1_relu", 0]]]  # block1_relu depends on block1_conv1
    with pytest.raises(ValueError, match=r"cycle: .*block1_conv1\[0\] <- block1_relu\[0\]"):
        cf.saving.model_from_config(config)
    conv["inbound_nodes"] = [[["ghost", 0]]]
    with pytest.raises(ValueError, match=r"block1_conv1\[0\] <- ghost\[0\]"):
        cf.saving.model_from_config(config)


def test_keras_names_build_a_functional_model():
    from cnnfast import keras

    x = keras.Input(shape=(4, 4, 2))
    y = keras.layers.Concatenate()([x, keras.layers.Add()([x, x])])
    model = keras.Model(inputs=x, outputs=keras.layers.Flatten()(y))
    assert model.output_shape == (None, 64)
    assert keras.models.Model is cf.Model


def test_default_names_are_unique_across_sibling_branches():
    """Two branches from one value (a ResNet block's residual convolutions and its projection
    shortcut) each get their own default name, as Keras's per-class counters give."""
    x = L.Input((8, 8, 3))
    y = L.Conv2D(4, 3, padding="same")(x)
    y = L.Conv2D(4, 3, padding="same")(y)
    s = L.Conv2D(4, 1)(x)  # a sibling: its ancestors hold only the Input
    model = cf.Model(x, L.Add()([s, y]))
    names = [layer.name for layer in model.layers]
    assert len(set(names)) == len(names)
    assert sorted(n for n in names if n.startswith("conv2d")) == ["conv2d", "conv2d_1", "conv2d_2"]
