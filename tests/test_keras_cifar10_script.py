"""A typical Keras CIFAR-10 script (examples/keras_cifar10_resnet.py: the keras.io ResNet-20 v1
example with BatchNormalization, the functional API, augmentation layers, ReduceLROnPlateau and
ModelCheckpoint) run through
cnnfast.keras for a few steps, on the real CIFAR-10 sample and on synthetic data."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest
from conftest import SHARED_DATASETS

import cnnfast as cf

SCRIPT = pathlib.Path(__file__).resolve().parents[1] / "examples" / "keras_cifar10_resnet.py"
SAMPLE = SHARED_DATASETS / "cifar10-sample" / "test_batch_first20.bin"


def load_script():
    spec = importlib.util.spec_from_file_location("keras_cifar10_resnet", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_run(result, save_dir) -> None:
    model = result["model"]
    assert result["finite"] and len(result["history"]["loss"]) == 2
    assert set(result["history"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert np.all(np.isfinite(result["scores"]))
    assert model._train_plan is not None  # the whole step in one C++ call
    # ResNet-20 v1: the Keras example's 274,442 parameters (the augmentation layers have none),
    # with its augmentation in the model and the learning rate on ReduceLROnPlateau's watch.
    assert model.count_params() == 274_442
    kinds = [type(layer).__name__ for layer in model.layers]
    assert kinds[1:3] == ["RandomFlip", "RandomTranslation"], kinds[:4]
    assert "learning_rate" in result["history"]  # ReduceLROnPlateau logs the rate
    # save_best_only on val_accuracy: the first epoch always saves; the file loads and predicts
    # as the model did when it was saved.
    assert result["checkpoints"] and result["checkpoints"][0].endswith("001.cnnfast")
    loaded = cf.load_model(pathlib.Path(save_dir) / result["checkpoints"][-1])
    assert loaded.count_params() == model.count_params()


def test_keras_cifar10_resnet_script_on_the_real_sample(tmp_path):
    if not SAMPLE.exists():
        pytest.skip(f"CIFAR-10 sample not found at {SAMPLE} (../shared/datasets/cifar10-sample)")
    cf.set_seed(0)
    script = load_script()
    result = script.main(["--sample", str(SAMPLE), "--epochs", "2", "--batch-size", "8",
                          "--save-dir", str(tmp_path)])
    check_run(result, tmp_path)


def test_keras_cifar10_resnet_script_on_synthetic_data(tmp_path):
    cf.set_seed(1)
    script = load_script()
    result = script.main(["--synthetic", "20", "--epochs", "2", "--batch-size", "8",
                          "--save-dir", str(tmp_path)])
    check_run(result, tmp_path)
