"""The Keras CIFAR-10 ResNet example (keras.io "cifar10_resnet", ResNet-20 v1), written against
``cnnfast.keras``: only the imports differ from a Keras script. Augmentation runs in the model
(RandomFlip, RandomTranslation: Keras 3's preprocessing layers, active in training only), the
learning rate drops on plateaus (ReduceLROnPlateau) and the best epoch is checkpointed.

Run: ``python examples/keras_cifar10_resnet.py [--sample PATH] [--synthetic N] [--epochs E]``.
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile

import numpy as np

from cnnfast import keras
from cnnfast.keras import layers


def resnet_layer(inputs, num_filters=16, kernel_size=3, strides=1, activation="relu",
                 batch_normalization=True):
    conv = layers.Conv2D(num_filters, kernel_size=kernel_size, strides=strides, padding="same",
                         kernel_initializer="he_normal",
                         kernel_regularizer=keras.regularizers.l2(1e-4))
    x = conv(inputs)
    if batch_normalization:
        x = layers.BatchNormalization()(x)
    if activation is not None:
        x = layers.Activation(activation)(x)
    return x


def resnet_v1(input_shape, depth, num_classes=10):
    if (depth - 2) % 6 != 0:
        raise ValueError("depth should be 6n+2 (eg 20, 32, 44 in [a])")
    num_filters = 16
    num_res_blocks = int((depth - 2) / 6)
    inputs = keras.Input(shape=input_shape)
    x = layers.RandomFlip("horizontal")(inputs)
    x = layers.RandomTranslation(0.1, 0.1)(x)
    x = resnet_layer(inputs=x)
    for stack in range(3):
        for res_block in range(num_res_blocks):
            strides = 1
            if stack > 0 and res_block == 0:
                strides = 2
            y = resnet_layer(inputs=x, num_filters=num_filters, strides=strides)
            y = resnet_layer(inputs=y, num_filters=num_filters, activation=None)
            if stack > 0 and res_block == 0:
                x = resnet_layer(inputs=x, num_filters=num_filters, kernel_size=1,
                                 strides=strides, activation=None, batch_normalization=False)
            x = layers.add([x, y])
            x = layers.Activation("relu")(x)
        num_filters *= 2
    x = layers.AveragePooling2D(pool_size=8)(x)
    y = layers.Flatten()(x)
    outputs = layers.Dense(num_classes, activation="softmax",
                           kernel_initializer="he_normal")(y)
    return keras.Model(inputs=inputs, outputs=outputs)


def load_data(sample: str | None, synthetic: int):
    """The CIFAR-10 binary batch at `sample` split 16/4, or `synthetic` random images."""
    if sample:
        from cnnfast.datasets.cifar import read_cifar10_batch

        x, y = read_cifar10_batch(sample)
        return (x[:16], y[:16, None]), (x[16:], y[16:, None])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (synthetic, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, (synthetic, 1))
    cut = synthetic * 4 // 5
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sample", help="a CIFAR-10 binary batch file")
    parser.add_argument("--synthetic", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--save-dir", default=os.path.join(tempfile.gettempdir(),
                                                           "saved_models"))
    args = parser.parse_args(argv)

    (x_train, y_train), (x_test, y_test) = load_data(args.sample, args.synthetic)
    input_shape = x_train.shape[1:]
    x_train = x_train.astype("float32") / 255
    x_test = x_test.astype("float32") / 255
    # subtract_pixel_mean, as the Keras example
    x_train_mean = np.mean(x_train, axis=0)
    x_train -= x_train_mean
    x_test -= x_train_mean
    y_train = keras.utils.to_categorical(y_train, 10)
    y_test = keras.utils.to_categorical(y_test, 10)

    model = resnet_v1(input_shape=input_shape, depth=20)
    model.compile(loss="categorical_crossentropy",
                  optimizer=keras.optimizers.Adam(learning_rate=1e-3), metrics=["accuracy"])
    model.summary(print_fn=lambda *a, **k: None)

    filepath = os.path.join(args.save_dir, "cifar10_ResNet20v1_model.{epoch:03d}.cnnfast")
    checkpoint = keras.callbacks.ModelCheckpoint(filepath=filepath, monitor="val_accuracy",
                                                 verbose=0, save_best_only=True)
    lr_reducer = keras.callbacks.ReduceLROnPlateau(factor=np.sqrt(0.1), cooldown=0, patience=5,
                                                   min_lr=0.5e-6)
    callbacks = [checkpoint, lr_reducer]
    history = model.fit(x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
                        validation_data=(x_test, y_test), shuffle=True, callbacks=callbacks,
                        verbose=0)
    scores = model.evaluate(x_test, y_test, verbose=0)
    return {"model": model, "history": history.history, "scores": scores,
            "checkpoints": sorted(os.listdir(args.save_dir)), "save_dir": args.save_dir,
            "finite": all(math.isfinite(v) for v in history.history["loss"])}


if __name__ == "__main__":
    result = main()
    print(f"Test loss: {result['scores'][0]:.4f}  Test accuracy: {result['scores'][1]:.4f}")
