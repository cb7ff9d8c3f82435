"""``keras.callbacks``: the training callbacks of cnnfast.callbacks under their Keras names."""

from __future__ import annotations

from cnnfast.callbacks import (
    BackupAndRestore,
    Callback,
    CSVLogger,
    EarlyStopping,
    History,
    LambdaCallback,
    LearningRateScheduler,
    ModelCheckpoint,
    ReduceLROnPlateau,
    TerminateOnNaN,
)
from cnnfast.keras._unsupported import unsupported

__getattr__ = unsupported(__name__, {
    "TensorBoard": "not implemented; use History.plot()",
    "ProgbarLogger": "fit prints its own progress bar",
    "RemoteMonitor": "not implemented", "SwapEMAWeights": "not implemented",
})

__all__ = ["BackupAndRestore", "CSVLogger", "Callback", "EarlyStopping", "History",
           "LambdaCallback", "LearningRateScheduler", "ModelCheckpoint", "ReduceLROnPlateau",
           "TerminateOnNaN"]
