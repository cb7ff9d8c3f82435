"""``keras.initializers``: the classes and lower-case names of cnnfast.initializers."""

from __future__ import annotations

from cnnfast.initializers import (
    Constant,
    GlorotNormal,
    GlorotUniform,
    HeNormal,
    HeUniform,
    LecunNormal,
    LecunUniform,
    Ones,
    Orthogonal,
    RandomNormal,
    RandomUniform,
    TruncatedNormal,
    VarianceScaling,
    Zeros,
    get,
    glorot_normal,
    glorot_uniform,
    he_normal,
    he_uniform,
    lecun_normal,
    lecun_uniform,
    ones,
    orthogonal,
    serialize,
    zeros,
)

__all__ = [
    "Constant", "GlorotNormal", "GlorotUniform", "HeNormal", "HeUniform", "LecunNormal",
    "LecunUniform", "Ones", "Orthogonal", "RandomNormal", "RandomUniform", "TruncatedNormal",
    "VarianceScaling", "Zeros", "get", "glorot_normal", "glorot_uniform", "he_normal",
    "he_uniform", "lecun_normal", "lecun_uniform", "ones", "orthogonal", "serialize", "zeros",
]
