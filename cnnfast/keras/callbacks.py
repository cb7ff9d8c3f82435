"""``keras.callbacks``: Callback, History, EarlyStopping, ModelCheckpoint, LambdaCallback."""

from __future__ import annotations

from cnnfast.callbacks import Callback, EarlyStopping, History, LambdaCallback, ModelCheckpoint
from cnnfast.keras._unsupported import unsupported

__getattr__ = unsupported(__name__, {
    "TensorBoard": "not implemented; use History.plot()",
    "ReduceLROnPlateau": "not implemented; change model.optimizer.learning_rate in a callback",
    "LearningRateScheduler": "not implemented; change model.optimizer.learning_rate in a callback",
    "CSVLogger": "not implemented", "ProgbarLogger": "fit prints its own progress bar",
    "RemoteMonitor": "not implemented", "TerminateOnNaN": "fit always stops on a non-finite loss",
    "BackupAndRestore": "not implemented", "SwapEMAWeights": "not implemented",
})

__all__ = ["Callback", "EarlyStopping", "History", "LambdaCallback", "ModelCheckpoint"]
