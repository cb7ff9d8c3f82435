"""cnnfast.images: Netpbm reading, model-input conversion, bilinear resize, the Pillow extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from cnnfast import images


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def test_binary_pgm_round_trip(tmp_path, rng):
    img = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    images.write_pgm(tmp_path / "a.pgm", img)
    np.testing.assert_array_equal(images.read_image(tmp_path / "a.pgm"), img[:, :, None])


def test_ascii_and_16_bit_netpbm_with_comments(tmp_path):
    (tmp_path / "a.pgm").write_bytes(b"P2\n# a comment\n3 2\n# another\n15\n0 15 5\n10 0 15\n")
    np.testing.assert_array_equal(images.read_image(tmp_path / "a.pgm")[:, :, 0],
                                  [[0, 255, 85], [170, 0, 255]])  # rescaled from maxval 15
    (tmp_path / "c.ppm").write_bytes(b"P3 2 1 255 255 0 0  0 0 255")
    np.testing.assert_array_equal(images.read_image(tmp_path / "c.ppm"),
                                  [[[255, 0, 0], [0, 0, 255]]])
    wide = np.array([[0, 65535], [32768, 257]], ">u2")
    (tmp_path / "w.pgm").write_bytes(b"P5 2 2 65535\n" + wide.tobytes())
    np.testing.assert_array_equal(images.read_image(tmp_path / "w.pgm")[:, :, 0],
                                  [[0, 255], [128, 1]])


@pytest.mark.parametrize("data, needle", [
    (b"P5\n4 4\n255\n" + b"\x00" * 3, "bytes of pixel data"),
    (b"P5\n4", "header"),
    (b"P2\n2 1\n10\n3 11\n", "exceeds maxval"),
    (b"P2\n2 1\n10\n3 x\n", "non-numeric"),
    (b"P7\n", "not a PGM/PPM"),
])
def test_bad_netpbm_raises_image_error(tmp_path, data, needle):
    (tmp_path / "bad.pgm").write_bytes(data)
    with pytest.raises(images.ImageError, match=needle):
        images.read_image(tmp_path / "bad.pgm")


def test_png_without_pillow_names_the_extra(tmp_path, monkeypatch):
    (tmp_path / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now raises ImportError
    with pytest.raises(images.ImageError, match=r"needs Pillow: pip install 'cnnfast\[image\]'"):
        images.read_image(tmp_path / "x.png")


def test_png_and_jpeg_through_pillow(tmp_path, rng):
    pil = pytest.importorskip("PIL.Image", reason="Pillow (the image extra) is not installed")
    img = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    pil.fromarray(img).save(tmp_path / "c.png")
    np.testing.assert_array_equal(images.read_image(tmp_path / "c.png"), img)
    pil.fromarray(img[:, :, 0]).save(tmp_path / "g.png")
    np.testing.assert_array_equal(images.read_image(tmp_path / "g.png"), img[:, :, :1])
    pil.fromarray(img).save(tmp_path / "c.jpg")
    assert images.read_image(tmp_path / "c.jpg").shape == (6, 5, 3)
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(images.ImageError, match="not a readable image"):
        images.read_image(tmp_path / "junk.png")


def test_to_model_input_converts_channels(rng):
    rgb = rng.integers(0, 256, (4, 4, 3)).astype(np.uint8)
    gray = images.to_model_input(rgb, (4, 4, 1))
    np.testing.assert_allclose(gray[:, :, 0], rgb @ np.array([0.299, 0.587, 0.114]))
    three = images.to_model_input(rgb[:, :, :1], (4, 4, 3))
    np.testing.assert_array_equal(three, np.repeat(rgb[:, :, :1], 3, axis=2))
    rgba = np.concatenate([rgb, np.full((4, 4, 1), 9, np.uint8)], axis=2)
    np.testing.assert_array_equal(images.to_model_input(rgba, (4, 4, 3)), rgb)
    with pytest.raises(images.ImageError, match=r"image is 4x4x3, the model takes 5x5x3"):
        images.to_model_input(rgb, (5, 5, 3))
    with pytest.raises(images.ImageError, match="2 channels"):
        images.to_model_input(rgb[:, :, :2], (4, 4, 3))


@pytest.mark.parametrize("size_in, size_out", [((7, 9), (28, 28)), ((32, 30), (28, 28)),
                                               ((5, 5), (5, 5)), ((4, 6), (13, 3))])
def test_resize_matches_torch_bilinear(rng, size_in, size_out):
    torch = pytest.importorskip("torch", reason="PyTorch is the reference (test extra)")
    img = rng.random((*size_in, 2))
    ours = images.to_model_input(img, (*size_out, 2), resize_to_fit=True)
    ref = torch.nn.functional.interpolate(torch.from_numpy(img).permute(2, 0, 1)[None],
                                          size=size_out, mode="bilinear", align_corners=False)
    # float64 on both sides; only the order of two-term sums differs.
    np.testing.assert_allclose(ours, ref[0].permute(1, 2, 0).numpy(), rtol=1e-12, atol=1e-12)
