"""What a new user ran into (a QA walkthrough, 2026-12-07): modes that lost data on the way in or out,
batches that wrote two results to one name, misleading errors, and `--steps` on one-step models."""
import os
import signal

import numpy as np
import pytest
import torch
from PIL import Image

import upstep
from conftest import make_tiny_model
from upstep.cli import main
from upstep.errors import UpstepError
from upstep.io import read_image, write_image
from upstep.model import one_step_only, save_model

ONE_STEP_INFO = {"train_config": {"recipe": "perceptual", "perceptual": {}}}


@pytest.fixture
def model_dir(tmp_path):
    return save_model(make_tiny_model(), tmp_path / "model")


@pytest.fixture
def one_step_dir(tmp_path):
    return save_model(make_tiny_model(), tmp_path / "onestep", extra=ONE_STEP_INFO)


def _rgb(size=(20, 16), seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


# --- modes in and out ------------------------------------------------------------------------------

@pytest.mark.parametrize("ext", [".webp", ".bmp", ".jpg"])
def test_16_bit_gray_is_written_as_8_bit_where_the_format_has_no_16_bits(tmp_path, ext):
    ramp = Image.fromarray(np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16))
    out = np.asarray(Image.open(write_image(ramp, tmp_path / f"r{ext}")).convert("L"), dtype=float)
    want = np.linspace(0, 255, 40 * 30).reshape(30, 40)
    assert abs(out.mean() - want.mean()) < 2 and np.abs(out - want).max() < 12   # a ramp, not all white


@pytest.mark.parametrize("ext", [".png", ".tif"])
def test_16_bit_gray_stays_16_bit_in_png_and_tiff(tmp_path, ext):
    ramp = Image.fromarray(np.linspace(0, 65535, 40 * 30).reshape(30, 40).astype(np.uint16))
    back = Image.open(write_image(ramp, tmp_path / f"r{ext}"))
    assert back.mode.startswith("I") and np.array_equal(np.asarray(back), np.asarray(ramp))


def test_a_png_colour_key_becomes_alpha(tmp_path):
    arr = np.asarray(_rgb()).copy()
    arr[:4, :5] = 255
    Image.fromarray(arr).save(tmp_path / "rgb.png", transparency=(255, 255, 255))
    img = read_image(tmp_path / "rgb.png")
    keyed = np.all(arr == 255, -1)
    assert img.alpha is not None and not img.is_gray
    assert np.array_equal(img.alpha[0].numpy() == 0, keyed)
    gray = arr[..., 0].copy()
    gray[:3, :3] = 7
    Image.fromarray(gray).save(tmp_path / "l.png", transparency=7)
    img = read_image(tmp_path / "l.png")
    assert img.is_gray and img.alpha is not None and np.array_equal(img.alpha[0].numpy() == 0, gray == 7)
    Image.fromarray(arr).save(tmp_path / "plain.png")
    assert read_image(tmp_path / "plain.png").alpha is None


def _png(path, width, height, depth, colour_type, raw_rows: bytes, trns: bytes):
    """A PNG written by hand: Pillow cannot write 16-bit colour or a colour key at other depths."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"tRNS", trns)
                     + chunk(b"IDAT", zlib.compress(raw_rows)) + chunk(b"IEND", b""))


def test_a_colour_key_of_a_16_bit_or_2_bit_png_is_left_alone(tmp_path):
    import struct

    rows = b"".join(b"\x00" + b"".join(struct.pack(">HHH", 1000 * x, 3 * y, 7) for x in range(6)) for y in range(4))
    _png(tmp_path / "rgb16.png", 6, 4, 16, 2, rows, struct.pack(">HHH", 1000, 0, 7))
    img = read_image(tmp_path / "rgb16.png")       # before: an OverflowError, or the wrong pixels transparent
    assert img.alpha is None and tuple(img.rgb.shape) == (3, 4, 6)
    rows = b"".join(b"\x00" + bytes([0b00011011]) for _ in range(4))   # 2-bit gray 0, 1, 2, 3
    _png(tmp_path / "l2.png", 4, 4, 2, 0, rows, struct.pack(">H", 1))
    img = read_image(tmp_path / "l2.png")
    assert img.alpha is None and img.is_gray


def test_premultiplied_alpha_keeps_its_alpha(model_dir):
    rgba = np.dstack([np.asarray(_rgb()), np.full((16, 20), 128, np.uint8)])
    out = upstep.load(model_dir, device="cpu").upscale(Image.fromarray(rgba, "RGBA").convert("RGBa"))
    assert out.mode == "RGBA" and abs(np.asarray(out)[..., 3].astype(float).mean() - 128) < 2


# --- outputs ---------------------------------------------------------------------------------------

def test_two_inputs_with_one_output_name_write_the_first_and_report_the_second(tmp_path, model_dir, capsys):
    for d, seed in (("d1", 0), ("d2", 1)):
        (tmp_path / d).mkdir()
        _rgb(seed=seed).save(tmp_path / d / "x.png")
    out = tmp_path / "out"
    args = ["upscale", str(tmp_path / "d1" / "x.png"), str(tmp_path / "d2" / "x.png"), "-o", str(out),
            "--model", str(model_dir), "--no-progress"]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "d2/x.png: its output" in err and "also the output of" in err and "--overwrite" not in err
    first = np.asarray(Image.open(out / "x.png")).copy()
    assert main(args + ["--overwrite"]) == 1     # --overwrite replaces old files, never one result by another
    assert np.array_equal(np.asarray(Image.open(out / "x.png")), first) and len(list(out.iterdir())) == 1


def test_a_folder_with_pic_gif_and_pic_png_is_a_clash_too(tmp_path, model_dir, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _rgb().save(src / "pic.gif")
    _rgb(seed=1).save(src / "pic.png")
    assert main(["upscale", str(src), "-o", str(tmp_path / "out"), "--model", str(model_dir), "--no-progress"]) == 1
    assert "pic.png: its output" in capsys.readouterr().err


def test_the_input_folder_as_output_folder_is_refused_up_front(tmp_path, model_dir, capsys):
    src = tmp_path / "same"
    src.mkdir()
    _rgb().save(src / "a.png")
    before = sorted(p.name for p in src.iterdir())
    for extra in ([], ["--suffix", "_x4"], ["--overwrite"]):
        assert main(["upscale", str(src), "-o", str(src), "--model", str(model_dir), "--no-progress", *extra]) == 2
        err = capsys.readouterr().err
        assert "is the input folder" in err and "no images found" not in err
    assert sorted(p.name for p in src.iterdir()) == before


def test_several_inputs_and_a_file_name_as_output_is_a_usage_error(tmp_path, model_dir, capsys):
    _rgb().save(tmp_path / "a.png")
    _rgb(seed=1).save(tmp_path / "b.png")
    code = main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", str(tmp_path / "one.png"),
                 "--model", str(model_dir), "--no-progress"])
    assert code == 2 and "names one file, but there are 2 inputs" in capsys.readouterr().err
    assert not (tmp_path / "one.png").exists()


def test_an_output_name_of_a_format_that_cannot_be_written_fails_before_the_work(tmp_path, monkeypatch, capsys):
    _rgb().save(tmp_path / "a.png")

    def no_load(*a, **k):
        raise AssertionError("the model must not load for a usage error")

    monkeypatch.setattr("upstep.api.load", no_load)
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.gif"), "--no-progress"]) == 2
    assert "cannot write '.gif' files" in capsys.readouterr().err


SIGTERM_SCRIPT = """
import os, signal, sys
from PIL import Image
real_save = Image.Image.save
def save_then_terminated(self, fp, *a, **k):
    real_save(self, fp, *a, **k)            # the temporary file is on disk now
    os.kill(os.getpid(), signal.SIGTERM)    # the handler raises at the next bytecode
Image.Image.save = save_then_terminated
from upstep.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sigterm_during_the_write_leaves_no_partial_file(tmp_path, model_dir):
    import subprocess
    import sys

    _rgb().save(tmp_path / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    r = subprocess.run([sys.executable, "-c", SIGTERM_SCRIPT, "upscale", str(tmp_path / "a.png"), "-o", str(out),
                        "--model", str(model_dir), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert r.returncode == -signal.SIGTERM, r.stderr      # ends as SIGTERM ends a process
    assert list(out.iterdir()) == []                        # neither the result nor a hidden temporary file


def test_only_upscale_and_degrade_unwind_on_sigterm():
    from upstep.cli import TERM_CLEANS_UP

    assert TERM_CLEANS_UP == {"upscale", "degrade"}   # serve: uvicorn's own handlers; train: atomic checkpoints


def test_a_folder_is_read_for_images_and_a_folder_of_videos_says_so(tmp_path, model_dir, capsys):
    src = tmp_path / "in"
    src.mkdir()
    (src / "clip.mp4").write_bytes(b"not read")
    args = ["upscale", str(src), "-o", str(tmp_path / "out"), "--model", str(model_dir), "--no-progress"]
    assert main(args) == 2 and "1 video(s) there" in capsys.readouterr().err
    _rgb().save(src / "a.png")
    assert main(args) == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png"]


def test_a_trailing_separator_makes_the_output_a_folder(tmp_path, model_dir):
    _rgb().save(tmp_path / "a.png")
    _rgb(seed=1).save(tmp_path / "b.png")
    base = ["--model", str(model_dir), "--no-progress"]
    assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "-o", f"{tmp_path / 'o.png'}/", *base]) == 0
    assert sorted(p.name for p in (tmp_path / "o.png").iterdir()) == ["a.png", "b.png"]
    assert main(["upscale", str(tmp_path / "a.png"), "-o", f"{tmp_path / 'res.v2'}/", *base]) == 0
    assert (tmp_path / "res.v2" / "a.png").is_file()


def test_the_default_output_folder_as_input_folder_says_it_is_the_default(tmp_path, model_dir, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "upscaled").mkdir()
    _rgb().save(tmp_path / "upscaled" / "a.png")
    assert main(["upscale", "upscaled", "--model", str(model_dir), "--no-progress"]) == 2
    assert "the default output folder upscaled is the input folder" in capsys.readouterr().err


# --- steps -----------------------------------------------------------------------------------------

def test_which_models_are_one_step_only():
    assert one_step_only(ONE_STEP_INFO)
    assert not one_step_only({"train_config": {"recipe": "perceptual", "perceptual": {"train_unet": False}}})
    assert one_step_only({"train_config": {"recipe": "standard", "train": {"p_terminal": 1.0}}})
    assert not one_step_only({"train_config": {"recipe": "standard", "train": {"p_terminal": 0.5}}})
    assert not one_step_only({})
    assert one_step_only({"recipe": "perceptual"})   # exported by `upstep train` before train_config was kept


@pytest.mark.parametrize("name", ["default-x4", "fidelity-x4", "large-x4", "default-x2", "default-x8"])
def test_every_shipped_model_is_one_step_only(name):
    import json

    from upstep.api import resolve_model

    assert one_step_only(json.loads((resolve_model(name) / "config.json").read_text())["info"])


def test_more_steps_on_a_one_step_model_are_refused_but_not_on_a_multi_step_one(tmp_path, model_dir, one_step_dir,
                                                                                capsys):
    _rgb().save(tmp_path / "a.png")
    _rgb(seed=1).save(tmp_path / "a2.png")
    args = ["upscale", str(tmp_path / "a.png"), "--steps", "2", "--no-progress"]
    code = main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "a2.png"), "--steps", "2", "--no-progress",
                 "-o", str(tmp_path / "b"), "--model", str(one_step_dir)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("t = 1 only") == 1 and not (tmp_path / "b").exists()   # once, before any work
    assert main(args + ["-o", str(tmp_path / "c.png"), "--model", str(model_dir)]) == 0
    up = upstep.load(one_step_dir, device="cpu")
    with pytest.raises(UpstepError, match="leave --steps out"):
        up.upscale(_rgb(), steps=3)
    assert up.upscale(_rgb(), steps=1).size == (80, 64)
    assert up.upscale_tensor(torch.rand(1, 3, 8, 8), steps=2).shape[-1] == 32   # benchmarks may still time it


# --- the Python API's errors ----------------------------------------------------------------------

def test_the_api_says_what_is_wrong_with_its_arguments(tmp_path, model_dir):
    up = upstep.load(model_dir, device="cpu")
    with pytest.raises(UpstepError, match="fromarray"):
        up.upscale(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(UpstepError, match="PIL image or an image file's path, not NoneType"):
        up.upscale(None)
    _rgb().save(tmp_path / "a.png")
    assert up.upscale(str(tmp_path / "a.png")).size == (80, 64)          # a path works too
    with pytest.raises(UpstepError, match="colorfix 'bogus' not known"):
        up.upscale(_rgb(), colorfix="bogus")
    with pytest.raises(UpstepError, match="seed must be a whole number"):
        up.upscale(_rgb(), seed=None)
    assert up.upscale(_rgb(), seed=np.int64(3)).size == (80, 64)
    for bad in (0, 1.5, "2"):
        with pytest.raises(UpstepError, match="steps must be a whole number"):
            up.upscale(_rgb(), steps=bad)
    with pytest.raises(UpstepError, match="at least 1 pixel"):
        up.upscale(_rgb(), out_size=(0, 10))
    for tile in ("abc", 0, -5, 1.5):
        with pytest.raises(UpstepError, match="tile must be"):
            upstep.load(model_dir, device="cpu", tile=tile)
    for overlap in (-1, "x"):
        with pytest.raises(UpstepError, match="overlap must be"):
            upstep.load(model_dir, device="cpu", overlap=overlap)
    with pytest.raises(UpstepError, match="device 'tpu' not supported"):
        upstep.load(model_dir, device="tpu")


def test_a_shipped_model_without_strength_names_the_ones_that_have_it(capsys, tmp_path):
    up = upstep.load("fidelity-x4", device="cpu")
    with pytest.raises(UpstepError) as e:
        up.upscale(_rgb(), strength=0.5)
    msg = str(e.value)
    assert "fidelity-x4 has no strength control" in msg and "default-x4" in msg
    assert "ship_model" not in msg and "safetensors" not in msg


def test_onnxruntime_with_dtype_auto_runs_float32():
    pytest.importorskip("onnxruntime")
    up = upstep.load("default-x4", device="cpu", backend="onnxruntime")
    assert up.backend == "onnxruntime" and up.pipeline.dtype == torch.float32
    with pytest.raises(UpstepError, match="asked: bfloat16 on cpu"):
        upstep.load("default-x4", device="cpu", dtype="bfloat16", backend="onnxruntime")


# --- the web app ------------------------------------------------------------------------------------

def test_web_strength_auto_is_the_models_default():
    pytest.importorskip("starlette")
    from upstep.web.service import Size

    assert Size.from_query({"strength": "auto"}).strength is None
    assert Size.from_query({"strength": "0.5"}).strength == 0.5


def test_serve_on_a_busy_port_fails_before_loading_models_or_printing_its_address(monkeypatch, capsys):
    pytest.importorskip("uvicorn")
    import socket

    def no_service(*a, **k):
        raise AssertionError("no model must load for a busy port")

    monkeypatch.setattr("upstep.web.Service", no_service)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    out = capsys.readouterr()
    assert "http://" not in out.out and f"cannot listen on 127.0.0.1:{port}" in out.err and "--port" in out.err


def test_serve_on_a_port_in_use_fails_before_printing_its_address():
    import socket

    from upstep.web import check_port_free

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        with pytest.raises(UpstepError, match=f"cannot listen on 127.0.0.1:{port}"):
            check_port_free("127.0.0.1", port)
    check_port_free("127.0.0.1", port)   # free again once closed


def test_one_failed_file_is_one_line(tmp_path, model_dir, capsys):
    code = main(["upscale", str(tmp_path / "missing.png"), "-o", str(tmp_path / "o.png"), "--model", str(model_dir),
                 "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1 and err[0].endswith("missing.png: input file not found")


def test_alpha_to_jpeg_is_refused_before_the_upscale(tmp_path, model_dir, monkeypatch, capsys):
    rgba = np.dstack([np.asarray(_rgb()), np.full((16, 20), 128, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")

    def no_upscale(*a, **k):
        raise AssertionError("must be refused before upscaling")

    monkeypatch.setattr("upstep.api.Upscaler.upscale_loaded", no_upscale)
    for ext, fmt in ((".jpg", "JPEG"), (".bmp", "BMP")):
        assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / f"a{ext}"), "--model", str(model_dir),
                     "--no-progress"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("a.png") == 1 and f"has an alpha channel, which {fmt} (a{ext}) cannot store" in err


def test_crf_out_of_range_is_a_usage_error(tmp_path, capsys):
    assert main(["upscale", "x.mp4", "--crf", "99"]) == 2
    assert "--crf must be between 0" in capsys.readouterr().err


def test_web_serves_only_the_input_and_result_images():
    from types import SimpleNamespace

    from upstep.web.service import Service

    svc = SimpleNamespace(jobs={"j": SimpleNamespace(input_png=b"in", result_png=b"out")})
    assert Service.job_image(svc, "j", "input") == b"in" and Service.job_image(svc, "j", "result") == b"out"
    assert Service.job_image(svc, "j", "anything") == b"" and Service.job_image(svc, "k", "result") == b""
