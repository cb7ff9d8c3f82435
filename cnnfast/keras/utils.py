"""``keras.utils``: to_categorical, plot_model, set_random_seed."""

from __future__ import annotations

from cnnfast.keras._unsupported import unsupported
from cnnfast.random import set_seed as set_random_seed
from cnnfast.utils import plot_model, to_categorical

__getattr__ = unsupported(__name__, {
    "image_dataset_from_directory": "load arrays and use cnnfast.data.BatchIterator",
    "Sequence": "use cnnfast.data.BatchIterator", "PyDataset": "use cnnfast.data.BatchIterator",
    "normalize": "not implemented", "get_file": "use cnnfast.datasets loaders",
    "model_to_dot": "plot_model draws with matplotlib, not Graphviz",
})

__all__ = ["plot_model", "set_random_seed", "to_categorical"]
