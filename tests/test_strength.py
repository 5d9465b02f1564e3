"""Strength (``upstep.strength``): network interpolation between a model's fidelity end (S = 0)
and its own weights (S = 1), on tiny models."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

import upstep
from conftest import make_tiny_model
from upstep.cli import main
from upstep.errors import UpstepError
from upstep.model import SRDiffusionModel, save_model
from upstep.nn.autoencoders import RefinedPixelShuffleAutoencoder, ResizeConvAutoencoder
from upstep.strength import FIDELITY_FILE, write_fidelity

REPO = Path(__file__).resolve().parents[1]


def _perceptual_of(fid, decoder: str | None = None, seed: int = 1):
    """A 'fine-tuned' copy of ``fid``: every U-Net weight moved, optionally with a decoder added
    (as perceptual training adds one) whose last layer has left its zero start."""
    model = make_tiny_model()
    model.load_state_dict(fid.state_dict())
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.unet.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
        if decoder == "resize":
            model.autoencoder = ResizeConvAutoencoder.from_plain(model.autoencoder, width=8, blocks=1, hr_channels=4)
        elif decoder == "refine":
            model.autoencoder = RefinedPixelShuffleAutoencoder.from_plain(model.autoencoder, channels=4, layers=2)
        for q in (model.autoencoder.parameters() if decoder else ()):  # trained: nothing is at its start
            q.add_(0.05 * torch.randn(q.shape, generator=g))
    return model.eval()


@pytest.fixture
def pair(tmp_path):
    """(folder of a perceptual model with fidelity.safetensors, folder of its fidelity model)."""
    fid = make_tiny_model()
    fid_dir = save_model(fid, tmp_path / "fid")
    perc_dir = save_model(_perceptual_of(fid), tmp_path / "perc")
    write_fidelity(perc_dir, fid, source="fid")
    return perc_dir, fid_dir


def _img(size=(24, 20), seed=0):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _out(up, **kw):
    return np.asarray(up.upscale(_img(), **kw))


def test_strength_ends_are_the_two_models_exactly(pair):
    perc_dir, fid_dir = pair
    up = upstep.load(perc_dir, device="cpu", dtype="float32")
    assert up.has_strength
    own = _out(up)
    fid_out = _out(upstep.load(fid_dir, device="cpu", dtype="float32"))
    assert np.abs(own.astype(int) - fid_out).mean() > 1  # the two ends really differ
    assert np.array_equal(_out(up, strength=0), fid_out)
    assert np.array_equal(_out(up, strength=1), own)
    mid = _out(up, strength=0.5)
    assert np.array_equal(_out(up), own)  # None goes back to the model's own weights after another S
    d_own, d_fid = np.abs(mid.astype(int) - own).mean(), np.abs(mid.astype(int) - fid_out).mean()
    assert 0.2 < d_own / d_fid < 5  # in between, not at an end


@pytest.mark.parametrize("decoder", ["resize", "refine"])
def test_strength_fills_a_decoder_the_fidelity_model_lacks(tmp_path, decoder):
    """Perceptual training added a zero-start decoder: the fidelity end is that decoder's identity
    start, so S = 0 is exactly the fidelity model (which has no decoder)."""
    fid = make_tiny_model()
    fid_dir = save_model(fid, tmp_path / "fid")
    perc_dir = save_model(_perceptual_of(fid, decoder=decoder), tmp_path / "perc")
    write_fidelity(perc_dir, fid, source="fid")
    stored = load_file(str(perc_dir / FIDELITY_FILE))
    assert set(stored) == set(load_file(str(perc_dir / "model.safetensors")))
    up = upstep.load(perc_dir, device="cpu", dtype="float32")
    fid_out = _out(upstep.load(fid_dir, device="cpu", dtype="float32"))
    assert np.array_equal(_out(up, strength=0), fid_out)
    assert not np.array_equal(_out(up, strength=0.5), fid_out)


def test_fidelity_weights_that_do_not_fit_are_refused(tmp_path):
    fid = make_tiny_model()
    perc_dir = save_model(_perceptual_of(fid), tmp_path / "perc")
    cfg = fid.config()
    other = SRDiffusionModel.from_config({**cfg, "unet": {**cfg["unet"], "block_out_channels": [8, 16]}})
    with pytest.raises(UpstepError, match="other: its unet .* differs"):
        write_fidelity(perc_dir, other, source="other")
    assert not (perc_dir / FIDELITY_FILE).exists()
    # a fidelity file lacking a U-Net tensor has no documented value to fill in
    state = load_file(str(perc_dir / "model.safetensors"))
    gone = sorted(k for k in state if k.startswith("unet."))[0]
    save_file({k: v for k, v in state.items() if k != gone}, str(perc_dir / FIDELITY_FILE))
    up = upstep.load(perc_dir, device="cpu", dtype="float32")
    with pytest.raises(UpstepError, match=f"lack 1 of the model's tensors \\({gone}\\).*no identity start"):
        up.upscale(_img(), strength=0.5)


def test_strength_without_a_fidelity_end_is_a_clear_error(tmp_path, capsys):
    plain = save_model(make_tiny_model(), tmp_path / "plain")
    up = upstep.load(plain, device="cpu", dtype="float32")
    assert not up.has_strength
    with pytest.raises(UpstepError, match="plain has no fidelity end"):
        up.upscale(_img(), strength=0.5)
    _img().save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "--model", str(plain),
                 "--strength", "0.5", "--no-progress"]) == 2
    assert "has no fidelity end" in capsys.readouterr().err and not (tmp_path / "b.png").exists()


@pytest.mark.parametrize("bad", ["-0.1", "1.5", "nan"])
def test_strength_out_of_range_is_a_usage_error(pair, tmp_path, capsys, bad):
    _img().save(tmp_path / "a.png")
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "--model", str(pair[0]),
                 "--strength", bad]) == 2
    assert "strength must be between 0" in capsys.readouterr().err


def test_cli_strength_writes_the_interpolated_result(pair, tmp_path):
    perc_dir, fid_dir = pair
    _img().save(tmp_path / "a.png")
    for s in ("0", "0.5"):
        assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / f"s{s}.png"), "--model",
                     str(perc_dir), "--strength", s, "--no-progress"]) == 0
    assert main(["upscale", str(tmp_path / "a.png"), "-o", str(tmp_path / "fid.png"), "--model", str(fid_dir),
                 "--no-progress"]) == 0
    read = lambda n: np.asarray(Image.open(tmp_path / n))  # noqa: E731
    assert np.array_equal(read("s0.png"), read("fid.png"))
    assert not np.array_equal(read("s0.5.png"), read("fid.png"))


def _finished_run(run: Path, model) -> None:
    """``run`` as scripts/ship_model.py wants a finished ``upstep train`` run: model/, config.json, log.jsonl."""
    save_model(model, run / "model")
    (run / "config.json").write_text(json.dumps({"name": "tiny"}))
    (run / "log.jsonl").write_text(json.dumps({"step": 3}) + "\n")


def test_ship_model_writes_a_matching_fidelity_end(tmp_path, monkeypatch):
    """scripts/ship_model.py RUN NAME --fidelity FID: fidelity.safetensors beside the weights, in
    their float16, same keys and shapes; an unfit fidelity model stops it before anything is written."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import ship_model

    fid = make_tiny_model()
    save_model(fid, tmp_path / "fid_run" / "model")
    run = tmp_path / "run"
    _finished_run(run, _perceptual_of(fid, decoder="resize"))
    ship_model.main(str(run), "tiny-x4", fidelity=str(tmp_path / "fid_run"), dest=str(tmp_path / "shipped"))
    model = load_file(str(tmp_path / "shipped" / "model.safetensors"))
    fidw = load_file(str(tmp_path / "shipped" / FIDELITY_FILE))
    assert {k: (v.shape, v.dtype) for k, v in fidw.items()} == {k: (v.shape, v.dtype) for k, v in model.items()}
    assert all(v.dtype == torch.float16 for v in fidw.values())
    up = upstep.load(tmp_path / "shipped", device="cpu", dtype="float32")
    assert not np.array_equal(_out(up, strength=0), _out(up))
    wrong = make_tiny_model(scale=2)
    save_model(wrong, tmp_path / "wrong")
    with pytest.raises(UpstepError, match="scale"):
        ship_model.main(str(run), "tiny-x4", fidelity=str(tmp_path / "wrong"), dest=str(tmp_path / "shipped2"))
    assert not (tmp_path / "shipped2").exists()


@pytest.fixture
def tiny_package(tmp_path, monkeypatch):
    """A package weights folder holding the shipped model tiny-fid, a finished run fine-tuned from it,
    and scripts/ship_model.py imported: (package folder, run folder, ship_model)."""
    import upstep.api
    import upstep.paths

    pkg = tmp_path / "pkg"
    for module in (upstep.paths, upstep.api):
        monkeypatch.setattr(module, "package_weights_dir", lambda: pkg)
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import ship_model

    fid = make_tiny_model()
    save_model(fid, pkg / "tiny-fid")
    run = tmp_path / "run"
    _finished_run(run, _perceptual_of(fid))
    return pkg, run, ship_model


def test_a_shipped_fidelity_model_can_be_named_instead_of_copied(tmp_path, tiny_package):
    """ship_model --fidelity NAME --fidelity-shared: no fidelity.safetensors is written, config.json
    names the shipped model, and S = 0 is exactly that model. Only the bare name of a model shipped
    in the package is accepted, when shipping and when loading."""
    pkg, run, ship_model = tiny_package
    shipped = tmp_path / "shipped"
    ship_model.main(str(run), "tiny-x4", fidelity="tiny-fid", dest=str(shipped), fidelity_shared=True)
    assert not (shipped / FIDELITY_FILE).exists()
    up = upstep.load(shipped, device="cpu", dtype="float32")
    assert up.has_strength
    fid_out = _out(upstep.load(pkg / "tiny-fid", device="cpu", dtype="float32"))
    assert np.array_equal(_out(up, strength=0), fid_out)
    assert not np.array_equal(_out(up), fid_out)
    with pytest.raises(UpstepError, match="name of a shipped model"):
        ship_model.main(str(run), "x", fidelity=str(pkg / "tiny-fid"), dest=str(tmp_path / "no"), fidelity_shared=True)
    assert not (tmp_path / "no").exists()
    cfg = json.loads((shipped / "config.json").read_text())
    for bad in ("../pkg/tiny-fid", 5, "no-such-model"):   # a path, not a name at all, not shipped
        cfg["info"]["fidelity_end"]["shipped_model"] = bad
        (shipped / "config.json").write_text(json.dumps(cfg))
        with pytest.raises(UpstepError, match="not a model shipped in this package"):
            upstep.load(shipped, device="cpu", dtype="float32").upscale(_img(), strength=0.5)


def test_no_strength_ships_the_blend_without_a_fidelity_end(tmp_path, monkeypatch):
    """ship_model --fidelity FID --blend B --no-strength: the weights are the blend, no fidelity end
    is written (an old one is removed) and --strength is refused; without --blend it is refused."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import ship_model

    fid = make_tiny_model()
    save_model(fid, tmp_path / "fid_run" / "model")
    run = tmp_path / "run"
    _finished_run(run, _perceptual_of(fid))
    with_end, without = tmp_path / "with_end", tmp_path / "without"
    ship_model.main(str(run), "tiny-x4", fidelity=str(tmp_path / "fid_run"), dest=str(with_end), blend=0.5)
    blend = load_file(str(with_end / "model.safetensors"))
    assert (with_end / FIDELITY_FILE).exists()
    ship_model.main(str(run), "tiny-x4", fidelity=str(tmp_path / "fid_run"), dest=str(with_end), blend=0.5,
                    no_strength=True)   # over a model that had a fidelity end
    ship_model.main(str(run), "tiny-x4", fidelity=str(tmp_path / "fid_run"), dest=str(without), blend=0.5,
                    no_strength=True)
    assert not (with_end / FIDELITY_FILE).exists() and not (without / FIDELITY_FILE).exists()
    shipped = load_file(str(without / "model.safetensors"))
    assert shipped.keys() == blend.keys() and all(torch.equal(shipped[k], blend[k]) for k in blend)
    up = upstep.load(without, device="cpu", dtype="float32")
    assert not up.has_strength
    ship_model.main(str(run), "tiny-x4", fidelity=str(tmp_path / "fid_run"), dest=str(tmp_path / "b1"),
                    blend=1.0, no_strength=True)
    assert not np.array_equal(_out(up), _out(upstep.load(tmp_path / "b1", device="cpu",
                                                                          dtype="float32")))
    with pytest.raises(UpstepError, match="strength"):
        up.upscale(_img(), strength=0.5)
    with pytest.raises(UpstepError, match="--no-strength needs --fidelity and --blend"):
        ship_model.main(str(run), "x", fidelity=str(tmp_path / "fid_run"), dest=str(tmp_path / "no"), no_strength=True)
    assert not (tmp_path / "no").exists()


def _records(path: Path, values: dict[float, list[float]]) -> None:
    path.mkdir(parents=True, exist_ok=True)
    with (path / "records.jsonl").open("w") as f:
        for s, vals in values.items():
            for i, v in enumerate(vals):
                f.write(json.dumps({"set": "x", "method": f"S={s:g}", "image": f"im{i}", "psnr": v}) + "\n")


def test_strength_curve_judges_monotonicity_by_paired_steps(tmp_path):
    """A step against the ends' direction breaks monotonicity only beyond 2 SE of its per-image differences."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("strength_curve", REPO / "benchmarks" / "strength_curve.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    base = np.array([30.0, 25.0, 28.0, 22.0])
    wobble = np.array([0.3, -0.25, 0.2, -0.2])  # mean +0.0125, SE about 0.13: noise
    _records(tmp_path / "a", {0: base, 0.5: base - 1, 1: base - 1 + wobble})  # falls, then flat within the noise
    mono = mod.monotonicity(tmp_path / "a", "x", [0, 0.5, 1], "psnr")
    assert mono["direction"] == "falls" and mono["steps"][1]["diff"] > 0 and mono["monotone_within_noise"]
    _records(tmp_path / "b", {0: base, 0.5: base + 0.5 + wobble / 10, 1: base - 2})  # rises first, clearly
    mono = mod.monotonicity(tmp_path / "b", "x", [0, 0.5, 1], "psnr")
    assert not mono["monotone_within_noise"] and mono["steps"][0]["verdict"] == "did not hold"
    _records(tmp_path / "c", {0: base, 0.5: base + 1 + wobble / 10, 1: base + 2})  # rises all the way
    mono = mod.monotonicity(tmp_path / "c", "x", [0, 0.5, 1], "psnr")
    assert mono["direction"] == "rises" and mono["monotone_within_noise"]


def test_any_strength_costs_one_network_evaluation(pair):
    """Network interpolation: at every S the U-Net runs exactly as often as at S = 1 (output
    interpolation would run it twice)."""
    up = upstep.load(pair[0], device="cpu", dtype="float32")
    calls = []
    up.model.unet.register_forward_hook(lambda *a: calls.append(1))
    for s in (None, 0.0, 0.3, 1.0):
        calls.clear()
        up.upscale(_img(), strength=s)
        assert len(calls) == 1


def test_ship_model_blend_moves_the_fine_tunes_weight_change_onto_the_fidelity_end(tmp_path, monkeypatch):
    """--blend B --tuned-from START ships θ_fid + B (θ_run − θ_START) (task arithmetic), and without
    --tuned-from the plain network interpolation θ_fid + B (θ_run − θ_fid)."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import ship_model

    start = make_tiny_model()
    save_model(start, tmp_path / "start")
    further = _perceptual_of(start, seed=2)          # the MSE stage trained on from START
    save_model(further, tmp_path / "further")
    run = tmp_path / "run"
    tuned = _perceptual_of(start, seed=3)            # the perceptual fine-tune of START
    _finished_run(run, tuned)

    def shipped(dest, **kw):
        ship_model.main(str(run), "tiny-x4", fidelity=str(tmp_path / "further"), dest=str(tmp_path / dest), blend=0.5, **kw)
        return load_file(str(tmp_path / dest / "model.safetensors"))

    s, f, r = start.state_dict(), further.state_dict(), tuned.state_dict()
    moved, plain = shipped("moved", tuned_from=str(tmp_path / "start")), shipped("plain")
    key = next(k for k in s if k.startswith("unet.") and s[k].is_floating_point() and s[k].numel() > 8)
    torch.testing.assert_close(moved[key].float(), (f[key] + 0.5 * (r[key] - s[key])).half().float(), rtol=2e-3, atol=1e-4)  # float16 rounding
    torch.testing.assert_close(plain[key].float(), (f[key] + 0.5 * (r[key] - f[key])).half().float(), rtol=2e-3, atol=1e-4)
    assert not torch.equal(moved[key], plain[key])
    cfg = json.loads((tmp_path / "moved" / "config.json").read_text())
    assert cfg["info"]["network_interpolation"]["run_tuned_from"] == str(tmp_path / "start")
    with pytest.raises(UpstepError, match="--tuned-from and --soup need --blend"):
        ship_model.main(str(run), "x", fidelity=str(tmp_path / "further"), dest=str(tmp_path / "no"),
                        tuned_from=str(tmp_path / "start"))
    # a START of another architecture, or none at all: one line naming it, and nothing written
    cfg = start.config()
    save_model(SRDiffusionModel.from_config({**cfg, "unet": {**cfg["unet"], "block_out_channels": [8, 16]}}),
               tmp_path / "other")
    for bad, words in ((tmp_path / "other", "other: its unet .* differs"), (tmp_path / "missing", "missing")):
        with pytest.raises(UpstepError, match=words):
            ship_model.main(str(run), "x", fidelity=str(tmp_path / "further"), dest=str(tmp_path / "no"),
                            blend=0.5, tuned_from=str(bad))
        assert not (tmp_path / "no").exists()


def test_ship_model_soup_averages_the_runs_weight_changes(tmp_path, monkeypatch):
    """--soup RUN2[@START2] ships θ_fid + B · mean_i (θ_run_i − θ_start_i); START2 defaults to the
    fidelity model; the members are recorded; a member of another architecture is refused."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import ship_model

    start = make_tiny_model()
    save_model(start, tmp_path / "start")
    fid = _perceptual_of(start, seed=2)
    save_model(fid, tmp_path / "fid")
    run, run2 = tmp_path / "run", tmp_path / "run2"
    a, b = _perceptual_of(start, seed=3), _perceptual_of(fid, seed=4)   # arms from START and from FID
    for folder, model in ((run, a), (run2, b)):
        _finished_run(folder, model)
    ship_model.main(str(run), "tiny-x4", fidelity=str(tmp_path / "fid"), dest=str(tmp_path / "soup"), blend=0.8,
                    tuned_from=str(tmp_path / "start"), soup=[str(run2)])
    got = load_file(str(tmp_path / "soup" / "model.safetensors"))
    s, f, ra, rb = start.state_dict(), fid.state_dict(), a.state_dict(), b.state_dict()
    key = next(k for k in s if k.startswith("unet.") and s[k].is_floating_point() and s[k].numel() > 8)
    want = f[key] + 0.8 * ((ra[key] - s[key]) + (rb[key] - f[key])) / 2
    torch.testing.assert_close(got[key].float(), want.half().float(), rtol=2e-3, atol=1e-4)  # float16 rounding
    soup = json.loads((tmp_path / "soup" / "config.json").read_text())["info"]["network_interpolation"]["soup"]
    assert soup == [{"run": str(run), "tuned_from": str(tmp_path / "start"), "weight": 0.5},
                    {"run": str(run2), "tuned_from": str(tmp_path / "fid"), "weight": 0.5}]
    # an explicit START2 (here START itself) is used for that member
    ship_model.main(str(run), "tiny-x4", fidelity=str(tmp_path / "fid"), dest=str(tmp_path / "soup2"), blend=0.8,
                    tuned_from=str(tmp_path / "start"), soup=[f"{run2}@{tmp_path / 'start'}"])
    want2 = f[key] + 0.8 * ((ra[key] - s[key]) + (rb[key] - s[key])) / 2
    got2 = load_file(str(tmp_path / "soup2" / "model.safetensors"))
    torch.testing.assert_close(got2[key].float(), want2.half().float(), rtol=2e-3, atol=1e-4)
    cfg = start.config()
    other = tmp_path / "other"
    save_model(SRDiffusionModel.from_config({**cfg, "unet": {**cfg["unet"], "block_out_channels": [8, 16]}}),
               other / "model")
    with pytest.raises(UpstepError, match="its unet .* differs"):
        ship_model.main(str(run), "x", fidelity=str(tmp_path / "fid"), dest=str(tmp_path / "no"), blend=0.8,
                        soup=[str(other)])
    assert not (tmp_path / "no").exists()
    with pytest.raises(UpstepError, match="--soup need --blend"):
        ship_model.main(str(run), "x", fidelity=str(tmp_path / "fid"), dest=str(tmp_path / "no"), soup=[str(run2)])


def test_ship_model_run_share_weights_the_run_against_the_mean_of_the_soup(tmp_path, monkeypatch):
    """--run-share F ships θ_fid + B (F Δ_run + (1 − F) mean_i Δ_soup_i): RUN keeps weight F however
    many --soup members there are; a share outside (0, 1), or without --soup, is refused."""
    monkeypatch.syspath_prepend(str(REPO / "scripts"))
    import ship_model

    fid = make_tiny_model()
    save_model(fid, tmp_path / "fid")
    runs = [tmp_path / f"run{i}" for i in range(3)]
    arms = [_perceptual_of(fid, seed=5 + i) for i in range(3)]
    for folder, model in zip(runs, arms):
        _finished_run(folder, model)
    ship_model.main(str(runs[0]), "tiny-x4", fidelity=str(tmp_path / "fid"), dest=str(tmp_path / "share"), blend=0.9,
                    soup=[str(r) for r in runs[1:]], run_share=0.5)
    got = load_file(str(tmp_path / "share" / "model.safetensors"))
    f, (r0, r1, r2) = fid.state_dict(), (a.state_dict() for a in arms)
    key = next(k for k in f if k.startswith("unet.") and f[k].is_floating_point() and f[k].numel() > 8)
    want = f[key] + 0.9 * (0.5 * (r0[key] - f[key]) + 0.25 * (r1[key] - f[key]) + 0.25 * (r2[key] - f[key]))
    torch.testing.assert_close(got[key].float(), want.half().float(), rtol=2e-3, atol=1e-4)  # float16 rounding
    uniform = f[key] + 0.9 * ((r0[key] - f[key]) + (r1[key] - f[key]) + (r2[key] - f[key])) / 3
    assert not torch.allclose(got[key].float(), uniform.half().float(), rtol=2e-3, atol=1e-4)
    soup = json.loads((tmp_path / "share" / "config.json").read_text())["info"]["network_interpolation"]["soup"]
    assert [m["weight"] for m in soup] == [0.5, 0.25, 0.25]
    for share, soup_runs in ((1.0, [str(runs[1])]), (0.0, [str(runs[1])]), (0.5, None)):
        with pytest.raises(UpstepError, match="--run-share needs --soup"):
            ship_model.main(str(runs[0]), "x", fidelity=str(tmp_path / "fid"), dest=str(tmp_path / "no"), blend=0.9,
                            soup=soup_runs, run_share=share)
        assert not (tmp_path / "no").exists()


def test_the_same_weights_and_metadata_make_the_same_file(tmp_path):
    """safetensors writes metadata keys in a hash-map order that varies; save_tensors packs them
    into one sorted key, so a shipped file (e.g. fidelity.safetensors) is byte-reproducible."""
    from upstep.model import save_tensors

    tensors = {"w": torch.arange(6.0).reshape(2, 3)}
    meta = {f"key{i}": f"value{i}" for i in range(8)}
    for i in range(6):
        save_tensors(tensors, tmp_path / f"{i}.safetensors", metadata=meta)
    blobs = {(tmp_path / f"{i}.safetensors").read_bytes() for i in range(6)}
    assert len(blobs) == 1
    torch.testing.assert_close(load_file(str(tmp_path / "0.safetensors"))["w"], tensors["w"])


def test_strength_curve_takes_a_shared_fidelity_end(tmp_path, tiny_package):
    """benchmarks/strength_curve.py runs a model whose fidelity end is a shipped model named in its
    config (large-x4) as it is, and says so; a model without any fidelity end is refused."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("strength_curve", REPO / "benchmarks" / "strength_curve.py")
    curve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(curve)
    pkg, run, ship_model = tiny_package
    ship_model.main(str(run), "tiny-x4", fidelity="tiny-fid", dest=str(pkg / "tiny-x4"), fidelity_shared=True)
    folder, source = curve._pair("tiny-x4", None, tmp_path / "tmp")
    assert folder == pkg / "tiny-x4" and "tiny-fid" in source
    with pytest.raises(SystemExit, match="has no fidelity end"):
        curve._pair("tiny-fid", None, tmp_path / "tmp")


def test_weight_changes_reports_the_cosines_of_the_runs_changes(tmp_path, monkeypatch):
    """benchmarks/weight_changes.py: cos(Δ, Δ) = 1, a change against its reverse is −1, an
    unrelated change lies between, the norms are ‖θ_run − θ_start‖; a member of another network is
    refused."""
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import weight_changes

    start = make_tiny_model()
    save_model(start, tmp_path / "start")
    a, b = _perceptual_of(start, seed=3), _perceptual_of(start, seed=4)
    _finished_run(tmp_path / "run_a", a)
    save_model(b, tmp_path / "b")
    st = str(tmp_path / "start")
    weight_changes.main(["--member", f"a={tmp_path / 'run_a'}@{st}", "--member", f"again={tmp_path / 'run_a'}@{st}",
                         "--member", f"reverse={st}@{tmp_path / 'run_a'}", "--member", f"b={tmp_path / 'b'}@{st}",
                         "--out", str(tmp_path / "out")])
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    cos = res["cosine"]
    assert cos["a"]["again"] == pytest.approx(1.0) and cos["a"]["reverse"] == pytest.approx(-1.0)
    assert -0.99 < cos["a"]["b"] < 0.99 and cos["a"]["b"] == pytest.approx(cos["b"]["a"])
    sa, s0 = a.state_dict(), start.state_dict()
    want = torch.cat([(sa[k].double() - s0[k].double()).flatten() for k in s0 if s0[k].is_floating_point()]).norm()
    assert res["norm"]["a"] == pytest.approx(float(want))
    assert "Command:" in (tmp_path / "out" / "results.md").read_text()
    cfg = start.config()
    save_model(SRDiffusionModel.from_config({**cfg, "unet": {**cfg["unet"], "block_out_channels": [8, 16]}}),
               tmp_path / "other")
    with pytest.raises(UpstepError, match="do not match"):
        weight_changes.main(["--member", f"{tmp_path / 'other'}@{st}", "--out", str(tmp_path / "no")])
