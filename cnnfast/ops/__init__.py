"""Every kernel as a NumPy-in / NumPy-out function with an explicit backward.

Layouts follow Keras: activations NHWC, conv kernels (KH, KW, C_in, C_out), dense kernels
(in, out). Inputs are converted to float32; outputs are new arrays.
"""

from cnnfast.ops.activation import (
    elu,
    elu_backward,
    leaky_relu,
    leaky_relu_backward,
    linear,
    linear_backward,
    prelu,
    prelu_backward,
    relu,
    relu_backward,
    sigmoid,
    sigmoid_backward,
    softmax,
    softmax_backward,
    swish,
    swish_backward,
    tanh,
    tanh_backward,
)
from cnnfast.ops.conv import conv2d, conv2d_backward
from cnnfast.ops.fc import dense, dense_backward
from cnnfast.ops.loss import (
    categorical_crossentropy,
    mse,
    softmax_cross_entropy,
    sparse_categorical_crossentropy,
    sparse_softmax_cross_entropy,
)
from cnnfast.ops.merge import concatenate, concatenate_backward, merge, merge_backward
from cnnfast.ops.noise import dropout, dropout_backward
from cnnfast.ops.norm import lrn, lrn_backward
from cnnfast.ops.optim import adam_update, optimizer_update, sgd_update
from cnnfast.ops.pool import avg_pool2d, avg_pool2d_backward, max_pool2d, max_pool2d_backward

__all__ = [
    "adam_update", "avg_pool2d", "avg_pool2d_backward", "categorical_crossentropy",
    "concatenate", "concatenate_backward", "conv2d", "conv2d_backward", "dense", "dense_backward", "dropout", "dropout_backward", "elu",
    "elu_backward", "leaky_relu", "leaky_relu_backward", "linear", "linear_backward", "lrn",
    "lrn_backward", "max_pool2d", "max_pool2d_backward", "merge", "merge_backward", "mse",
    "optimizer_update", "prelu", "prelu_backward", "relu", "relu_backward", "sgd_update",
    "sigmoid", "sigmoid_backward", "softmax", "softmax_backward", "softmax_cross_entropy",
    "sparse_categorical_crossentropy", "sparse_softmax_cross_entropy", "swish", "swish_backward",
    "tanh", "tanh_backward",
]
