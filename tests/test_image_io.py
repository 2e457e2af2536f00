from __future__ import annotations

import io
import time

import numpy as np
import pytest
from PIL import Image

from msma.image_io import ImageLoadError, load_image, load_image_with_scale


def _gradient(w: int = 64, h: int = 48) -> np.ndarray:
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None, None]
    img = np.concatenate([np.broadcast_to(x, (h, w, 1)), np.broadcast_to(y, (h, w, 1)), np.full((h, w, 1), 128)], 2)
    return img.astype(np.uint8)


def test_rgb_png_roundtrip(tmp_path):
    arr = _gradient()
    path = tmp_path / "a.png"
    Image.fromarray(arr).save(path)
    out = load_image(path)
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    np.testing.assert_array_equal(out, arr)
    np.testing.assert_array_equal(load_image(str(path)), arr)
    np.testing.assert_array_equal(load_image(path.read_bytes()), arr)
    np.testing.assert_array_equal(load_image(Image.fromarray(arr)), arr)
    np.testing.assert_array_equal(load_image(arr), arr)


def test_grayscale(tmp_path):
    gray = _gradient()[..., 0]
    path = tmp_path / "g.png"
    Image.fromarray(gray, mode="L").save(path)
    out = load_image(path)
    assert out.shape == (48, 64, 3)
    np.testing.assert_array_equal(out[..., 0], gray)
    np.testing.assert_array_equal(out[..., 2], gray)
    assert load_image(gray).shape == (48, 64, 3)


def test_rgba_composited_on_white(tmp_path):
    rgba = np.zeros((40, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:20, :, 3] = 255  # top half opaque red, bottom half transparent
    path = tmp_path / "a.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    out = load_image(path)
    assert out.shape == (40, 40, 3)
    np.testing.assert_array_equal(out[0, 0], [200, 0, 0])
    np.testing.assert_array_equal(out[-1, -1], [255, 255, 255])
    np.testing.assert_array_equal(load_image(rgba), out)


def test_palette_and_16bit(tmp_path):
    arr = _gradient()
    pal = Image.fromarray(arr).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    pal.save(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape == (48, 64, 3)
    g16 = (np.linspace(0, 65535, 64 * 48).reshape(48, 64)).astype(np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    out = load_image(tmp_path / "g16.png")
    assert out.dtype == np.uint8 and out.shape == (48, 64, 3)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert load_image(g16)[-1, -1, 0] == 255


def test_exif_rotation(tmp_path):
    arr = np.zeros((40, 80, 3), np.uint8)  # landscape as stored
    arr[:, :40] = 255  # left half white
    im = Image.fromarray(arr)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW for display
    path = tmp_path / "r.jpg"
    im.save(path, exif=exif, quality=95)
    loaded = load_image_with_scale(path)
    out = loaded.image
    assert out.shape == (80, 40, 3)  # portrait after transposition
    assert out[:30].mean() > 200 and out[-30:].mean() < 50  # the white half is now on top
    assert loaded.original_size == (40, 80) and loaded.scale == 1.0


def test_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    out = load_image(path)
    assert out.shape == (40, 40, 3)
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 50


def test_tiny_image_refused(tmp_path):
    Image.new("RGB", (1, 1)).save(tmp_path / "one.png")
    with pytest.raises(ImageLoadError, match="at least 32 px"):
        load_image(tmp_path / "one.png")
    with pytest.raises(ImageLoadError, match="at least 32 px"):
        load_image(np.zeros((31, 100, 3), np.uint8))


def test_corrupt_and_non_image(tmp_path):
    bad = tmp_path / "corrupt.jpg"
    good = io.BytesIO()
    Image.fromarray(_gradient()).save(good, format="JPEG")
    bad.write_bytes(good.getvalue()[:200])  # truncated JPEG
    with pytest.raises(ImageLoadError, match="corrupt.jpg"):
        load_image(bad)
    text = tmp_path / "notes.txt"
    text.write_text("this is not an image\n")
    with pytest.raises(ImageLoadError, match="notes.txt"):
        load_image(text)
    with pytest.raises(ImageLoadError):
        load_image(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(ImageLoadError):
        load_image(b"")
    with pytest.raises(ImageLoadError, match="not found"):
        load_image(tmp_path / "missing.png")
    assert issubclass(ImageLoadError, ValueError)


def test_huge_jpeg_downscaled_fast(tmp_path):
    # A 12000x12000 mostly-flat JPEG encodes to a small file; decoding it at full size would need 432 MB.
    w = h = 12000
    im = Image.new("L", (w, h), 90)
    im.paste(200, (0, 0, 6000, 6000))  # top-left quadrant brighter so geometry is checkable
    path = tmp_path / "huge.jpg"
    im.save(path, quality=50)
    del im
    t0 = time.perf_counter()
    loaded = load_image_with_scale(path, max_side=1024)
    elapsed = time.perf_counter() - t0
    assert loaded.image.shape == (1024, 1024, 3)
    assert loaded.original_size == (12000, 12000)
    assert loaded.scale == pytest.approx(1024 / 12000)
    assert loaded.image[100, 100, 0] > 180 and loaded.image[900, 900, 0] < 110
    assert elapsed < 5.0
    back = loaded.to_original(np.array([[511.5, 511.5]]))
    np.testing.assert_allclose(back, [[5999.5, 5999.5]])
    np.testing.assert_allclose(loaded.from_original(back), [[511.5, 511.5]])


def test_decompression_bomb_refused(tmp_path):
    # A PNG header announcing 50000x50000 pixels: must be refused with a clear message, not decoded.
    buf = io.BytesIO()
    Image.new("L", (64, 64)).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", 50000, 50000, 8, 0, 0, 0, 0)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    with pytest.raises(ImageLoadError, match="large"):
        load_image(bytes(data))


def test_max_side_for_arrays():
    arr = np.zeros((100, 5000, 3), np.uint8)
    out = load_image_with_scale(arr, max_side=2500)
    assert out.image.shape == (50, 2500, 3)
    assert out.scale == pytest.approx(0.5)
