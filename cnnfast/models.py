"""Model zoo: the classic CNNs as un-compiled Sequential models.

Every constructor takes ``input_shape`` (H, W, C) and ``classes`` and returns an un-compiled
:class:`~cnnfast.Sequential` whose weights are created on first use (``build()``, ``fit``,
``predict``, ``summary()``, ``count_params()``); :func:`cnnfast.analyze` never creates them, so
``analyze(vgg19())`` is instant. Shapes are checked when the model is constructed.

>>> import cnnfast as cf
>>> model = cf.models.vgg16(input_shape=(32, 32, 3), classes=10, fc_units=512)
>>> model.compile("sgd", "categorical_crossentropy", metrics=["accuracy"])
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from cnnfast import regularizers
from cnnfast.layers import (
    Activation,
    Add,
    AveragePooling2D,
    BatchNormalization,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Input,
    Layer,
    LocalResponseNormalization,
    MaxPooling2D,
    ReLU,
)
from cnnfast.model import Model, Sequential


def _shape(input_shape: Sequence[int], who: str) -> tuple[int, int, int]:
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3 or any(
            isinstance(s, bool) or not isinstance(s, int) or s <= 0 for s in input_shape):
        raise ValueError(f"{who}: input_shape must be (H, W, C) positive ints, got {input_shape!r}")
    return tuple(int(s) for s in input_shape)  # type: ignore[return-value]


def _classes(classes: int, who: str) -> int:
    if isinstance(classes, bool) or not isinstance(classes, int) or classes < 1:
        raise ValueError(f"{who}: classes must be a positive int, got {classes!r}")
    return classes


def _sequential(layers: list[Layer], input_shape: tuple[int, ...], name: str) -> Sequential:
    """A Sequential with a known input shape whose weights are not created yet.

    Passing an Input layer would build (allocate and initialise) every weight at once, 1.1 GB
    for VGG16 with its gradients, which the analyzer and the CLI never need. Setting the input
    shape after the layers leaves the model unbuilt; Sequential builds on first use.
    """
    model = Sequential(layers, name=name)
    model.input_shape_ = tuple(input_shape)
    try:
        model.shapes()  # every shape formula validates its input
    except ValueError as err:
        raise ValueError(f"{name}: input_shape {tuple(input_shape)} is too small: {err}") from None
    return model


def lenet5(input_shape: Sequence[int] = (32, 32, 1), classes: int = 10) -> Sequential:
    """LeNet-5 (LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document
    recognition", Proc. IEEE 1998).

    C1 conv 6@5x5 tanh -> S2 avg-pool 2 -> C3 conv 16@5x5 tanh -> S4 avg-pool 2 -> C5 conv
    120@5x5 tanh -> F6 dense 84 tanh -> output dense ``classes`` softmax. 61,706 parameters
    for 32x32x1 and 10 classes.

    Modernised as usual: C3 is fully connected to all six S2 maps (the paper used a sparse
    table, 1,516 weights instead of 2,416), the subsampling layers are plain averages (the paper
    gave each map a trainable coefficient and bias), tanh replaces 1.7159*tanh(2a/3), and a
    softmax replaces the RBF output units.

    An input smaller than 32x32 is zero-padded by C1 up to at least 32x32 (MNIST's 28x28 gets
    2 pixels on each side), which is how the paper fed 28x28 digits into its 32x32 input:
    identical to padding the images, without a copy.
    """
    who = "lenet5"
    shape = _shape(input_shape, who)
    padding: str | tuple[int, ...] = tuple(max(0, 32 - n + 1) // 2 for n in shape[:2])
    padding = "valid" if padding == (0, 0) else padding
    layers: list[Layer] = [
        Conv2D(6, 5, activation="tanh", padding=padding, name="c1"),
        AveragePooling2D(2, name="s2"),
        Conv2D(16, 5, activation="tanh", name="c3"),
        AveragePooling2D(2, name="s4"),
        Conv2D(120, 5, activation="tanh", name="c5"),
        Flatten(name="flatten"),
        Dense(84, activation="tanh", name="f6"),
        Dense(_classes(classes, who), activation="softmax", name="output"),
    ]
    return _sequential(layers, shape, who)


def keras_mnist_cnn(input_shape: Sequence[int] = (28, 28, 1), classes: int = 10) -> Sequential:
    """The small Keras-style MNIST convnet (the Keras/TensorFlow tutorials' pattern).

    Conv2D(64, 3, relu) -> MaxPool 2 -> Conv2D(64, 3, relu) -> MaxPool 2 -> Conv2D(64, 3, relu)
    -> Flatten -> Dropout(0.2) -> Dense(classes, softmax): three convolutions, two poolings.
    On 28x28x1: 26x26x64, 13x13x64, 11x11x64, 5x5x64, 3x3x64, 576, 10; 80,266 parameters.
    """
    who = "keras_mnist_cnn"
    shape = _shape(input_shape, who)
    layers: list[Layer] = [
        Conv2D(64, 3, activation="relu"),
        MaxPooling2D(2),
        Conv2D(64, 3, activation="relu"),
        MaxPooling2D(2),
        Conv2D(64, 3, activation="relu"),
        Flatten(),
        Dropout(0.2),
        Dense(_classes(classes, who), activation="softmax"),
    ]
    return _sequential(layers, shape, who)


def cifar10_simple(input_shape: Sequence[int] = (32, 32, 3), classes: int = 10) -> Sequential:
    """A minimal CIFAR-10 convnet (the one-convolution baseline of CS231n-style courses).

    Conv 12@3x3 "same" relu -> MaxPool 2 -> Flatten -> Dense(classes, softmax).
    On 32x32x3: 32x32x12, 16x16x12, 3072, 10; 31,066 parameters.
    """
    who = "cifar10_simple"
    shape = _shape(input_shape, who)
    layers: list[Layer] = [
        Conv2D(12, 3, padding="same", activation="relu"),
        MaxPooling2D(2),
        Flatten(),
        Dense(_classes(classes, who), activation="softmax"),
    ]
    return _sequential(layers, shape, who)


def alexnet(input_shape: Sequence[int] = (227, 227, 3), classes: int = 1000,
            grouped: bool = False, dropout: float = 0.5) -> Sequential:
    """AlexNet (Krizhevsky, Sutskever, Hinton, "ImageNet classification with deep convolutional
    neural networks", NIPS 2012).

    CONV1 96@11x11 stride 4 (227 -> 55) relu, LRN, max-pool 3 stride 2 (27); CONV2 256@5x5 pad
    2 relu, LRN, max-pool 3/2 (13); CONV3 384@3x3 pad 1, CONV4 384@3x3 pad 1, CONV5 256@3x3 pad
    1, all relu, max-pool 3/2 (6x6x256 = 9216); Dropout, FC 4096 relu, Dropout, FC 4096 relu,
    FC ``classes`` softmax. LRN is the paper's: depth_radius 2 (n = 5), k = 2, alpha = 1e-4,
    beta = 0.75 (TensorFlow's parametrisation; see LocalResponseNormalization).

    The input is 227x227 (the paper's "224" does not give 55x55 with an 11x11 stride-4 filter:
    (227 - 11)/4 + 1 = 55). ``grouped=False`` is the single-tower network (62,378,344
    parameters); ``grouped=True`` restores the paper's two-GPU connectivity with groups=2 on
    CONV2, CONV4 and CONV5 (CONV3 and the FC layers see both towers): 60,965,224 parameters.
    """
    who = "alexnet"
    shape = _shape(input_shape, who)
    g = 2 if grouped else 1

    def lrn(name: str) -> LocalResponseNormalization:
        return LocalResponseNormalization(depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75, name=name)

    layers: list[Layer] = [
        Conv2D(96, 11, strides=4, activation="relu", name="conv1"),
        lrn("lrn1"),
        MaxPooling2D(3, strides=2, name="pool1"),
        Conv2D(256, 5, padding=2, groups=g, activation="relu", name="conv2"),
        lrn("lrn2"),
        MaxPooling2D(3, strides=2, name="pool2"),
        Conv2D(384, 3, padding=1, activation="relu", name="conv3"),
        Conv2D(384, 3, padding=1, groups=g, activation="relu", name="conv4"),
        Conv2D(256, 3, padding=1, groups=g, activation="relu", name="conv5"),
        MaxPooling2D(3, strides=2, name="pool5"),
        Flatten(name="flatten"),
    ]
    if dropout:
        layers.append(Dropout(dropout, name="drop6"))
    layers.append(Dense(4096, activation="relu", name="fc6"))
    if dropout:
        layers.append(Dropout(dropout, name="drop7"))
    layers += [Dense(4096, activation="relu", name="fc7"),
               Dense(_classes(classes, who), activation="softmax", name="fc8")]
    return _sequential(layers, shape, "alexnet_grouped" if grouped else who)


_VGG_BLOCKS = {16: (2, 2, 3, 3, 3), 19: (2, 2, 4, 4, 4)}


def _vgg(depth: int, input_shape, classes, fc_units, dropout) -> Sequential:
    who = f"vgg{depth}"
    shape = _shape(input_shape, who)
    if isinstance(fc_units, bool) or not isinstance(fc_units, int) or fc_units < 1:
        raise ValueError(f"{who}: fc_units must be a positive int, got {fc_units!r}")
    layers: list[Layer] = []
    for block, (convs, filters) in enumerate(zip(_VGG_BLOCKS[depth], (64, 128, 256, 512, 512)), 1):
        for i in range(1, convs + 1):
            layers.append(Conv2D(filters, 3, padding="same", activation="relu",
                                 name=f"block{block}_conv{i}"))
        layers.append(MaxPooling2D(2, name=f"block{block}_pool"))
    layers.append(Flatten(name="flatten"))
    for i in (1, 2):
        layers.append(Dense(fc_units, activation="relu", name=f"fc{i}"))
        if dropout:
            layers.append(Dropout(dropout, name=f"fc{i}_dropout"))
    layers.append(Dense(_classes(classes, who), activation="softmax", name="predictions"))
    return _sequential(layers, shape, who)


def vgg16(input_shape: Sequence[int] = (224, 224, 3), classes: int = 1000,
          fc_units: int = 4096, dropout: float = 0.5) -> Sequential:
    """VGG16, configuration D of Simonyan and Zisserman, "Very deep convolutional networks for
    large-scale image recognition", ICLR 2015.

    Thirteen 3x3 "same" convolutions with relu in five blocks (64, 64 | 128, 128 | 256 x3 |
    512 x3 | 512 x3), each block ending in a 2x2 max-pool, then FC ``fc_units`` relu, FC
    ``fc_units`` relu and FC ``classes`` softmax, with dropout ``dropout`` after the first two
    FC layers as in the paper (``dropout=0`` gives exactly the layer list of
    ``keras.applications.VGG16``). Layer names follow Keras (block1_conv1, ..., fc1, fc2,
    predictions). 138,357,544 parameters at 224x224x3 with 1000 classes.

    Small inputs: the five pools divide H and W by 32, so 32x32x3 ends in 1x1x512 and the first
    FC layer has 512 inputs. The FC width stays 4096 unless ``fc_units`` is given;
    ``vgg16(input_shape=(32, 32, 3), classes=10, fc_units=512)`` is the common VGG16-CIFAR
    (FC 512-512-10, 15,245,130 parameters). Inputs below 32x32 leave no pixels for the last pool.
    """
    return _vgg(16, input_shape, classes, fc_units, dropout)


def vgg19(input_shape: Sequence[int] = (224, 224, 3), classes: int = 1000,
          fc_units: int = 4096, dropout: float = 0.5) -> Sequential:
    """VGG19, configuration E of Simonyan and Zisserman (ICLR 2015): as :func:`vgg16` with four
    convolutions in blocks 3, 4 and 5. 143,667,240 parameters at 224x224x3 with 1000 classes.
    """
    return _vgg(19, input_shape, classes, fc_units, dropout)


def resnet_cifar(input_shape: Sequence[int] = (32, 32, 3), classes: int = 10,
                 filters: int = 16) -> Model:
    """A small residual CNN for CIFAR-10, a graph made with the functional API: a 3x3 stem,
    two residual blocks (conv-relu-conv, then ``Add`` with the block's input and a relu;
    He et al., "Deep residual learning for image recognition", CVPR 2016, without batch
    normalization) with a 2x2 max-pool between them, an average pool over the whole map and a
    softmax layer. At 32x32x3, 16 filters and 10 classes: 9,898 parameters.

    Unlike the stacks, the graph is built (its weights created) when constructed.
    """
    who = "resnet_cifar"
    shape = _shape(input_shape, who)
    if isinstance(filters, bool) or not isinstance(filters, int) or filters < 1:
        raise ValueError(f"{who}: filters must be a positive int, got {filters!r}")
    if shape[0] < 2 or shape[1] < 2:
        raise ValueError(f"{who}: input_shape {shape} is too small for the 2x2 pool")
    x = Input(shape, name="input")
    h = Conv2D(filters, 3, padding="same", activation="relu", name="stem")(x)
    for block in (1, 2):
        r = Conv2D(filters, 3, padding="same", activation="relu", name=f"block{block}_conv1")(h)
        r = Conv2D(filters, 3, padding="same", name=f"block{block}_conv2")(r)
        h = ReLU(name=f"block{block}_relu")(Add(name=f"block{block}_add")([r, h]))
        if block == 1:
            h = MaxPooling2D(2, name="pool")(h)
    h = AveragePooling2D((shape[0] // 2, shape[1] // 2), name="global_pool")(h)
    y = Dense(_classes(classes, who), activation="softmax", name="predictions")(
        Flatten(name="flatten")(h))
    return Model(x, y, name=who)


# -- batch-normalized CIFAR-10 networks (issue 19) --------------------------------------------
def _resnet_v1_layer(x, filters: int, name: str, kernel_size: int = 3, strides: int = 1,
                     activation: str | None = "relu", batch_normalization: bool = True):
    """The Keras example's resnet_layer (conv_first): Conv2D, BatchNormalization, activation."""
    x = Conv2D(filters, kernel_size, strides=strides, padding="same",
               kernel_initializer="he_normal", kernel_regularizer=regularizers.L2(1e-4),
               name=f"{name}_conv")(x)
    if batch_normalization:
        x = BatchNormalization(name=f"{name}_bn")(x)
    if activation is not None:
        x = Activation(activation, name=f"{name}_{activation}")(x)
    return x


def resnet_v1(depth: int, input_shape: Sequence[int] = (32, 32, 3), classes: int = 10) -> Model:
    """ResNet v1 for CIFAR-10 (He, Zhang, Ren, Sun, "Deep residual learning for image
    recognition", CVPR 2016, Sec. 4.2), layer for layer the Keras example ``cifar10_resnet``'s
    ``resnet_v1``: a 3x3 Conv-BN-ReLU stem with 16 filters, then three stages of
    n = (depth - 2) / 6 residual blocks with 16, 32 and 64 filters (each block Conv-BN-ReLU,
    Conv-BN, ``Add`` with the shortcut, ReLU; the first block of stages 2 and 3 strides by 2
    and projects the shortcut with a 1x1 stride-2 convolution without batch normalization),
    ``AveragePooling2D(8)``, ``Flatten`` and a softmax ``Dense``. Convolutions are "same",
    he_normal initialized with an L2(1e-4) kernel penalty. ResNet-20 at 32x32x3 with 10 classes
    has 274,442 parameters (273,066 trainable; 1,376 batch-norm moving statistics), as Keras
    reports.
    """
    who = f"resnet{depth}"
    shape = _shape(input_shape, who)
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"{who}: depth must be 6n + 2 (20, 32, 44, 56, 110), got {depth!r}")
    # Two stride-2 "same" stages leave ceil(ceil(n / 2) / 2) rows for the final 8x8 pool.
    if min(math.ceil(math.ceil(n / 2) / 2) for n in shape[:2]) < 8:
        raise ValueError(f"{who}: input_shape {shape} is too small for the final 8x8 pool "
                         "after two stride-2 stages (needs at least 29x29; 32x32 is CIFAR)")
    blocks = (depth - 2) // 6
    inputs = Input(shape, name="input")
    x = _resnet_v1_layer(inputs, 16, "stem")
    filters = 16
    for stage in range(3):
        for block in range(blocks):
            name = f"stage{stage + 1}_block{block + 1}"
            strides = 2 if stage > 0 and block == 0 else 1
            y = _resnet_v1_layer(x, filters, f"{name}_1", strides=strides)
            y = _resnet_v1_layer(y, filters, f"{name}_2", activation=None)
            if strides == 2:
                x = _resnet_v1_layer(x, filters, f"{name}_shortcut", kernel_size=1, strides=2,
                                     activation=None, batch_normalization=False)
            x = Activation("relu", name=f"{name}_out")(Add(name=f"{name}_add")([x, y]))
        filters *= 2
    x = Flatten(name="flatten")(AveragePooling2D(8, name="pool")(x))
    outputs = Dense(_classes(classes, who), activation="softmax", kernel_initializer="he_normal",
                    name="predictions")(x)
    return Model(inputs, outputs, name=who)


def resnet20(input_shape: Sequence[int] = (32, 32, 3), classes: int = 10) -> Model:
    """ResNet-20 v1 for CIFAR-10 (:func:`resnet_v1` with depth 20): 274,442 parameters."""
    return resnet_v1(20, input_shape, classes)


def resnet32(input_shape: Sequence[int] = (32, 32, 3), classes: int = 10) -> Model:
    """ResNet-32 v1 for CIFAR-10 (:func:`resnet_v1` with depth 32)."""
    return resnet_v1(32, input_shape, classes)


def resnet56(input_shape: Sequence[int] = (32, 32, 3), classes: int = 10) -> Model:
    """ResNet-56 v1 for CIFAR-10 (:func:`resnet_v1` with depth 56)."""
    return resnet_v1(56, input_shape, classes)


def vgg_cifar_bn(input_shape: Sequence[int] = (32, 32, 3), classes: int = 10,
                 dropout: float = 0.3) -> Sequential:
    """A VGG-style CIFAR-10 network with batch normalization: three blocks of two 3x3 "same"
    Conv-BN-ReLU layers (32, 64, 128 filters), each ending in a 2x2 max-pool and ``dropout``,
    then Dense(128)-BN-ReLU, ``dropout`` and a softmax Dense (the VGG pattern of Simonyan and
    Zisserman with Ioffe and Szegedy's batch normalization after every layer, as in
    torchvision's ``vgg*_bn``). The convolutions are linear so the inference plan folds each
    batch normalization into the convolution before it. 552,874 parameters at 32x32x3 with
    10 classes.
    """
    who = "vgg_cifar_bn"
    shape = _shape(input_shape, who)
    if shape[0] < 8 or shape[1] < 8:
        raise ValueError(f"{who}: input_shape {shape} is too small for three 2x2 pools")
    layers: list[Layer] = []
    for block, filters in enumerate((32, 64, 128), 1):
        for i in (1, 2):
            layers += [Conv2D(filters, 3, padding="same", kernel_initializer="he_uniform",
                              name=f"block{block}_conv{i}"),
                       BatchNormalization(name=f"block{block}_bn{i}"),
                       ReLU(name=f"block{block}_relu{i}")]
        layers.append(MaxPooling2D(2, name=f"block{block}_pool"))
        if dropout:
            layers.append(Dropout(dropout, name=f"block{block}_dropout"))
    layers += [Flatten(name="flatten"), Dense(128, kernel_initializer="he_uniform", name="fc"),
               BatchNormalization(name="fc_bn"), ReLU(name="fc_relu")]
    if dropout:
        layers.append(Dropout(dropout, name="fc_dropout"))
    layers.append(Dense(_classes(classes, who), activation="softmax", name="predictions"))
    return _sequential(layers, shape, who)


def _alexnet_grouped(**kwargs) -> Sequential:
    return alexnet(grouped=True, **kwargs)


_ZOO: dict[str, Callable[..., Model]] = {
    "lenet5": lenet5,
    "keras_mnist_cnn": keras_mnist_cnn,
    "cifar10_simple": cifar10_simple,
    "alexnet": alexnet,
    "alexnet_grouped": _alexnet_grouped,
    "vgg16": vgg16,
    "vgg19": vgg19,
    "resnet_cifar": resnet_cifar,
    "resnet20": resnet20,
    "resnet32": resnet32,
    "resnet56": resnet56,
    "vgg_cifar_bn": vgg_cifar_bn,
}


def names() -> list[str]:
    """Names accepted by :func:`get`."""
    return sorted(_ZOO)


def get(name: str, **kwargs) -> Sequential:
    """A zoo model by name ("vgg16", "alexnet_grouped", ...); kwargs go to its constructor.

    Names are case-insensitive and "-" may stand for "_" ("keras-mnist-cnn").
    """
    if not isinstance(name, str):
        raise TypeError(f"models.get: name must be a string, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in _ZOO:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(names())}")
    return _ZOO[key](**kwargs)


__all__ = ["alexnet", "cifar10_simple", "get", "keras_mnist_cnn", "lenet5", "names",
           "resnet20", "resnet32", "resnet56", "resnet_cifar", "resnet_v1", "vgg16", "vgg19",
           "vgg_cifar_bn"]
