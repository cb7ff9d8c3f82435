"""``keras.layers`` names (channels-last 2-D CNN layers)."""

from __future__ import annotations

from cnnfast.keras._unsupported import unsupported
from cnnfast.layers import (
    ELU,
    Activation,
    Add,
    Average,
    AveragePooling2D,
    Concatenate,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    Input,
    InputLayer,
    Layer,
    LeakyReLU,
    LocalResponseNormalization,
    Maximum,
    MaxPooling2D,
    Multiply,
    PReLU,
    ReLU,
    Rescaling,
    Softmax,
    Subtract,
    add,
    average,
    concatenate,
    maximum,
    multiply,
    subtract,
)

# Keras's aliases
Convolution2D = Conv2D
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D

_LATER = "not implemented yet"
__getattr__ = unsupported(__name__, {
    "BatchNormalization": "batch normalization is not implemented; the classic CNNs here "
                          "(LeNet-5, AlexNet with LocalResponseNormalization, VGG) do not use it",
    "LayerNormalization": _LATER, "GroupNormalization": _LATER, "UnitNormalization": _LATER,
    "Conv1D": "only 2-D convolutions", "Conv3D": "only 2-D convolutions",
    "Conv2DTranspose": _LATER, "SeparableConv2D": _LATER, "DepthwiseConv2D": _LATER,
    "GlobalAveragePooling2D": _LATER, "GlobalMaxPooling2D": _LATER,
    "GlobalAvgPool2D": _LATER, "GlobalMaxPool2D": _LATER,
    "MaxPooling1D": "only 2-D pooling", "AveragePooling1D": "only 2-D pooling",
    "MaxPooling3D": "only 2-D pooling", "AveragePooling3D": "only 2-D pooling",
    "ZeroPadding2D": "use Conv2D(padding=...) instead", "Cropping2D": _LATER,
    "UpSampling2D": _LATER, "Reshape": _LATER, "Permute": _LATER, "RepeatVector": _LATER,
    "Lambda": "layers are C++-backed classes; arbitrary Python functions are not supported",
    "SpatialDropout2D": _LATER, "GaussianNoise": _LATER,
    "GaussianDropout": _LATER, "AlphaDropout": _LATER, "ActivityRegularization": _LATER,
    "Embedding": "no sequence models", "SimpleRNN": "no recurrent layers",
    "LSTM": "no recurrent layers", "GRU": "no recurrent layers",
    "Bidirectional": "no recurrent layers", "TimeDistributed": "no recurrent layers",
    "Attention": "no attention layers", "MultiHeadAttention": "no attention layers",
    "Normalization": "normalize the arrays before fit",
    "RandomFlip": "use cnnfast.data.RandomFlip with fit(augment=...) or a BatchIterator",
    "RandomCrop": "use cnnfast.data.RandomCropWithPadding with fit(augment=...)",
    "RandomRotation": _LATER, "RandomZoom": _LATER, "RandomTranslation": _LATER,
    "RandomContrast": _LATER, "Resizing": _LATER,
})

__all__ = [
    "ELU",
    "Activation",
    "Add",
    "Average",
    "AveragePooling2D",
    "AvgPool2D",
    "Concatenate",
    "Conv2D",
    "Convolution2D",
    "Dense",
    "Dropout",
    "Flatten",
    "Input",
    "InputLayer",
    "Layer",
    "LeakyReLU",
    "LocalResponseNormalization",
    "MaxPool2D",
    "MaxPooling2D",
    "Maximum",
    "Multiply",
    "PReLU",
    "ReLU",
    "Rescaling",
    "Softmax",
    "Subtract",
    "add",
    "average",
    "concatenate",
    "maximum",
    "multiply",
    "subtract",
]
