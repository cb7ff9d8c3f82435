"""cnnfast.keras: a Keras CNN script runs with only its imports changed; utilities and plots."""

import gzip
import importlib
import struct
import sys

import numpy as np
import pytest

import cnnfast as cf

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_fake_mnist(root, n_train=320, n_test=80, seed=0):
    """MNIST-like IDX files: each class a bright square at its own position, plus noise."""
    rng = np.random.default_rng(seed)
    d = root / "mnist"
    d.mkdir(parents=True)

    def make(n):
        y = rng.integers(0, 10, n).astype(np.uint8)
        x = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, label in enumerate(y):
            r, c = divmod(int(label), 5)
            x[i, 4 + 10 * r:12 + 10 * r, 1 + 5 * c:6 + 5 * c] = 255
        return x, y

    for (xname, yname), (x, y) in zip(
            [("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
             ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")], [make(n_train), make(n_test)]):
        for name, arr in ((xname, x), (yname, y)):
            header = struct.pack(">HBB", 0, 8, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
            (d / name).write_bytes(gzip.compress(header + arr.tobytes()))


@pytest.fixture
def fake_data(tmp_path, monkeypatch):
    write_fake_mnist(tmp_path / "data")
    monkeypatch.setenv("CNNFAST_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("CNNFAST_OFFLINE", "1")
    return tmp_path


# The body of a typical Keras CNN tutorial script; only the import lines differ from Keras.
KERAS_SCRIPT = '''
import numpy as np
from cnnfast.keras.datasets import mnist
from cnnfast.keras.models import Sequential
from cnnfast.keras.layers import Dense, Dropout, Flatten, Conv2D, MaxPooling2D
from cnnfast.keras.utils import to_categorical
from cnnfast.keras import backend as K

batch_size = 32
num_classes = 10
epochs = 1
img_rows, img_cols = 28, 28

(x_train, y_train), (x_test, y_test) = mnist.load_data()
if K.image_data_format() == "channels_first":
    raise SystemExit("not reached")
x_train = x_train.reshape(x_train.shape[0], img_rows, img_cols, 1)
x_test = x_test.reshape(x_test.shape[0], img_rows, img_cols, 1)
input_shape = (img_rows, img_cols, 1)
x_train = x_train.astype("float32") / 255
x_test = x_test.astype("float32") / 255
y_train = to_categorical(y_train, num_classes)
y_test = to_categorical(y_test, num_classes)

model = Sequential()
model.add(Conv2D(8, kernel_size=(3, 3), activation="relu", input_shape=input_shape))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Conv2D(8, (3, 3), activation="relu"))
model.add(MaxPooling2D(pool_size=(2, 2)))
model.add(Dropout(0.25))
model.add(Flatten())
model.add(Dense(32, activation="relu"))
model.add(Dropout(0.5))
model.add(Dense(num_classes, activation="softmax"))
model.summary(print_fn=lines.append)

model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
history = model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, verbose=0,
                    validation_data=(x_test, y_test))
score = model.evaluate(x_test, y_test, verbose=0)
'''


def test_keras_script_runs_with_changed_imports(fake_data):
    cf.set_seed(0)
    namespace = {"lines": []}
    exec(compile(KERAS_SCRIPT, "keras_script.py", "exec"), namespace)  # noqa: S102 (the point)
    score, history = namespace["score"], namespace["history"]
    assert isinstance(score, list) and len(score) == 2  # [loss, accuracy]
    assert np.isfinite(score[0]) and 0.0 <= score[1] <= 1.0
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    text = "\n".join(namespace["lines"])
    for column in ("Layer (type)", "Output Shape", "Param #", "Total params", "Trainable params"):
        assert column in text
    assert namespace["model"].count_params() == 8 * 9 + 8 + 8 * 9 * 8 + 8 + 200 * 32 + 32 + 330


def test_keras_io_style_with_input_and_namespaces(fake_data):
    from cnnfast import keras
    from cnnfast.keras import layers

    cf.set_seed(1)
    (x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()
    x_train = np.expand_dims(x_train.astype("float32") / 255, -1)
    x_test = np.expand_dims(x_test.astype("float32") / 255, -1)
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(8, kernel_size=(3, 3), activation="relu"),
        layers.AveragePooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Activation("linear"),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(loss=keras.losses.SparseCategoricalCrossentropy(),
                  optimizer=keras.optimizers.Adam(learning_rate=3e-3), metrics=["accuracy"])
    model.fit(x_train, y_train, batch_size=32, epochs=3, verbose=0,
              callbacks=[keras.callbacks.EarlyStopping(monitor="loss", patience=1)])
    loss, acc = model.evaluate(x_test, y_test, verbose=0)
    # Classes are bright squares at ten positions: a linear read-out finds them in 3 epochs
    # (about 0.9 here); 0.5 is far above chance (0.1) and far below what a working fit reaches.
    assert acc > 0.5, (loss, acc)
    assert keras.layers.MaxPool2D is keras.layers.MaxPooling2D
    assert keras.regularizers.l2 is cf.regularizers.L2
    assert keras.models.load_model is keras.load_model is cf.load_model  # cnnfast model files


@pytest.mark.parametrize("labels, num_classes, expected_shape", [
    ([0, 2, 1], None, (3, 3)),
    ([[0], [2], [1]], None, (3, 3)),  # CIFAR-10's (N, 1) labels
    (np.array([1, 0], np.uint8), 4, (2, 4)),
    ([[0, 1], [1, 2]], 3, (2, 2, 3)),
    ([1.0, 0.0], None, (2, 2)),
])
def test_to_categorical(labels, num_classes, expected_shape):
    from cnnfast.keras.utils import to_categorical

    out = to_categorical(labels, num_classes)
    assert out.dtype == np.float32 and out.shape == expected_shape
    flat = np.asarray(labels).reshape(-1).astype(int)
    np.testing.assert_array_equal(out.reshape(-1, expected_shape[-1]).argmax(1), flat)
    np.testing.assert_array_equal(out.sum(-1), 1.0)


def test_to_categorical_rejects_bad_labels():
    from cnnfast.keras.utils import to_categorical

    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        to_categorical([0, 3], 3)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        to_categorical([-1, 2], 3)
    with pytest.raises(ValueError, match="whole numbers"):
        to_categorical([0.5, 1.0])


def keras_model():
    from cnnfast import keras
    from cnnfast.keras import layers

    return keras.Sequential([keras.Input(shape=(12, 12, 1)), layers.Conv2D(4, 3, activation="relu"),
                             layers.MaxPooling2D(2), layers.Flatten(),
                             layers.Dense(3, activation="softmax")])


def test_plot_model_writes_a_png(tmp_path):
    image = pytest.importorskip("matplotlib.image", reason="matplotlib is not installed (extra 'plot')")
    from cnnfast.keras.utils import plot_model

    for rankdir in ("TB", "LR"):
        path = tmp_path / f"model_{rankdir}.png"
        assert plot_model(keras_model(), to_file=str(path), show_shapes=True, rankdir=rankdir,
                          dpi=60) is None
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        pixels = image.imread(path)
        assert pixels.ndim == 3 and pixels.shape[0] > 50 and pixels.shape[1] > 50
        assert pixels.std() > 0.01  # something is drawn
    tall, wide = image.imread(tmp_path / "model_TB.png"), image.imread(tmp_path / "model_LR.png")
    assert tall.shape[0] > tall.shape[1] and wide.shape[1] > wide.shape[0]


def test_history_plot_writes_a_png(tmp_path):
    image = pytest.importorskip("matplotlib.image", reason="matplotlib is not installed (extra 'plot')")
    history = cf.callbacks.History()
    history.on_train_begin()
    for epoch, logs in enumerate([{"loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.4},
                                  {"loss": 0.6, "accuracy": 0.7, "val_loss": 0.8, "val_accuracy": 0.6}]):
        history.on_epoch_end(epoch, logs)
    fig = history.plot(str(tmp_path / "curves.png"))
    assert len(fig.axes) == 2
    assert (tmp_path / "curves.png").read_bytes()[:8] == PNG_SIGNATURE
    assert image.imread(tmp_path / "curves.png").shape[1] > 300
    with pytest.raises(ValueError, match="recorded"):
        history.plot(metrics=("auc",))


def test_plotting_without_matplotlib_says_how_to_install(monkeypatch, tmp_path):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)  # makes "import name" fail
    from cnnfast.keras.utils import plot_model

    with pytest.raises(ImportError, match=r"cnnfast\[plot\]"):
        plot_model(keras_model(), to_file=str(tmp_path / "m.png"))
    with pytest.raises(ImportError, match="History.plot needs matplotlib"):
        history = cf.callbacks.History()
        history.history = {"loss": [1.0]}
        history.epoch = [0]
        history.plot()


@pytest.mark.parametrize("module, name", [
    ("cnnfast.keras.models", "clone_model"),
    ("cnnfast.keras.layers", "LayerNormalization"),
    ("cnnfast.keras.layers", "LSTM"),
    ("cnnfast.keras.layers", "Conv2DTranspose"),
    ("cnnfast.keras.optimizers", "Ftrl"),
    ("cnnfast.keras.losses", "BinaryFocalCrossentropy"),
    ("cnnfast.keras.callbacks", "TensorBoard"),
    ("cnnfast.keras.datasets", "cifar100"),
])
def test_unsupported_keras_names_raise_not_implemented(module, name):
    mod = importlib.import_module(module)
    with pytest.raises(NotImplementedError, match=name):
        getattr(mod, name)
    with pytest.raises(NotImplementedError, match=name):
        exec(f"from {module} import {name}", {})  # noqa: S102 (import statement)


def test_unsupported_options_and_unknown_names():
    from cnnfast import keras
    from cnnfast.keras import layers

    with pytest.raises(NotImplementedError, match="channels_first"):
        layers.Conv2D(8, 3, data_format="channels_first")
    with pytest.raises(NotImplementedError, match="channels_first"):
        layers.MaxPooling2D(2, data_format="channels_first")
    with pytest.raises(NotImplementedError, match="channels_first"):
        keras.backend.set_image_data_format("channels_first")
    assert keras.backend.image_data_format() == "channels_last"
    model = keras_model()
    model.compile(optimizer="rmsprop", loss="categorical_crossentropy")
    assert type(model.optimizer).__name__ == "RMSprop"
    assert not hasattr(layers, "NoSuchLayer")  # unknown names stay AttributeErrors
    with pytest.raises(ImportError):
        exec("from cnnfast.keras.layers import NoSuchLayer", {})  # noqa: S102


def test_keras_datasets_are_the_cnnfast_loaders():
    from cnnfast import datasets
    from cnnfast.keras.datasets import cifar10, fashion_mnist, mnist

    assert mnist.load_data is datasets.mnist.load_data
    assert fashion_mnist.load_data is datasets.fashion_mnist.load_data
    assert cifar10.load_data is datasets.cifar10.load_data
