"""Image I/O: every mode round-trips, bad files fail in one clear line, writes are safe."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

import upstep.io as uio


def _img(mode, size=(12, 9), seed=0):
    rng = np.random.default_rng(seed)
    if mode in ("RGB", "RGBA", "CMYK"):
        arr = rng.integers(0, 256, (size[1], size[0], len(mode)), dtype=np.uint8)
        return Image.fromarray(arr, mode)
    if mode == "LA":
        return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 2), dtype=np.uint8), "LA")
    if mode == "L":
        return Image.fromarray(rng.integers(0, 256, (size[1], size[0]), dtype=np.uint8), "L")
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (size[1], size[0]), dtype=np.uint16))
    if mode == "P":
        return _img("RGB", size, seed).quantize(16)
    if mode == "1":
        return _img("L", size, seed).convert("1")
    raise ValueError(mode)


def _roundtrip(tmp_path, im, name):
    src = tmp_path / name
    im.save(src)
    loaded = uio.read_image(src)
    rgb = uio.to_model_rgb(loaded)
    assert rgb.shape[0] == 3
    out = uio.from_model_rgb(rgb, loaded, loaded.alpha)
    dst = uio.write_image(out, tmp_path / ("out_" + name))
    return loaded, Image.open(dst)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "LA", "P", "1"])
def test_8bit_modes_round_trip_exactly(tmp_path, mode):
    im = _img(mode)
    loaded, back = _roundtrip(tmp_path, im, f"x_{mode}.png")
    ref = im.convert({"P": "RGB", "1": "L"}.get(mode, mode))
    assert back.mode == ref.mode
    assert np.array_equal(np.asarray(back), np.asarray(ref))
    assert loaded.is_gray == (mode in ("L", "LA", "1"))


def test_16bit_gray_stays_16bit(tmp_path):
    im = _img("I;16")
    loaded, back = _roundtrip(tmp_path, im, "x16.png")
    assert loaded.bit_depth == 16 and loaded.rgb.shape[0] == 1
    diff = np.abs(np.asarray(back).astype(np.int64) - np.asarray(im).astype(np.int64))
    assert diff.max() <= 1


def test_cmyk_tiff_and_gif_first_frame(tmp_path):
    _img("CMYK").save(tmp_path / "c.tif")
    assert uio.read_image(tmp_path / "c.tif").rgb.shape == (3, 9, 12)
    frames = [_img("RGB", seed=i).quantize(16) for i in range(3)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    got = uio.read_image(tmp_path / "a.gif")
    expect = np.asarray(frames[0].convert("RGB")).astype(np.float32) / 255
    assert np.allclose(got.rgb.permute(1, 2, 0).numpy(), expect)


def test_exif_orientation_is_applied(tmp_path):
    im = _img("RGB", size=(20, 10))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    im.save(tmp_path / "r.jpg", exif=exif)
    assert uio.read_image(tmp_path / "r.jpg").size == (10, 20)


@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "tif", "bmp"])  # GIF: test_cmyk_tiff_and_gif_first_frame
def test_every_format_the_issue_names_is_read_and_written(tmp_path, ext):
    im = _img("RGB", size=(24, 18))
    loaded, back = _roundtrip(tmp_path, im, f"x.{ext}")
    assert loaded.size == (24, 18) and back.size == (24, 18)
    if ext in ("png", "tif", "bmp"):  # lossless formats come back exactly
        assert np.array_equal(np.asarray(back.convert("RGB")), np.asarray(im))


def test_bad_files_give_one_line_errors_naming_the_file(tmp_path):
    good = tmp_path / "good.png"
    _img("RGB", size=(64, 64)).save(good)
    data = good.read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    _img("RGB", size=(64, 64)).save(tmp_path / "j.jpg")
    jd = (tmp_path / "j.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(jd[: len(jd) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello, not an image")
    _img("RGB", size=(1, 1)).save(tmp_path / "tiny.png")
    cases = {"trunc.png": "truncated", "trunc.jpg": "truncated", "empty.png": "empty",
             "text.png": "not an image", "missing.png": "not found", "tiny.png": "too small"}
    for name, what in cases.items():
        with pytest.raises(uio.ImageReadError) as e:
            uio.read_image(tmp_path / name)
        msg = str(e.value)
        assert name in msg and what in msg and "\n" not in msg


def test_decompression_bomb_refused_before_decoding(tmp_path, monkeypatch):
    Image.new("L", (3000, 3000)).save(tmp_path / "big.png")

    def boom(self):
        raise AssertionError("pixel data was decoded")
    monkeypatch.setattr(ImageFile.ImageFile, "load", boom)
    with pytest.raises(uio.ImageReadError, match="exceeds the limit of 1,000,000"):
        uio.read_image(tmp_path / "big.png", max_pixels=1_000_000)


def test_write_never_clobbers(tmp_path):
    im = _img("RGB")
    dst = tmp_path / "o.png"
    dst.write_bytes(b"precious")
    with pytest.raises(uio.OutputExistsError, match="--overwrite"):
        uio.write_image(im, dst)
    assert dst.read_bytes() == b"precious"
    uio.write_image(im, dst, overwrite=True)
    assert Image.open(dst).size == im.size
    src = tmp_path / "in.png"
    im.save(src)
    before = src.read_bytes()
    with pytest.raises(uio.OutputIsInputError):
        uio.write_image(_img("RGB", seed=3), src, overwrite=True, inputs=[src])
    assert src.read_bytes() == before


def test_written_files_get_normal_permissions(tmp_path):
    """Atomic writes go through a private temp file; the result must not stay owner-only."""
    import os

    mask = os.umask(0o022)
    try:
        out = uio.write_image(_img("RGB"), tmp_path / "o.png")
    finally:
        os.umask(mask)
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)


def test_failed_write_leaves_nothing_behind(tmp_path):
    with pytest.raises(uio.ImageWriteError, match="cannot write"):
        uio.write_image(_img("RGB"), tmp_path / "o.xyz")
    with pytest.raises(uio.ImageWriteError, match="alpha"):
        uio.write_image(_img("RGBA"), tmp_path / "o.jpg")
    assert list(tmp_path.iterdir()) == []


def test_output_paths_and_inputs(tmp_path):
    (tmp_path / "d").mkdir()
    for n in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / "d" / n).write_bytes(b"x")
    files = uio.list_inputs([tmp_path / "d", tmp_path / "missing.png"])
    assert [f.name for f in files] == ["a.jpg", "b.png", "missing.png"]
    assert uio.output_path_for(tmp_path / "a.gif", tmp_path / "out", 2) == tmp_path / "out" / "a.png"
    assert uio.output_path_for(tmp_path / "a.jpg", tmp_path / "x.png", 1) == tmp_path / "x.png"


def test_batch_goes_on_and_reports_every_failure():
    def fn(x):
        if x % 2:
            raise uio.ImageReadError(f"bad {x}")
        return x * 10
    rep = uio.run_batch([0, 1, 2, 3], fn, progress=False)
    assert [r for _, r in rep.ok] == [0, 20]
    assert rep.exit_code == 1
    assert "bad 1" in rep.summary() and "bad 3" in rep.summary() and "2 of 4 failed" in rep.summary()


def _srgb_icc() -> bytes:
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("ext", ["png", "jpg", "webp", "tif"])
def test_icc_exif_and_png_text_are_carried_over(tmp_path, ext):
    icc = _srgb_icc()
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate on display
    exif[0x010F] = "CameraMaker"  # Make
    exif.get_ifd(0x8769)[0xA002] = 20  # ExifImageWidth, before rotation
    src = tmp_path / "in.png"
    info = __import__("PIL.PngImagePlugin", fromlist=["PngInfo"]).PngInfo()
    info.add_text("Description", "a test image")
    _img("RGB", size=(20, 10)).save(src, icc_profile=icc, exif=exif, pnginfo=info)
    loaded = uio.read_image(src)
    assert loaded.size == (10, 20)  # orientation applied
    big = Image.new("RGB", (40, 80))  # what an x4 upscale would return
    dst = uio.write_image(big, tmp_path / f"out.{ext}", icc_profile=loaded.icc_profile, exif=loaded.exif,
                          text=loaded.text)
    back = Image.open(dst)
    assert back.info.get("icc_profile") == icc
    e = back.getexif()
    assert e.get(0x010F) == "CameraMaker"
    assert e.get(0x0112) == 1  # applied once, so viewers must not turn it again
    assert e.get_ifd(0x8769).get(0xA002) == 40  # pixel width of the written image
    if ext == "png":
        assert back.text.get("Description") == "a test image"


def test_failed_write_names_the_output_not_the_temp_file(tmp_path, monkeypatch):
    def no_space(self, fp, *a, **k):
        raise OSError(28, "No space left on device", str(fp))

    monkeypatch.setattr(Image.Image, "save", no_space)
    with pytest.raises(uio.ImageWriteError) as e:
        uio.write_image(_img("RGB"), tmp_path / "o.png")
    msg = str(e.value)
    assert msg == f"{tmp_path / 'o.png'}: could not write (No space left on device)"
    assert list(tmp_path.iterdir()) == []


def test_batch_report_names_each_file_once(tmp_path):
    def fn(p):
        uio.read_image(p)

    bad = tmp_path / "x.png"
    bad.write_text("not an image")
    summary = uio.run_batch([bad, tmp_path / "gone.png"], fn, progress=False).summary()
    assert summary.count("x.png") == 1 and summary.count("gone.png") == 1
    assert "gone.png: input file not found" in summary


def test_failed_overwrite_keeps_the_old_file(tmp_path, disk_full_midway):
    """--overwrite must replace the old file only once the new one is complete: a write that fails
    partway leaves the old file byte for byte, and no temp file."""
    dst = tmp_path / "o.png"
    _img("RGB", seed=1).save(dst)
    old = dst.read_bytes()
    disk_full_midway()
    with pytest.raises(uio.ImageWriteError) as e:
        uio.write_image(_img("RGB", size=(64, 48), seed=2), dst, overwrite=True)
    assert str(e.value) == f"{dst}: could not write (No space left on device)"
    assert dst.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


def test_atomic_write_that_fails_partway_keeps_the_old_file(tmp_path):
    from upstep.atomic import atomic_write

    dst = tmp_path / "weights.bin"
    dst.write_bytes(b"old contents " * 100)
    old = dst.read_bytes()

    def write(tmp):
        with open(tmp, "wb") as fh:
            fh.write(b"new, half written")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(dst, write)
    assert dst.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]
