"""--strength auto (issue 29): a model's auto rule picks a strength per image from the shipped
camera detector; it is the default of a model that declares one (default-x4)."""
import hashlib
import json
from pathlib import Path

import pytest
import torch

import upstep
from upstep.camera_detect import SHIPPED, load_detector
from upstep.cli import main
from upstep.errors import ModelLoadError, UpstepError
from upstep.paths import data_root
from upstep.strength import auto_strength_rule

ROOT = Path(__file__).resolve().parents[1]
# the shipped detector (scripts/train_camera_detector.py --out runs/camera_detector_jpeg --positive ..., copied;
# docs/results/camera_jpeg); regenerate with  sha256sum src/upstep/assets/camera-detector/model.safetensors
DETECTOR_SHA256 = "3fbb235cc0c210bf40f7c7124796bd0d1cc0970e8333dc4db9aaf1ddf1bd34d9"


def test_the_shipped_detector_is_pinned_and_loads_without_pickle():
    assert hashlib.sha256((SHIPPED / "model.safetensors").read_bytes()).hexdigest() == DETECTOR_SHA256
    assert sorted(p.name for p in SHIPPED.iterdir()) == ["config.json", "model.safetensors"]
    info = json.loads((SHIPPED / "config.json").read_text())["info"]
    assert info["command"].startswith("python scripts/train_camera_detector.py")
    load_detector()


def test_auto_rules_are_read_from_the_config_and_malformed_ones_refused(tmp_path):
    assert auto_strength_rule(upstep.api.resolve_model("default-x4")) == {"camera_like": 0.75, "otherwise": 1.0,
                                                                          "threshold": 0.5}
    assert auto_strength_rule(upstep.api.resolve_model("fidelity-x4")) is None
    (tmp_path / "config.json").write_text(json.dumps({"info": {"auto_strength": {"camera_like": 2, "otherwise": 1,
                                                                                   "threshold": 0.5}}}))
    with pytest.raises(ModelLoadError, match="info.auto_strength"):
        auto_strength_rule(tmp_path)


@pytest.fixture(scope="module")
def dx4():
    return upstep.load("default-x4", device="cpu", dtype="float32")


@pytest.mark.parametrize("p,want", [(0.9, 0.75), (0.1, 1.0)])
def test_auto_runs_the_rules_strength_for_the_detectors_answer(dx4, monkeypatch, p, want):
    import upstep.camera_detect as cd

    monkeypatch.setattr(cd, "camera_probability", lambda det, lr: p)
    lr = torch.rand(1, 3, 16, 12, generator=torch.Generator().manual_seed(0))
    explicit = dx4.upscale_tensor(lr, strength=want)
    assert torch.equal(dx4.upscale_tensor(lr, strength="auto"), explicit)
    assert torch.equal(dx4.upscale_tensor(lr), explicit)              # auto is default-x4's default
    other = dx4.upscale_tensor(lr, strength=1.75 - want)
    assert not torch.equal(other, explicit)                           # ... and the two strengths differ


def test_auto_asks_the_upscalers_own_detector_when_it_has_one(monkeypatch):
    """``Upscaler.camera_detector`` (a benchmark's candidate detector) replaces the shipped one."""
    import upstep.camera_detect as cd

    up = upstep.load("default-x4", device="cpu", dtype="float32")
    asked = []
    monkeypatch.setattr(cd, "camera_probability", lambda det, lr: asked.append(det) or 0.9)
    lr = torch.rand(1, 3, 16, 12, generator=torch.Generator().manual_seed(0))
    assert up.resolve_strength("auto", lr) == 0.75 and asked[-1] is cd.shipped_detector()
    up.camera_detector = mine = cd.CameraDetector()
    assert up.resolve_strength("auto", lr) == 0.75 and asked[-1] is mine


def test_auto_is_refused_where_it_cannot_apply(dx4):
    with pytest.raises(UpstepError, match="one image at a time"):
        dx4.upscale_tensor(torch.rand(2, 3, 8, 8), strength="auto")
    fid = upstep.load("fidelity-x4", device="cpu")
    with pytest.raises(UpstepError, match="needs a model with an auto rule"):
        fid.upscale_tensor(torch.rand(1, 3, 8, 8), strength="auto")
    lr = torch.rand(1, 3, 8, 8)
    # no rule and no fidelity end: the default is the model as shipped, which S = 1 names too
    assert torch.equal(fid.upscale_tensor(lr), fid.upscale_tensor(lr, strength=1.0))


def test_a_batch_without_a_strength_runs_the_weights_as_shipped(dx4, monkeypatch):
    import upstep.camera_detect as cd

    monkeypatch.setattr(cd, "camera_probability", lambda det, lr: 0.9)   # auto would pick 0.75
    lr = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    assert torch.equal(dx4.upscale_tensor(lr), dx4.upscale_tensor(lr, strength=1.0))
    assert not torch.equal(dx4.upscale_tensor(lr[:1]), dx4.upscale_tensor(lr[:1], strength=1.0))


@pytest.mark.parametrize("rule,says", [({"camera_like": 0.75, "otherwise": 1, "threshold": "nan"}, "not a probability"),
                                       ({"camera_like": 0.75, "otherwise": 1, "threshold": 0.5, "detector": "mine"},
                                        "only the shipped")])
def test_a_rule_that_cannot_be_honoured_is_refused(tmp_path, rule, says):
    (tmp_path / "config.json").write_text(json.dumps({"info": {"auto_strength": rule}}))
    with pytest.raises(ModelLoadError, match=says):
        auto_strength_rule(tmp_path)


def test_a_model_with_a_rule_but_no_fidelity_end_fails_at_load(tmp_path):
    import shutil

    folder = tmp_path / "dx4"
    shutil.copytree(upstep.api.resolve_model("default-x4"), folder)
    (folder / "fidelity.safetensors").unlink()
    with pytest.raises(ModelLoadError, match="auto strength rule but the folder holds no fidelity end"):
        upstep.load(str(folder), device="cpu")


def test_cli_takes_auto_and_refuses_other_words(tmp_path, capsys):
    from PIL import Image

    src = tmp_path / "in.png"
    Image.new("RGB", (12, 10), (120, 60, 30)).save(src)
    assert main(["upscale", str(src), "-o", str(tmp_path / "out.png"), "--strength", "auto"]) == 0
    assert (tmp_path / "out.png").is_file()
    assert main(["upscale", str(src), "-o", str(tmp_path / "o2.png"), "--strength", "sharp"]) == 2
    assert "strength must be a number" in capsys.readouterr().err
    assert main(["upscale", str(src), "-o", str(tmp_path / "o3.png"), "--model", "fidelity-x4",
                 "--strength", "auto"]) != 0
    assert "auto rule" in capsys.readouterr().err


@pytest.mark.parametrize("p,says", [(0.9, "(strength auto: 0.75, camera-like)"), (0.1, "(strength auto: 1)")])
def test_cli_says_what_auto_picked(tmp_path, capsys, monkeypatch, p, says):
    import upstep.camera_detect as cd
    from PIL import Image

    monkeypatch.setattr(cd, "camera_probability", lambda det, lr: p)
    src = tmp_path / "in.png"
    Image.new("RGB", (12, 10), (120, 60, 30)).save(src)
    assert main(["upscale", str(src), "-o", str(tmp_path / "a.png"), "--no-progress"]) == 0
    assert capsys.readouterr().out.strip().endswith(says)
    for extra in (["--strength", "1"], ["--model", "fidelity-x4"]):   # no auto: no note
        assert main(["upscale", str(src), "-o", str(tmp_path / "b.png"), "--overwrite", "--no-progress", *extra]) == 0
        assert capsys.readouterr().out.strip().endswith("b.png")


@pytest.mark.skipif(not (data_root() / "eval" / "realsr_canon").is_dir(), reason="benchmark data not found")
def test_the_shipped_detector_is_the_one_camera_jpeg_measured():
    """docs/results/camera_jpeg measured the shipped detector as shipped_newdet (runs/camera_detector_jpeg):
    on the first 8 images of realsr_canon saved as JPEG 90 and of BSD100, auto picks the strengths recorded
    there for it, and the first detector's records (shipped) differ on the JPEG images."""
    from upstep.degrade import libjpeg_roundtrip
    from upstep.evaluate.sets import open_set
    from upstep.strength import pick_auto_strength

    up = upstep.load("default-x4", device="cpu", dtype="float32")
    for folder, name, q in (("realsr_canon_q90", "realsr_canon", 90), ("bsd100", "bsd100", None)):
        res = json.loads((ROOT / "docs/results/camera_jpeg" / folder / "results.json").read_text())
        assert res["detectors"]["shipped_newdet"] == "runs/camera_detector_jpeg" and res["jpeg_quality"] == q
        rec = res["per_image"]["shipped_newdet"]
        want = dict(zip(rec["image"], rec["strength"]))
        s = open_set(name)
        for it in sorted(s.items, key=lambda i: i.name)[:8]:
            lr, _ = s.load(it, 4)
            lr = libjpeg_roundtrip(lr, q) if q else lr
            assert pick_auto_strength(up.auto_rule, lr) == want[it.name], (name, it.name)
    old = json.loads((ROOT / "docs/results/camera_jpeg/realsr_canon_q90/results.json").read_text())["per_image"]
    assert old["shipped"]["strength"] != old["shipped_newdet"]["strength"]


@pytest.mark.skipif(not (data_root() / "eval" / "set14").is_dir(), reason="benchmark data not found")
def test_the_set14_images_auto_moves_match_the_evaluation_records():
    """img_002, img_008 and img_012 are the Set14 images the shipped detector calls camera-like:
    default-x4 (auto, its default) gives the PSNR-Y that eval_default_x4_auto_jpeg recorded, not the
    S = 1 run's."""
    from upstep.evaluate.sets import open_set
    from upstep.metrics import psnr, quantize

    def recorded(folder):
        lines = (ROOT / "docs/results" / folder / "records.jsonl").read_text().splitlines()
        return {r["image"]: r["psnr"] for r in map(json.loads, lines) if r["set"] == "set14" and r["method"] == "model@1"}

    auto, s1 = recorded("eval_default_x4_auto_jpeg"), recorded("eval_default_x4_soup")
    up = upstep.load("default-x4", device="cpu", dtype="float32")
    s = open_set("set14")
    for item in [it for it in s.items if it.name in ("img_002", "img_008", "img_012")]:
        lr, hr = s.load(item, 4)
        got = float(psnr(quantize(up.upscale_tensor(lr, steps=1)), hr, crop_border=4))
        assert abs(got - auto[item.name]) < 0.02 and abs(auto[item.name] - s1[item.name]) > 0.05, item.name


def test_one_parser_takes_a_strength_or_auto():
    from upstep.strength import parse_strength

    assert parse_strength(None) is None and parse_strength(" AUTO ") == "auto" and parse_strength("0.5") == 0.5
    with pytest.raises(UpstepError, match="between 0"):
        parse_strength("1.5")
    with pytest.raises(UpstepError, match="must be a number"):
        parse_strength("sharp")


@pytest.mark.skipif(not (data_root() / "eval" / "realsr_canon").is_dir(), reason="benchmark data not found")
def test_real_camera_benchmark_records_the_strength_it_ran(tmp_path):
    rc = _script("benchmarks/real_camera.py", "real_camera")
    for extra, want in (([], "auto (the model's default)"), (["--strength", "1"], 1.0)):
        out = tmp_path / str(len(extra))
        assert rc.main(["--limit", "2", "--peers", "", "--model", "default-x4", "--out", str(out), *extra]) in (0, None)
        assert json.loads((out / "results.json").read_text())["strength"] == {"default-x4": want}
    # --jpeg saves the LR as a JPEG first (what the model sees changes); --detector swaps auto's detector:
    # one that always says camera-like and one that never does give the rule's two strengths
    from upstep.camera_detect import CameraDetector, save_detector

    lossless = json.loads((tmp_path / "0" / "results.json").read_text())
    for bias, want in ((1e3, 0.75), (-1e3, 1.0)):
        det = CameraDetector()
        with torch.no_grad():
            det.fc.weight.zero_()
            det.fc.bias.fill_(bias)
        save_detector(det, tmp_path / f"det{want}", {})
        out = tmp_path / f"jpeg{want}"
        assert rc.main(["--limit", "2", "--peers", "", "--model", "default-x4", "--out", str(out), "--jpeg", "20",
                        "--detector", f"default-x4={tmp_path / f'det{want}'}"]) in (0, None)
        res = json.loads((out / "results.json").read_text())
        assert res["jpeg_quality"] == 20 and res["detectors"] == {"default-x4": str(tmp_path / f"det{want}")}
        assert res["per_image"]["default-x4"]["strength"] == [want, want]
        assert res["per_image"]["default-x4"]["lpips"] != lossless["per_image"]["default-x4"]["lpips"]
    for extra, says in ((["--detector", "x=d"], "names no --model"), (["--detector", "d"], "NAME=DIR"),
                        (["--detector", "default-x4=d", "--strength", "1"], "only strength auto")):
        with pytest.raises(SystemExit, match=says):
            rc.main(["--limit", "1", "--peers", "", "--model", "default-x4", "--out", str(out), *extra])


@pytest.mark.parametrize("mode,size", [("L", (20, 16)), ("RGBA", (20, 16)), ("I;16", (20, 16)), ("RGB", (3, 2))])
def test_auto_upscales_odd_modes_and_tiny_images(dx4, mode, size):
    """Grayscale, alpha, 16-bit and images too small for the detector (they get the rule's
    'otherwise' strength) all go through the default path, keeping their kind and size."""
    from PIL import Image

    im = Image.new(mode, size, 120 if mode in ("L", "I;16") else (120, 60, 30, 200)[:len(mode)])
    out = dx4.upscale(im)
    assert out.size == (size[0] * 4, size[1] * 4) and out.mode == im.mode
    if min(size) < 4:
        assert out.tobytes() == dx4.upscale(im, strength=1.0).tobytes()


def _script(path: str, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_jpeg_and_detector_options_refuse_bad_values_before_any_work(tmp_path, capsys):
    """No benchmark data needed: the checks come before any image is read."""
    rc = _script("benchmarks/real_camera.py", "real_camera")
    for q in ("0", "101"):
        with pytest.raises(SystemExit):
            rc.main(["--out", str(tmp_path / "o"), "--model", "default-x4", "--jpeg", q])
        assert "a JPEG quality is 1 to 100" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="--detector default-x4=.*not a camera detector"):
        rc.main(["--out", str(tmp_path / "o"), "--model", "default-x4", "--peers", "",   # no peer weights needed
                 "--detector", f"default-x4={tmp_path / 'none'}"])
    assert not (tmp_path / "o").exists()
    train = _script("scripts/train_camera_detector.py", "train_camera_detector")
    for bad, says in (('{"camera_blur": 0.5,', "Expecting"), ("camera_blurr", "unknown degradation pipeline")):
        with pytest.raises(SystemExit):
            train.main(["--out", str(tmp_path / "d"), "--positive", bad, "--train-dir", str(tmp_path / "none")])
        assert says in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
