"""`upstep upscale` and the Python API end to end on a tiny model."""
import numpy as np
import pytest
from PIL import Image

import upstep
from conftest import make_tiny_model
from upstep.cli import main
from upstep.errors import UpstepError
from upstep.model import save_model


@pytest.fixture
def model_dir(tmp_path):
    return save_model(make_tiny_model(), tmp_path / "model")


def _rand(mode, size=(20, 16)):
    rng = np.random.default_rng(0)
    ch = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}[mode]
    arr = rng.integers(0, 256, (size[1], size[0], ch), dtype=np.uint8)
    return Image.fromarray(arr[..., 0] if ch == 1 else arr, mode)


def test_api_keeps_the_kind_of_image(model_dir):
    up = upstep.load(model_dir, device="cpu")
    for mode in ("RGB", "RGBA", "L", "LA"):
        out = up.upscale(_rand(mode))
        assert out.mode == mode and out.size == (80, 64)
    rgba = _rand("RGBA")
    a = np.asarray(up.upscale(rgba))[..., 3].astype(float)
    ref = np.asarray(rgba.getchannel("A").resize((80, 64), Image.BICUBIC)).astype(float)
    assert np.abs(a - ref).mean() < 3  # alpha is upscaled (bicubic), not dropped or regenerated


def test_batch_goes_on_past_bad_files(tmp_path, model_dir, capsys):
    src = tmp_path / "in"
    src.mkdir()
    _rand("RGB").save(src / "a.png")
    _rand("L").save(src / "b.jpg")
    (src / "c.png").write_text("not an image")
    out = tmp_path / "out"
    code = main(["upscale", str(src), str(tmp_path / "missing.png"), "-o", str(out), "--model", str(model_dir),
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert "c.png" in err and "missing.png" in err and "2 of 4 failed" in err
    assert Image.open(out / "a.png").size == (80, 64)
    assert Image.open(out / "b.jpg").mode == "L"


def test_existing_output_is_kept_without_overwrite(tmp_path, model_dir, capsys):
    _rand("RGB").save(tmp_path / "a.png")
    dst = tmp_path / "a_x4.png"
    dst.write_bytes(b"keep me")
    args = ["upscale", str(tmp_path / "a.png"), "-o", str(dst), "--model", str(model_dir), "--no-progress"]
    assert main(args) == 1
    assert dst.read_bytes() == b"keep me"
    assert "--overwrite" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    assert Image.open(dst).size == (80, 64)
    # never over the input, even with --overwrite
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "a.png"), "--model", str(model_dir),
                 "--overwrite", "--no-progress"]) == 1
    assert Image.open(tmp_path / "a.png").size == (20, 16)


def test_failed_overwrite_keeps_the_old_output(tmp_path, model_dir, capsys, disk_full_midway):
    """`upscale --overwrite` onto an existing output whose write fails partway (a full disk after
    half the file): the old output stays byte for byte, no temp file is left, exit 1, one line."""
    _rand("RGB").save(tmp_path / "a.png")
    dst = tmp_path / "a_x4.png"
    _rand("RGB", size=(80, 64)).save(dst)
    old = dst.read_bytes()
    disk_full_midway()
    code = main(["upscale", str(tmp_path / "a.png"), "-o", str(dst), "--model", str(model_dir), "--overwrite",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    assert dst.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_x4.png", "model"]
    reasons = [ln.strip() for ln in err.splitlines() if str(dst) in ln]
    # the batch names the input, then the reason: the output and why, never the temp file
    assert reasons == [f"{tmp_path / 'a.png'}: {dst}: could not write (No space left on device)"]
    assert "Traceback" not in err and ".tmp" not in err and ".a_x4." not in err


def test_user_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["upscale", "--model", str(tmp_path / "nope"), "x.png"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["upscale"]) == 2
    assert "--demo" in capsys.readouterr().err


def test_scale_beyond_the_model_is_reported(tmp_path, model_dir, capsys):
    """A factor the given model cannot reach is a usage error; a smaller one runs it and resizes down."""
    _rand("RGB").save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "--scale", "8", "--model", str(model_dir),
                 "-o", str(tmp_path / "b.png")]) == 2
    assert "upscales x4, but --scale 8" in capsys.readouterr().err and not (tmp_path / "b.png").exists()
    assert main(["upscale", str(tmp_path / "a.png"), "--scale", "2", "--model", str(model_dir),
                 "-o", str(tmp_path / "b.png"), "--no-progress"]) == 0
    assert Image.open(tmp_path / "b.png").size == (40, 32)


@pytest.mark.parametrize("opts, says", [
    (["--tile", "-5"], "--tile"), (["--tile", "0"], "--tile"), (["--tile", "big"], "--tile"),
    (["--tile", "32", "--overlap", "32"], "--overlap"), (["--overlap", "-1"], "--overlap"),
    (["--steps", "0"], "--steps"), (["--quality", "101"], "--quality"),
    (["--format", "jpg", "-o", "x.png"], "--format"),
    (["--scale", "9"], "--scale"), (["--scale", "0.5"], "--scale"), (["--width", "0"], "--width"),
    (["--scale", "2", "--width", "30"], "not both"), (["--strength", "1.2"], "strength"),
])
def test_invalid_option_values_exit_2_with_one_line(tmp_path, model_dir, capsys, opts, says):
    _rand("RGB").save(tmp_path / "a.png")
    args = ["upscale", str(tmp_path / "a.png"), "--model", str(model_dir), "--no-progress"]
    if "-o" not in opts:
        args += ["-o", str(tmp_path / "out.png")]
    assert main(args + opts) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and says in err
    assert not (tmp_path / "out.png").exists()


def test_missing_input_is_reported_even_when_the_output_exists(tmp_path, model_dir, capsys):
    (tmp_path / "t.png").write_bytes(b"old")
    assert main(["upscale", str(tmp_path / "nope.png"), "-o", str(tmp_path / "t.png"), "--model", str(model_dir),
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "nope.png: input file not found" in err and "exists" not in err
    assert err.count("nope.png") == 1


def test_format_and_quality_pick_the_encoder(tmp_path, model_dir):
    _rand("RGB", size=(32, 24)).save(tmp_path / "a.png")
    sizes = {}
    for fmt, q in (("jpg", 30), ("jpg", 95), ("webp", 50), ("tiff", 95), ("png", 95)):
        out = tmp_path / f"o_{fmt}_{q}"
        assert main(["upscale", str(tmp_path / "a.png"), "-o", str(out), "--model", str(model_dir),
                     "--format", fmt, "--quality", str(q), "--no-progress"]) == 0
        (f,) = out.iterdir()
        assert Image.open(f).format == {"jpg": "JPEG", "webp": "WEBP", "tiff": "TIFF", "png": "PNG"}[fmt]
        sizes[fmt, q] = f.stat().st_size
    assert sizes["jpg", 30] < sizes["jpg", 95]  # --quality reaches the encoder


def test_upscale_keeps_icc_and_exif(tmp_path, model_dir):
    from PIL import ImageCms

    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 8, "Maker"
    _rand("RGB").save(tmp_path / "a.jpg", icc_profile=icc, exif=exif)
    assert main(["upscale", str(tmp_path / "a.jpg"), "-o", str(tmp_path / "o.jpg"), "--model", str(model_dir),
                 "--no-progress"]) == 0
    out = Image.open(tmp_path / "o.jpg")
    assert out.size == (64, 80)  # turned upright (orientation 8), then x4
    assert out.info["icc_profile"] == icc
    assert out.getexif()[0x010F] == "Maker" and out.getexif()[0x0112] == 1


def test_scale_picks_the_shipped_model_for_that_scale(tmp_path, monkeypatch, capsys):
    """`upstep models` lists what ships; --scale s (and load(scale=s)) picks default-x<s>, and a
    scale with no shipped model is a clear error naming what ships."""
    import upstep.api

    shipped = tmp_path / "weights"
    save_model(make_tiny_model(scale=4), shipped / "default-x4")
    save_model(make_tiny_model(scale=2), shipped / "default-x2")
    save_model(make_tiny_model(scale=4), shipped / "fidelity-x4")
    monkeypatch.setattr(upstep.api, "package_weights_dir", lambda: shipped)
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[:2] for line in lines] == [["default-x2", "x2"], ["default-x4", "x4"],
                                                        ["fidelity-x4", "x4"]]
    assert lines[0].endswith("(--scale 2)") and not lines[2].endswith(")")
    _rand("RGB").save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "--scale", "2", "-o", str(tmp_path / "b.png"),
                 "--no-progress"]) == 0
    assert Image.open(tmp_path / "b.png").size == (40, 32)
    assert upstep.load(scale=2, device="cpu").scale == 2
    assert main(["upscale", str(tmp_path / "a.png"), "--scale", "8", "-o", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert "no x8 model ships" in err and "default-x2 (x2), default-x4 (x4)" in err
    assert not (tmp_path / "c.png").exists()


def _ship_tiny(tmp_path, monkeypatch, scales=(2, 4)):
    import upstep.api

    shipped = tmp_path / "weights"
    for s in scales:
        save_model(make_tiny_model(scale=s), shipped / f"default-x{s}")
    monkeypatch.setattr(upstep.api, "package_weights_dir", lambda: shipped)


@pytest.mark.parametrize("opts, size", [
    (["--scale", "3"], (60, 48)), (["--scale", "1.5"], (30, 24)), (["--scale", "1"], (20, 16)),
    (["--width", "50"], (50, 40)), (["--height", "40"], (50, 40)), (["--width", "30", "--height", "30"], (30, 30)),
])
def test_any_output_size(tmp_path, monkeypatch, opts, size):
    _ship_tiny(tmp_path, monkeypatch)
    _rand("RGB").save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "--no-progress"] + opts) == 0
    assert Image.open(tmp_path / "b.png").size == size


def test_a_scale_without_its_own_model_runs_the_next_larger_one(tmp_path, monkeypatch):
    _ship_tiny(tmp_path, monkeypatch, scales=(4,))
    _rand("RGB").save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "--scale", "2",
                 "--no-progress"]) == 0
    assert Image.open(tmp_path / "b.png").size == (40, 32)


def test_a_size_beyond_the_shipped_models_is_reported(tmp_path, monkeypatch, capsys):
    _ship_tiny(tmp_path, monkeypatch)
    _rand("RGB").save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "--width", "100",
                 "--no-progress"]) == 1
    assert "100x80 from a 20x16 input is x5; the largest model here upscales x4" in capsys.readouterr().err
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "--scale", "5"]) == 2
    assert "no x8 model ships" in capsys.readouterr().err


def test_plan_size_picks_the_smallest_scale_at_or_above_the_factor(tmp_path, monkeypatch):
    from functools import partial

    from upstep.api import SizePlan, plan_size

    plan = partial(plan_size, model_scales=(2, 4, 8))
    assert plan((20, 16), 3) == SizePlan((60, 48), 3.0, 4)
    p = plan((101, 50), 1.5)
    assert p.size == (152, 75) and p.model_scale == 2 and p.model == "default-x2"
    assert plan((20, 16), 2).model_scale == 2 and plan((20, 16), 4.5).model_scale == 8
    assert plan((100, 50), width=300).size == (300, 150)
    assert plan((100, 50), width=300, height=60).model_scale == 4
    with pytest.raises(UpstepError, match="smaller than the 100x50 input"):
        plan((100, 50), width=50)
    _ship_tiny(tmp_path, monkeypatch, scales=(4,))  # by default: among the models that ship
    assert plan_size((20, 16), 2).model_scale == 4


def test_out_size_resizes_the_model_output_down(model_dir):
    """out_size runs the model at its own scale, then an antialiased downsampling (``resize_output``)."""
    import torch

    from upstep.api import resize_output

    up = upstep.load(model_dir, device="cpu", dtype="float32")
    x = torch.rand(1, 3, 16, 20, generator=torch.Generator().manual_seed(0))
    full = up.upscale_tensor(x)
    assert torch.equal(up.upscale_tensor(x, out_size=(60, 48)), resize_output(full, (60, 48)))
    assert up.upscale(_rand("RGBA"), out_size=(33, 30)).size == (33, 30)
    with pytest.raises(UpstepError, match="out of reach of this x4 model"):
        up.upscale(_rand("RGB"), out_size=(81, 64))
    # antialiased: a one-pixel checkerboard shrunk by 3/4 comes out flat grey, not as an aliased pattern
    i = torch.arange(64)
    board = ((i[:, None] + i[None, :]) % 2).float().expand(1, 3, 64, 64)
    assert resize_output(board, (48, 48)).std() < 0.05


def test_recursive_mirrors_the_tree_and_goes_on_past_bad_images(tmp_path, model_dir, capsys):
    src, out = tmp_path / "in", tmp_path / "out"
    (src / "sub" / "deeper").mkdir(parents=True)
    _rand("RGB").save(src / "a.png")
    _rand("RGB").save(src / "sub" / "b.jpg")
    _rand("L").save(src / "sub" / "deeper" / "c.png")
    (src / "notes.txt").write_text("not an image")
    (src / "sub" / "broken.png").write_bytes(b"\x89PNG not really")
    code = main(["upscale", str(src), "-o", str(out), "--model", str(model_dir), "--recursive", "--no-progress"])
    io = capsys.readouterr()
    assert code == 1
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "a.png", "sub/b.jpg", "sub/deeper/c.png"]
    assert Image.open(out / "sub" / "deeper" / "c.png").mode == "L"
    assert "3 of 4 upscaled" in io.out and "broken.png" in io.err and "notes.txt" not in io.out + io.err
    assert main(["upscale", str(src), "-o", str(tmp_path / "flat"), "--model", str(model_dir), "--no-progress"]) == 0
    assert [p.name for p in (tmp_path / "flat").iterdir()] == ["a.png"]  # without --recursive: the top only
    # an output folder inside the input tree is not read back as input on the next run
    for _ in range(2):
        main(["upscale", str(src), "-o", str(src / "up"), "--model", str(model_dir), "-r", "--overwrite",
              "--no-progress"])
        assert "3 of 4 upscaled" in capsys.readouterr().out


def test_a_training_run_folder_is_taken_as_its_exported_model(tmp_path, model_dir):
    """--model RUN (an `upstep train` run folder: its config.json, log.jsonl and model/) upscales with
    RUN/model, exactly as naming the model folder does."""
    (tmp_path / "config.json").write_text('{"name": "tiny"}')   # the run's training config, not a model's
    (tmp_path / "log.jsonl").write_text('{"step": 1}\n')
    _rand("RGB").save(tmp_path / "a.png")
    for name, model in (("by_model.png", model_dir), ("by_run.png", tmp_path)):
        assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / name), "--model", str(model),
                     "--no-progress"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "by_model.png")), np.asarray(Image.open(tmp_path / "by_run.png")))


def test_a_run_folder_without_its_exported_model_says_so(tmp_path, capsys):
    """A run that has not reached its end has no model/: the error names the folder once and says
    what to do, not that some model.safetensors is missing."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text('{"name": "tiny"}')
    (run / "log.jsonl").write_text('{"step": 1}\n')
    _rand("RGB").save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "o.png"), "--model", str(run),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "no exported model/" in err and "resume it" in err and err.count(str(run)) == 1
    assert not (tmp_path / "o.png").exists()
