"""The C++ training step (_core.TrainPlan) against the Python layer walk it replaces.

Both run the same kernels in the same order, so from one seed at one thread they must leave the
same weights bit for bit (np.array_equal), the same optimizer state and the same random stream.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from more_layers_models import MODELS as MORE_LAYER_MODELS
from test_arena import core_calls

import cnnfast as cf
from cnnfast import layers as L
from cnnfast.optimizers.schedules import LearningRateSchedule


@pytest.fixture(autouse=True)
def one_thread():
    before = cf.get_num_threads()
    cf.set_num_threads(1)  # reductions are bit-reproducible at a given thread count
    yield
    cf.set_num_threads(before)


def merge_graph(dropout_seed: int | None = None) -> cf.Model:
    """Every merge layer, Dropout with and without a seed, and a value read by three calls."""
    x = L.Input((6, 6, 2), name="x")
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="a")(x)
    b = L.Conv2D(4, 3, padding="same", activation="tanh", name="b")(a)
    c = L.Conv2D(4, 1, activation="sigmoid", name="c")(a)
    d = L.Dropout(0.25, seed=dropout_seed, name="drop_a")(a)
    s = L.Add(name="add")([b, c, d])
    s = L.Subtract(name="sub")([s, c])
    p = L.Multiply(name="mul")([s, b])
    q = L.Maximum(name="max")([p, a])
    m = L.Average(name="avg")([q, L.ELU(0.5, name="elu")(p)])
    j = L.Concatenate(name="cat")([m, a, L.Conv2D(3, 1, activation="swish", name="e")(x)])
    h = L.MaxPooling2D(2, name="pool")(j)
    h = L.Activation("relu", name="relu")(h)
    h = L.AveragePooling2D(3, strides=1, padding="same", name="avgpool")(h)
    h = L.Flatten(name="flat")(L.Dropout(0.3, name="drop_b")(h))
    h = L.Dense(8, activation="elu", name="fc")(h)
    return cf.Model(x, L.Dense(5, activation="softmax", name="out")(h))


def sequential_mix() -> cf.Sequential:
    """A stack with the Sequential fusions (ReLU folded into max pooling) and a non-fused
    softmax in the middle, Dense on an image, groups and strides."""
    return cf.Sequential([
        L.Input((9, 9, 4)),
        L.Conv2D(6, 3, strides=2, padding=(1, 1), groups=2, activation="relu"),
        L.MaxPooling2D(2, strides=1),
        L.Dense(5, activation="tanh"),
        L.Softmax(),
        L.Conv2D(4, 2, use_bias=False),
        L.ReLU(),
        L.MaxPooling2D(2, padding="same"),
        L.Flatten(),
        L.Dense(6, activation="relu", kernel_regularizer=cf.regularizers.L1L2(1e-3, 1e-2)),
        L.Dense(3, activation="softmax", bias_regularizer="l2"),
    ])


def alexnet_like() -> cf.Sequential:
    """AlexNet's blocks at 15x15: LRN after a strided and after a grouped convolution, PReLU
    per channel (shared_axes=[1, 2]) on the data and after a convolution, and per element."""
    return cf.Sequential([
        L.Input((15, 15, 3)),
        L.PReLU("he_uniform", shared_axes=[1, 2]),
        L.Conv2D(8, 3, strides=2, activation="relu"),
        L.LocalResponseNormalization(depth_radius=2, bias=2.0, alpha=1e-2, beta=0.75),
        L.MaxPooling2D(3, strides=2),
        L.Conv2D(8, 3, padding=1, groups=2),
        L.PReLU("he_uniform", shared_axes=[1, 2]),
        L.LocalResponseNormalization(depth_radius=1, bias=1.0, alpha=0.5, beta=0.6),
        L.Flatten(),
        L.Dense(12),
        L.PReLU("he_uniform"),
        L.Dropout(0.25),
        L.Dense(5, activation="softmax"),
    ])


def shared_graph() -> cf.Model:
    """A Conv2D called three times (on the data, after LRN, on its own output) and a Dense
    called twice: each call keeps its own saved inputs, the weight gradients are summed."""
    x = L.Input((6, 6, 3), name="x")
    conv = L.Conv2D(3, 3, padding="same", activation="relu", name="conv")
    a = conv(x)
    b = conv(L.LocalResponseNormalization(1, alpha=0.5, name="lrn")(a))
    c = conv(b)
    h = L.Add(name="add")([a, b, c])
    h = L.Flatten(name="flat")(L.MaxPooling2D(2, name="pool")(h))
    h = L.Dense(8, name="fc")(h)
    dense = L.Dense(8, activation="tanh", name="shared_dense")
    u = dense(h)
    v = dense(L.PReLU("he_uniform", name="prelu")(u))
    j = L.Concatenate(name="cat")([u, L.Dropout(0.2, name="drop")(v)])
    return cf.Model(x, L.Dense(5, activation="softmax", name="out")(j))


def shared_late_call() -> cf.Model:
    """A shared layer's second call waits on a layer listed after it, and its input is read by
    three calls: the plan must order the calls (and sum their gradients) as the Python walk."""
    x = L.Input((5,), name="x")
    a = L.Dense(5, activation="tanh", name="a")
    b = L.Dense(5, name="b")(a(x))
    c = L.Dense(5, activation="sigmoid", name="c")(b)
    d = L.Dropout(0.3, name="drop")(L.Dense(5, name="d")(b))
    h = L.Add(name="add")([a(b), c, d])
    return cf.Model(x, L.Dense(3, activation="softmax", name="out")(h))


def shared_input_last() -> cf.Model:
    """A shared layer called first on a hidden value, then on the data: it still owes the
    hidden value its gradient (need_input_grad holds if any call needs it)."""
    x = L.Input((4,), name="x")
    shared = L.Dense(4, activation="tanh", name="shared")
    u = shared(L.Dense(4, name="h")(x))
    v = shared(x)
    return cf.Model(x, L.Dense(3, activation="softmax", name="out")(L.Add(name="add")([u, v])))


def shared_output() -> cf.Model:
    """The output layer called twice: its softmax also feeds its other call, so the loss does
    not fuse with it (Model._fused_softmax)."""
    x = L.Input((4,), name="x")
    dense = L.Dense(4, activation="softmax", name="out")
    return cf.Model(x, dense(dense(x)))


def graph_head() -> cf.Model:
    """A graph opening with Conv2D(relu) + MaxPooling2D(2): the builder fuses the head and folds
    the later ReLU into its pooling in graphs as in stacks."""
    x = L.Input((10, 10, 2), name="x")
    h = L.MaxPooling2D(2, name="p0")(L.Conv2D(4, 3, activation="relu", name="c0")(x))
    b = L.Conv2D(4, 3, padding="same", activation="relu", name="c1")(h)
    j = L.MaxPooling2D(2, name="p1")(L.Add(name="add")([h, b]))
    r = L.Activation("relu", name="r")(j)
    return cf.Model(x, L.Dense(3, activation="softmax", name="out")(L.Flatten(name="f")(
        L.MaxPooling2D(1, name="p2")(r))))


def keras_mnist_cnn_frozen_head() -> cf.Sequential:
    """A frozen first layer: no fused head, no update of it, gradients still flow."""
    model = cf.models.keras_mnist_cnn((28, 28, 1))
    model.layers[0].trainable = False
    return model


def batchnorm_stack() -> cf.Sequential:
    """BatchNormalization on the data, after a linear convolution, without scale or center
    and frozen, with the spatial layers of issue 19 between them."""
    model = cf.Sequential([
        L.Input((6, 6, 3)),
        L.BatchNormalization(),
        L.Conv2D(4, 3, padding="same"),
        L.BatchNormalization(momentum=0.9),
        L.ReLU(),
        L.ZeroPadding2D(((1, 0), (2, 1))),
        L.Conv2D(4, 3, activation="relu"),
        L.BatchNormalization(scale=False),
        L.UpSampling2D((2, 1)),
        L.Cropping2D(((1, 2), (0, 1))),
        L.BatchNormalization(center=False, epsilon=1e-2),
        L.BatchNormalization(name="frozen_bn"),
        L.GlobalMaxPooling2D(keepdims=True),
        L.Reshape((2, 2)),
        L.Flatten(),
        L.Dense(5, activation="softmax"),
    ])
    model.get_layer("frozen_bn").trainable = False
    return model


def batchnorm_graph() -> cf.Model:
    """A BatchNormalization called twice (each call its own batch statistics, gamma/beta
    gradients summed) and global average pooling in a residual graph."""
    x = L.Input((6, 6, 2), name="x")
    bn = L.BatchNormalization(name="shared_bn")
    a = L.Conv2D(3, 3, padding="same", name="a")(x)
    h = L.ReLU(name="r1")(bn(a))
    b = L.Conv2D(3, 3, padding="same", name="b")(h)
    s = L.Add(name="add")([bn(b), a])
    g = L.GlobalAveragePooling2D(name="gap")(L.ReLU(name="r2")(s))
    return cf.Model(x, L.Dense(4, activation="softmax", name="out")(g))


def relu_fusion_graph() -> cf.Model:
    """The batchnorm + relu and add + relu fusions and the cases they must leave alone: a
    frozen BatchNormalization + ReLU, a BatchNormalization whose output is also read by a
    second layer, a ReLU after a normalization that a max pooling differentiates, and a
    three-input Add."""
    x = L.Input((6, 6, 2), name="x")
    a = L.Conv2D(4, 3, padding="same", name="a")(x)
    h = L.ReLU(name="r_frozen")(L.BatchNormalization(name="frozen")(a))
    b = L.Conv2D(4, 3, padding="same", name="b")(h)
    bn_b = L.BatchNormalization(name="bn_twice_read")(b)
    j = L.Activation("relu", name="r_join")(L.Add(name="join")([bn_b, a]))
    k = L.Add(name="three")([L.ReLU(name="r_b")(bn_b), j, a])
    p = L.MaxPooling2D(2, name="pool")(L.ReLU(name="r_pool")(
        L.BatchNormalization(name="bn_pool")(L.Activation("relu", name="r_three")(k))))
    return cf.Model(x, L.Dense(3, activation="softmax", name="out")(L.Flatten()(p)))


def join_sharing_graph() -> cf.Model:
    """Two-input adds whose inputs may share one gradient buffer, and those that must not: a
    batch-norm branch and linear convolutions (shared); a convolution with a ReLU (its backward
    rewrites the gradient in place), a branch whose producer reads the add's other input
    (reads_j2: left alone, conservatively), an add reading one value twice, and an input (j3)
    whose last reader is not the add."""
    x = L.Input((6, 6, 2), name="x")
    h = L.Conv2D(3, 3, padding="same", name="h")(x)
    bn = L.BatchNormalization(name="bn")(L.Conv2D(3, 3, padding="same", name="c1")(h))
    j1 = L.Activation("relu", name="r1")(L.Add(name="shared_bn")([h, bn]))
    lin = L.Conv2D(3, 1, name="lin")(x)
    j2 = L.Add(name="shared_linear")([lin, j1])
    relu_branch = L.Conv2D(3, 3, padding="same", activation="relu", name="relu_conv")(x)
    j2 = L.Add(name="producer_reads")([L.Conv2D(3, 1, name="reads_j2")(j2), j2])
    j3 = L.Add(name="relu_producer")([j2, relu_branch])
    z = L.BatchNormalization(name="z")(L.Conv2D(3, 1, name="zc")(j3))
    j4 = L.Add(name="read_twice")([j3, z])  # j3 is also read by zc: not the add's alone
    j5 = L.Add(name="twice")([j4, j4])
    out = L.Add(name="last")([j5, L.Conv2D(3, 1, name="side")(j3)])
    # A normalization whose input another layer also reads keeps its own input gradient.
    c2 = L.Conv2D(3, 3, padding="same", name="c2")(x)
    twice = L.Multiply(name="mul")([L.BatchNormalization(name="bn_input_read_twice")(c2), c2])
    out = L.Add(name="final")([out, twice])
    return cf.Model(x, L.Dense(3, activation="softmax", name="out")(L.Flatten()(out)))


def frozen_first_bn(factory: Callable[[], cf.Model]) -> Callable[[], cf.Model]:
    def build() -> cf.Model:
        model = factory()
        model.get_layer("frozen").trainable = False
        return model
    return build


# (name, model factory, input shape, targets kind)
MODELS: list[tuple[str, Callable[[], cf.Model], tuple[int, ...], str]] = [
    ("lenet5", lambda: cf.models.lenet5((28, 28, 1)), (28, 28, 1), "sparse"),
    ("keras_mnist_cnn", lambda: cf.models.keras_mnist_cnn((28, 28, 1)), (28, 28, 1), "sparse"),
    ("keras_mnist_cnn_frozen_head", keras_mnist_cnn_frozen_head, (28, 28, 1), "sparse"),
    ("graph_head", graph_head, (10, 10, 2), "onehot"),
    ("cifar10_simple", lambda: cf.models.cifar10_simple((12, 12, 3)), (12, 12, 3), "onehot"),
    ("resnet_cifar", lambda: cf.models.resnet_cifar((8, 8, 3), filters=4), (8, 8, 3), "sparse"),
    ("merge_graph", merge_graph, (6, 6, 2), "onehot"),
    ("join_sharing_graph", join_sharing_graph, (6, 6, 2), "onehot"),
    ("merge_graph_seeded", lambda: merge_graph(7), (6, 6, 2), "sparse"),
    ("sequential_mix", sequential_mix, (9, 9, 4), "sparse"),
    ("alexnet_like", alexnet_like, (15, 15, 3), "sparse"),
    ("shared_graph", shared_graph, (6, 6, 3), "onehot"),
    ("shared_late_call", shared_late_call, (5,), "sparse"),
    ("shared_output", shared_output, (4,), "sparse"),
    ("shared_input_last", shared_input_last, (4,), "sparse"),
    ("batchnorm_stack", batchnorm_stack, (6, 6, 3), "sparse"),
    ("batchnorm_graph", batchnorm_graph, (6, 6, 2), "onehot"),
    ("resnet20", lambda: cf.models.resnet20(), (32, 32, 3), "sparse"),
    ("vgg_cifar_bn", lambda: cf.models.vgg_cifar_bn((8, 8, 3)), (8, 8, 3), "onehot"),
    ("relu_fusion_graph", frozen_first_bn(relu_fusion_graph), (6, 6, 2), "sparse"),
]

# Issue 19's layers (LeakyReLU, noise, convolution variants, preprocessing).
MODELS += [(name, factory, shape, "sparse") for name, (factory, shape) in MORE_LAYER_MODELS.items()]

OPTIMIZERS = {
    "sgd_nesterov": lambda: cf.optimizers.SGD(0.05, momentum=0.9, nesterov=True),
    "adam_decay": lambda: cf.optimizers.Adam(3e-3, weight_decay=1e-2),
    "rmsprop": lambda: cf.optimizers.RMSprop(3e-3),
    "rmsprop_centered_momentum_clipnorm": lambda: cf.optimizers.RMSprop(
        3e-3, momentum=0.5, centered=True, clipnorm=0.05),
    "adagrad_clipvalue": lambda: cf.optimizers.Adagrad(0.05, clipvalue=0.01),
    "adadelta": lambda: cf.optimizers.Adadelta(1.0, weight_decay=1e-3),
    "adamax_global_clipnorm": lambda: cf.optimizers.Adamax(3e-3, global_clipnorm=0.1),
    "nadam": lambda: cf.optimizers.Nadam(3e-3),
    "adamw": lambda: cf.optimizers.AdamW(3e-3),
    "lion": lambda: cf.optimizers.Lion(1e-3, weight_decay=0.1),
    "sgd_cosine_warmup": lambda: cf.optimizers.SGD(cf.optimizers.schedules.CosineDecay(
        0.0, 6, warmup_target=0.05, warmup_steps=2), momentum=0.5),
}


def data(shape: tuple[int, ...], classes: int, kind: str, n: int = 24):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n, *shape)).astype(np.float32)
    labels = rng.integers(0, classes, n)
    y = labels if kind == "sparse" else np.eye(classes, dtype=np.float32)[labels]
    return x, y


def trained(factory, shape, kind, optimizer, python: bool, steps: Callable) -> cf.Model:
    cf.set_seed(3)
    model = factory()
    model.build()
    loss = "sparse_categorical_crossentropy" if kind == "sparse" else "categorical_crossentropy"
    model.compile(OPTIMIZERS[optimizer](), loss, metrics=["accuracy"])
    model._force_python_training = python
    assert (model._train_plan is None) == python
    steps(model)
    return model


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("name,factory,shape,kind", MODELS, ids=[m[0] for m in MODELS])
def test_plan_trains_bit_identically_to_the_python_walk(name, factory, shape, kind, optimizer):
    classes = factory().output_shape[-1]
    x, y = data(shape, classes, kind)
    sample_weight = np.linspace(0.5, 2.0, len(x))

    def steps(model: cf.Model) -> list:
        out = [model.train_on_batch(x[:16], y[:16])]
        if not isinstance(model.optimizer._learning_rate, LearningRateSchedule):
            model.optimizer.learning_rate *= 0.5  # a change between steps takes effect
        out.append(model.train_on_batch(x[8:], y[8:], sample_weight=sample_weight[8:]))
        history = model.fit(x, y, batch_size=10, epochs=2, verbose=0, shuffle=True)
        return out + [history.history]

    results = {}
    for python in (False, True):
        cf.set_seed(3)
        model = trained(factory, shape, kind, optimizer, python, lambda m: None)
        results[python] = (model, steps(model), cf.random.next_seed())
    (plan_model, plan_out, plan_seed), (walk_model, walk_out, walk_seed) = results[False], \
        results[True]
    # The plan's conv+relu+max-pool head kernel sums each convolution output in its own order;
    # the Python walk, the reference, runs each layer on its own. Everything else is the same
    # arithmetic in the same order: bit for bit.
    head = any("conv+relu+max-pool" in f for f in plan_model._train_plan.fusions)
    pairs = list(zip(plan_model.get_weights(), walk_model.get_weights())) + \
        list(zip(plan_model.optimizer.get_state(), walk_model.optimizer.get_state()))
    for wa, wb in pairs:
        if head:
            # A few ulps in the first conv's outputs, through 6 steps: measured <= 5.8e-6 of the
            # largest entry (RMSprop and Adadelta, whose steps divide by small running scales;
            # dev/measure_head_fusion.py); 3e-5 leaves a margin and still catches a wrong
            # gradient (1e-2).
            scale = max(float(np.max(np.abs(wb))), 1e-30)
            np.testing.assert_allclose(wa, wb, rtol=0, atol=3e-5 * scale, err_msg=name)
        else:
            assert np.array_equal(wa, wb), name
    assert plan_model.optimizer.iterations == walk_model.optimizer.iterations
    assert plan_seed == walk_seed  # Dropout drew the same seeds from cnnfast.random
    # Accuracy counts are exact; losses agree to the last bits (the plan sums regularizer
    # penalties and weighted per-sample losses in sequential double, NumPy pairwise), or to
    # float32 rounding with the head kernel (measured <= 5.3e-8, dev/measure_head_fusion.py;
    # 1e-6 leaves a margin).
    rtol = 1e-6 if head else 1e-12
    for got, want in zip(plan_out[:2], walk_out[:2]):
        np.testing.assert_allclose(got, want, rtol=rtol)
    for key in ("loss", "accuracy"):
        np.testing.assert_allclose(plan_out[2][key], walk_out[2][key], rtol=rtol)


def test_graph_fusions():
    model = graph_head()
    model.compile("sgd", "categorical_crossentropy")
    assert model._train_plan.fusions == [
        ("Dense 'out': softmax + cross-entropy as one kernel (the gradient with respect to the "
         "logits)"),
        ("Conv2D 'c0' + MaxPooling2D 'p0': one conv+relu+max-pool kernel (the full-resolution "
         "output is never stored)"),
        ("Activation 'r': relu differentiated by MaxPooling2D 'p2' after it, at the pooled "
         "resolution"),
        "Conv2D 'c1': relu in the convolution's epilogue"]


def test_relu_fusions_into_normalization_and_join():
    model = frozen_first_bn(relu_fusion_graph)()
    model.compile("sgd", "sparse_categorical_crossentropy")
    fusions = model._train_plan.fusions
    assert ("BatchNormalization 'frozen' + ReLU 'r_frozen': the relu inside the normalization "
            "(its input is never stored)") in fusions
    assert ("Add 'join' + Activation 'r_join': the relu inside the join (its input is never "
            "stored)") in fusions
    # Left alone: a normalization read twice, a three-input join, a relu the pooling
    # differentiates.
    assert not any("'bn_twice_read' +" in f or "'three' +" in f for f in fusions)
    assert ("ReLU 'r_pool': relu differentiated by MaxPooling2D 'pool' after it, at the pooled "
            "resolution") in fusions
    resnet = cf.models.resnet20()
    resnet.compile("sgd", "sparse_categorical_crossentropy")
    joined = [f for f in resnet._train_plan.fusions if "the relu inside" in f]
    assert len(joined) == 19  # the stem's and 9 blocks' first BN + relu, the 9 joins + relu


def test_join_inputs_share_one_gradient_where_safe():
    model = join_sharing_graph()
    model.compile("sgd", "categorical_crossentropy")
    shared = [f for f in model._train_plan.fusions if "one gradient for both inputs" in f]
    assert shared == [
        ("Add 'shared_bn' + Activation 'r1': one gradient for both inputs (BatchNormalization "
         "'bn' reads it where the add wrote it)"),
        ("Add 'shared_linear': one gradient for both inputs (Conv2D 'lin' reads it where the add "
         "wrote it)"),
        ("Add 'last': one gradient for both inputs (Conv2D 'side' reads it where the add wrote "
         "it)"),
    ]
    resnet = cf.models.resnet20()
    resnet.compile("sgd", "sparse_categorical_crossentropy")
    joins = [f for f in resnet._train_plan.fusions if "one gradient for both inputs" in f]
    assert len(joins) == 9  # every block's join: its second batch norm reads the add's gradient


def test_normalization_writes_its_input_gradient_in_place():
    def in_place(model):
        return [f.split(":")[0] for f in model._train_plan.fusions if "written over" in f]

    model = join_sharing_graph()
    model.compile("sgd", "categorical_crossentropy")
    # z: its input is zc's output, read by it alone; not bn (its output's gradient is the
    # buffer of shared_bn's other input), not bn_input_read_twice (c2 is also multiplied).
    assert in_place(model) == ["BatchNormalization 'z'"]
    stack = batchnorm_stack()
    stack.compile("sgd", "sparse_categorical_crossentropy")
    # Not the one on the data, nor the frozen one right after another normalization (whose
    # output gradient already holds that one's input gradient).
    assert in_place(stack) == ["BatchNormalization 'batch_normalization_1' + ReLU 'relu'",
                               "BatchNormalization 'batch_normalization_2'",
                               "BatchNormalization 'batch_normalization_3'"]
    resnet = cf.models.resnet20()
    resnet.compile("sgd", "sparse_categorical_crossentropy")
    assert len(in_place(resnet)) == 9  # every block's first (the stem's output is a join's)


def test_keras_mnist_cnn_plan_steps_and_fusions():
    model = cf.models.keras_mnist_cnn((28, 28, 1))
    model.compile("adam", "sparse_categorical_crossentropy")
    steps = model._train_plan.steps
    assert steps[0] == "Conv2D 'conv2d' + MaxPooling2D 'max_pooling2d'"
    assert model._train_plan.fusions == [
        ("Dense 'dense': softmax + cross-entropy as one kernel (the gradient with respect to "
         "the logits)"),
        ("Conv2D 'conv2d' + MaxPooling2D 'max_pooling2d': one conv+relu+max-pool kernel (the "
         "full-resolution output is never stored)"),
        ("Conv2D 'conv2d_1': relu differentiated by MaxPooling2D 'max_pooling2d_1' after it, at "
         "the pooled resolution"),
        "Conv2D 'conv2d_1': relu in the convolution's epilogue",
        "Conv2D 'conv2d_2': relu in the convolution's epilogue"]
    assert model._train_plan.dropout_layers == ["Dropout 'dropout'"]


def test_mse_and_frozen_layers_train_bit_identically():
    def run(python: bool) -> cf.Model:
        cf.set_seed(5)
        model = cf.Sequential([L.Input((5, 5, 2)), L.Conv2D(3, 3, activation="elu"),
                               L.Flatten(), L.Dense(4, activation="sigmoid"), L.Dense(1)])
        model.layers[0].trainable = False
        model.compile(cf.optimizers.SGD(0.1), "mse", metrics=["accuracy"])
        model._force_python_training = python
        rng = np.random.default_rng(2)
        x = rng.standard_normal((12, 5, 5, 2)).astype(np.float32)
        y = (rng.random((12, 1)) > 0.5).astype(np.float32)
        for _ in range(3):
            model.train_on_batch(x, y)
        return model

    plan, walk = run(False), run(True)
    assert plan._train_plan is not None
    for wa, wb in zip(plan.get_weights(), walk.get_weights()):
        assert np.array_equal(wa, wb)
    cf.set_seed(5)
    frozen = cf.Sequential([L.Input((5, 5, 2)), L.Conv2D(3, 3, activation="elu")]).get_weights()
    for got, want in zip(plan.layers[0].get_weights(), frozen):
        assert np.array_equal(got, want)


def test_one_call_into_the_core_per_lenet5_step(rng):
    cf.set_seed(0)
    model = cf.models.lenet5((28, 28, 1))
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.random((32, 28, 28, 1), dtype=np.float32)
    y = rng.integers(0, 10, 32)
    model.train_on_batch(x, y)
    assert core_calls(lambda: model.train_on_batch(x, y)) == {"step": 1}
    calls = core_calls(lambda: model.fit(x, y, batch_size=8, epochs=1, verbose=0))
    assert calls == {"step": 4}


def test_non_finite_loss_raises_before_any_update():
    model = cf.models.cifar10_simple((8, 8, 3))
    model.compile(cf.optimizers.Adam(), "sparse_categorical_crossentropy")
    assert model._train_plan is not None
    x = np.full((4, 8, 8, 3), np.nan, np.float32)
    before = model.get_weights()
    with pytest.raises(FloatingPointError, match="the weights were not updated"):
        model.train_on_batch(x, np.zeros(4, np.int64))
    for got, want in zip(model.get_weights(), before):
        assert np.array_equal(got, want)
    assert model.optimizer.iterations == 0


class ScaledLoss(cf.losses.CategoricalCrossentropy):
    pass


def test_models_the_plan_does_not_run_train_in_python():
    model = cf.models.cifar10_simple((8, 8, 3))
    model.compile("sgd", ScaledLoss())
    assert model._train_plan is None and model._train_plan_blocker()
    x = np.ones((2, *model.input_shape_), np.float32)
    y = np.eye(model.output_shape_[-1], dtype=np.float32)[[0, 1]]
    model.train_on_batch(x, y)




def test_plan_step_refuses_bad_arguments_naming_the_shapes():
    model = cf.models.cifar10_simple((8, 8, 3))
    model.compile(cf.optimizers.SGD(0.1), "sparse_categorical_crossentropy")
    plan = model._train_plan
    x = np.zeros((4, 8, 8, 3), np.float32)
    labels = np.zeros(4, np.int32)
    no_seeds = np.zeros(0, np.uint64)

    def step(x=x, y=labels, optimizer="sgd", **kw):
        return plan.step(x, y, None, no_seeds, optimizer=optimizer, lr=0.1, **kw)

    before = model.get_weights()
    with pytest.raises(ValueError, match=r"x must have shape \(N, 8, 8, 3\)"):
        step(x=np.zeros((4, 8, 8, 2), np.float32))
    with pytest.raises(ValueError, match="expected dtype int32"):
        step(y=labels.astype(np.float32))
    with pytest.raises(ValueError, match=r"label 10 at row 2 is out of range \[0, 10\)"):
        step(y=np.array([0, 1, 10, 2], np.int32))
    with pytest.raises(ValueError, match="TrainPlan.step: unknown optimizer 'ftrl'"):
        step(optimizer="ftrl")
    with pytest.raises(ValueError, match="rmsprop needs its 'velocity' slot array"):
        step(optimizer="rmsprop")
    with pytest.raises(ValueError, match="only one of clipnorm, clipvalue and global_clipnorm"):
        step(clipnorm=1.0, clipvalue=1.0)
    with pytest.raises(ValueError, match="clip_bounds must rise from 0 to"):
        step(clipnorm=1.0, clip_bounds=np.array([0, 5], np.int64))
    with pytest.raises(ValueError, match="slot0: expected"):
        step(optimizer="adagrad", slot0=np.zeros(3, np.float32))
    for got, want in zip(model.get_weights(), before):
        assert np.array_equal(got, want)
    loss, correct, updated = step()
    assert updated and 0 <= correct <= 4 and np.isfinite(loss)
