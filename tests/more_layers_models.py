"""Small models using the issue-19 layers (activation, noise, convolution variants,
preprocessing), shared by the plan, executor, saving, ONNX and C API tests."""

from __future__ import annotations

import cnnfast as cf
from cnnfast import layers as L


def leaky_net() -> cf.Sequential:
    """LeakyReLU layers (default and explicit slope) and leaky_relu as a conv and Dense
    activation (keras.activations' slope 0.2)."""
    return cf.Sequential([
        L.Input((8, 8, 3)),
        L.Conv2D(4, 3, padding="same", activation="leaky_relu"),
        L.LeakyReLU(),
        L.MaxPooling2D(2),
        L.Conv2D(5, 3),
        L.LeakyReLU(negative_slope=0.05),
        L.Flatten(),
        L.Dense(6, activation="leaky_relu"),
        L.Dense(3, activation="softmax"),
    ], name="leaky_net")


def rescaling_net() -> cf.Sequential:
    """Rescaling on the data (scalars) and inside the network (per channel, so its backward
    runs)."""
    return cf.Sequential([
        L.Input((6, 6, 3)),
        L.Rescaling(1 / 127.5, offset=-1.0),
        L.Conv2D(4, 3, activation="tanh"),
        L.Rescaling([0.5, 2.0, -1.0, 3.0], offset=[0.1, 0.0, -0.2, 0.3]),
        L.Conv2D(3, 2, padding="same"),
        L.Rescaling(2.0, offset=[1.0, -1.0, 0.5]),
        L.Flatten(),
        L.Dense(3, activation="softmax"),
    ], name="rescaling_net")


def dilated_net() -> cf.Sequential:
    """Dilated convolutions: a ReLU head before max pooling (not the fused head kernel, which
    has no dilation), "same" and explicit padding, unequal rates, a rate with a stride, groups,
    and 16 -> 16 channels 3x3 (a Winograd shape, which dilation must keep off Winograd)."""
    return cf.Sequential([
        L.Input((12, 12, 3)),
        L.Conv2D(16, 3, dilation_rate=2, activation="relu"),
        L.MaxPooling2D(2),
        L.Conv2D(16, 3, padding="same", dilation_rate=2, activation="relu"),
        L.Conv2D(8, (3, 2), padding=(2, 1), dilation_rate=(2, 3), groups=2),
        L.Conv2D(6, 2, strides=2, dilation_rate=2, use_bias=False, activation="tanh"),
        L.Flatten(),
        L.Dense(3, activation="softmax"),
    ], name="dilated_net")


def mobilenet_like() -> cf.Sequential:
    """DepthwiseConv2D (multiplier 1 with relu, 2 with a stride and dilation) and
    SeparableConv2D (with relu before max pooling, with a multiplier, without bias)."""
    return cf.Sequential([
        L.Input((10, 10, 4)),
        L.DepthwiseConv2D(3, padding="same", activation="relu"),
        L.SeparableConv2D(8, 3, padding="same", activation="relu"),
        L.MaxPooling2D(2),
        L.DepthwiseConv2D((3, 2), strides=(1, 2), padding="same", depth_multiplier=2,
                          dilation_rate=(2, 1), activation="tanh"),
        L.SeparableConv2D(6, 2, depth_multiplier=3, use_bias=False, dilation_rate=2),
        L.LeakyReLU(0.1),
        L.Flatten(),
        L.Dense(4, activation="softmax"),
    ], name="mobilenet_like")


def shared_separable_graph() -> cf.Model:
    """A SeparableConv2D (two plan steps) called twice, on the data and on its own output:
    the steps of each call are matched by label and their gradients summed."""
    x = L.Input((6, 6, 4), name="x")
    sep = L.SeparableConv2D(4, 3, padding="same", activation="relu", name="sep")
    a = sep(x)
    b = sep(L.DepthwiseConv2D(3, padding="same", name="dw")(a))
    h = L.Flatten(name="flat")(L.Add(name="add")([a, b]))
    return cf.Model(x, L.Dense(3, activation="softmax", name="out")(h))


def augment_net(seeded: bool = False) -> cf.Sequential:
    """The training-time random layers between Dropouts, drawing seeds in one order: RandomFlip
    on the data (each mode), SpatialDropout2D, GaussianNoise, with and without layer seeds."""
    seed = (lambda k: k) if seeded else (lambda k: None)
    return cf.Sequential([
        L.Input((8, 7, 3)),
        L.RandomFlip(seed=seed(1)),
        L.Rescaling(0.5),
        L.Conv2D(6, 3, activation="relu"),
        L.SpatialDropout2D(0.3, seed=seed(2)),
        L.RandomFlip("horizontal", seed=seed(3)),
        L.GaussianNoise(0.2, seed=seed(4)),
        L.Conv2D(5, 3, padding="same"),
        L.RandomFlip("vertical", seed=seed(5)),
        L.MaxPooling2D(2),
        L.Flatten(),
        L.Dropout(0.2, seed=seed(6)),
        L.GaussianNoise(0.1, seed=seed(7)),
        L.Dense(4, activation="softmax"),
    ], name="augment_net")


def augment_graph() -> cf.Model:
    """Keras' functional augmentation idiom: random layers on the input, then a residual
    block; GaussianNoise(0) and SpatialDropout2D(0) are identities that draw nothing."""
    x = L.Input((6, 6, 2), name="x")
    h = L.RandomFlip(name="flip")(x)
    h = L.GaussianNoise(0.0, name="no_noise")(h)
    a = L.Conv2D(4, 3, padding="same", activation="relu", name="a")(h)
    b = L.SpatialDropout2D(0.0, name="no_drop")(L.Conv2D(4, 3, padding="same", name="b")(a))
    h = L.Add(name="add")([a, L.SpatialDropout2D(0.5, name="drop")(b)])
    h = L.GaussianNoise(0.3, name="noise")(h)
    return cf.Model(x, L.Dense(3, activation="softmax", name="out")(L.Flatten(name="f")(h)))


def crop_net() -> cf.Sequential:
    """RandomCrop on the data (a random window in training, a bilinear resize at inference),
    after a convolution with one axis already at the window's size (Keras' centred window),
    and at the input's own size (the identity at inference)."""
    return cf.Sequential([
        L.Input((11, 9, 3)),
        L.RandomCrop(8, 7),
        L.Conv2D(4, 3, padding="same", activation="relu"),
        L.RandomCrop(6, 7, seed=3),
        L.Conv2D(5, 3),
        L.RandomCrop(4, 5),
        L.Flatten(),
        L.Dense(3, activation="softmax"),
    ], name="crop_net")


def affine_net() -> cf.Sequential:
    """RandomTranslation and RandomRotation with every fill mode and both interpolations, on
    the data and inside the network."""
    return cf.Sequential([
        L.Input((7, 8, 2)),
        L.RandomTranslation(0.2, (-0.1, 0.3)),
        L.RandomRotation(0.1),
        L.Conv2D(4, 3, activation="relu"),
        L.RandomTranslation(0.3, 0.3, fill_mode="constant", fill_value=0.5,
                            interpolation="nearest", seed=4),
        L.RandomRotation((-0.2, 0.1), fill_mode="wrap"),
        L.RandomRotation(0.25, fill_mode="nearest", seed=2),
        L.Flatten(),
        L.Dense(3, activation="softmax"),
    ], name="affine_net")


# name -> (factory, input shape): every model here predicts with the C++ executor, trains with
# the C++ plan, saves and loads, exports to ONNX and runs through the C API.
MODELS = {
    "leaky_net": (leaky_net, (8, 8, 3)),
    "rescaling_net": (rescaling_net, (6, 6, 3)),
    "dilated_net": (dilated_net, (12, 12, 3)),
    "mobilenet_like": (mobilenet_like, (10, 10, 4)),
    "shared_separable_graph": (shared_separable_graph, (6, 6, 4)),
    "augment_net": (augment_net, (8, 7, 3)),
    "augment_net_seeded": (lambda: augment_net(seeded=True), (8, 7, 3)),
    "augment_graph": (augment_graph, (6, 6, 2)),
    "crop_net": (crop_net, (11, 9, 3)),
    "affine_net": (affine_net, (7, 8, 2)),
}
