"""The ablation benchmarks' shared skeleton (upstep.evaluate.ablation) and the YONOS sweep report."""
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import make_tiny_model
from upstep.degrade import bicubic
from upstep.evaluate.ablation import (Arm, claim_text, compare, difference_of, fmt_mean_range, mean_and_range,
                                     paired_claim, per_image, run_arms, train_run)
from upstep.model import save_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    for sub in ("tiny/hr", "tiny/lr"):
        (root / "eval" / sub).mkdir(parents=True)
    for i in range(2):
        hr = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(i)),
                                             size=(64, 64), mode="bicubic").clamp(0, 1)
        for t, sub in ((hr, "hr"), (bicubic(hr, 4), "lr")):
            a = (t[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            Image.fromarray(a).save(root / "eval/tiny" / sub / f"im{i}.png")
    return root


def test_compare_judges_a_claim_against_the_seed_spread():
    """Three verdicts: "held" / "did not hold" only when the seed ranges are apart; a difference
    inside them, or with the noise unmeasured (one seed each), is "not distinguishable"."""
    lo, hi = mean_and_range([0.30, 0.32]), mean_and_range([0.36, 0.40])
    c = compare(hi, lo, higher_is_better=False)                      # lower LPIPS, ranges apart
    assert c["better"] and not c["within_seed_range"] and c["diff"] == pytest.approx(-0.07)
    assert claim_text(c) == "held (-0.070, outside the 2-seed ranges)"
    c = compare(lo, hi, higher_is_better=False)
    assert claim_text(c) == "did not hold (+0.070, outside the 2-seed ranges)"
    point = mean_and_range([0.31])                                    # one seed inside the other's range
    c = compare(lo, mean_and_range([0.305]), higher_is_better=False)  # sign-right (lower), inside the range
    assert c["better"] and c["within_seed_range"] and not c["held"]
    assert claim_text(c) == "not distinguishable (-0.005, within seed range)"
    c = compare(mean_and_range([0.30, 0.34]), mean_and_range([0.31, 0.35]), higher_is_better=True)
    assert c["better"] and claim_text(c) == "not distinguishable (+0.010, within seed range)"
    c = compare(mean_and_range([0.30, 0.34]), mean_and_range([0.31, 0.35]), higher_is_better=False)
    assert claim_text(c) == "not distinguishable (+0.010, within seed range)"   # wrong way, inside: not "did not hold"
    assert compare(hi, point, higher_is_better=False)["verdict"] == "held"   # the point is below the whole range
    c = compare(mean_and_range([22.0]), mean_and_range([22.5]), higher_is_better=True)
    assert claim_text(c, 2) == "not distinguishable (+0.50, 1 seed: noise not measured)"
    c = compare(mean_and_range([0.5012]), mean_and_range([0.5008]), higher_is_better=False)
    assert claim_text(c) == "not distinguishable (-0.0004, 1 seed: noise not measured)"   # not "-0.000"


def test_paired_claim_is_the_mean_per_image_difference_with_its_standard_error():
    a = {"x": 1.0, "y": 5.0, "z": 9.0, "only_in_a": 100.0}
    shifted = {"x": 1.5, "y": 5.5, "z": 9.5}                         # the same shift on every image: no spread
    c = paired_claim(a, shifted, higher_is_better=True)
    assert c == {"diff": pytest.approx(0.5), "se": pytest.approx(0.0), "n": 3, "better": True, "beyond_2se": True,
                 "verdict": "held", "held": True}
    assert claim_text(c, digits=2) == "held (+0.50 ± 0.00 SE, 3 images; beyond 2 SE)"
    assert claim_text(paired_claim(a, shifted, higher_is_better=False), 2) == "did not hold (+0.50 ± 0.00 SE, 3 images; beyond 2 SE)"
    noisy = {"x": 2.0, "y": 4.0, "z": 10.5}                           # differences +1, -1, +1.5
    c = paired_claim(a, noisy, higher_is_better=True)                 # the claimed way, but within 2 SE
    assert c["diff"] == pytest.approx(0.5) and c["se"] == pytest.approx(np.std([1, -1, 1.5], ddof=1) / 3 ** 0.5)
    assert c["better"] and not c["beyond_2se"] and not c["held"] and c["verdict"] == "not distinguishable"
    assert claim_text(c, digits=2) == "not distinguishable (+0.50 ± 0.76 SE, 3 images; within 2 SE)"
    c = paired_claim(a, noisy, higher_is_better=False)                # the other way, also within 2 SE
    assert not c["better"] and claim_text(c).startswith("not distinguishable (+0.500 ± 0.764 SE")
    gain_a, gain_b = difference_of(a, shifted), difference_of(a, noisy)  # compare two gains image by image
    assert paired_claim(gain_a, gain_b, higher_is_better=True)["diff"] == pytest.approx(0.0)
    with pytest.raises(ValueError, match="at least 2"):
        paired_claim({"x": 1.0}, {"x": 2.0}, higher_is_better=True)


def test_per_image_reads_one_method_and_metric_from_the_records(tmp_path):
    recs = [{"set": "set14", "method": "model@1", "image": "a", "psnr": 20.0, "lpips": 0.3},
            {"set": "set14", "method": "model@4", "image": "a", "psnr": 19.0},
            {"set": "set5", "method": "model@1", "image": "b", "psnr": 30.0},
            {"set": "set14", "method": "model@1", "image": "c", "psnr": 22.0}]
    (tmp_path / "records.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    assert per_image(tmp_path, "set14", "model@1", "psnr") == {"a": 20.0, "c": 22.0}
    with pytest.raises(ValueError, match="no ssim records of model@1 on set14"):
        per_image(tmp_path, "set14", "model@1", "ssim")
    with pytest.raises(ValueError, match="no evaluation records; evaluate that arm first"):
        per_image(tmp_path / "never_evaluated", "set14", "model@1", "psnr")
    (tmp_path / "records.jsonl").write_text(json.dumps(recs[0]) + "\n{\"set\": \"set14\", \"meth")   # cut off mid-write
    with pytest.raises(ValueError, match="line 2: not a JSON record"):
        per_image(tmp_path, "set14", "model@1", "psnr")


def test_mean_and_range():
    assert mean_and_range([1.0, 3.0, float("nan"), 2.0]) == {"mean": 2.0, "min": 1.0, "max": 3.0, "n": 3}
    assert mean_and_range([])["n"] == 0
    assert fmt_mean_range(mean_and_range([0.5])) == "0.500"
    assert fmt_mean_range(mean_and_range([0.4, 0.6]), 2) == "0.50 (0.40–0.60)"


def test_run_arms_trains_then_evaluates_resumes_and_redoes_a_changed_model(tmp_path, data_root):
    calls = []

    def trainer(name, seed):
        def train():
            calls.append(name)
            return save_model(make_tiny_model(seed=seed), tmp_path / name)
        return train

    kw = {"sets": ["tiny"], "metrics": ["psnr"], "data_root": str(data_root)}
    arms = [Arm("a", trainer("a", 0), [1, 2]), Arm("b", trainer("b", 1), [1])]
    res = run_arms(arms, tmp_path / "out", **kw)
    assert calls == ["a", "b"]  # every arm trained before any evaluation
    assert set(res["a"]["sets"]["tiny"]["methods"]) == {"model@1", "model@2", "bicubic"}
    assert res["a"]["steps"] == [1, 2]
    rec = tmp_path / "out" / "a" / "records.jsonl"
    n = len(rec.read_text().splitlines())
    assert n == 2 * 3
    run_arms(arms[:1], tmp_path / "out", **kw)
    assert len(rec.read_text().splitlines()) == n  # resumed: nothing measured again
    # a changed model (same folder) is re-evaluated from scratch, not mixed with old records
    arms[0].train = trainer("a", 5)
    res2 = run_arms(arms[:1], tmp_path / "out", **kw)
    assert len(rec.read_text().splitlines()) == n
    assert res2["a"]["sets"]["tiny"]["methods"]["model@1"]["psnr"] != res["a"]["sets"]["tiny"]["methods"]["model@1"]["psnr"]
    assert run_arms(arms, tmp_path / "out", train_only=True, **kw) == {}


def test_train_run_refuses_a_folder_trained_with_another_config(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"train": {"steps": 10}, "seed": 0}))
    with pytest.raises(SystemExit, match="different config"):
        train_run({"train": {"steps": 10}, "seed": 1}, run)


def _benchmark(name):
    if str(ROOT / "benchmarks") not in sys.path:   # as when run as a script: the runner imports its report module
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_colearn_claims_compare_each_pair_of_rows_per_column():
    c = _benchmark("colearn_ablation")
    cols = [("realset65", "niqe"), ("imagenet_valsr_resshift", "psnr")]
    niqe = {"0_distill_pure": [5.5, 5.6], "1_distill": [5.3, 5.4], "2_distill_hr": [5.0, 5.1],
            "3_distill_lr_conv": [5.35, 5.5], "4_all_conv": [6.0, 6.2], "5_all_diffusion": [5.2, 5.8],
            "teacher@1": [6.3], f"teacher@{c.T_STEPS}": [5.1]}
    cells = {row: {"realset65/niqe": mean_and_range(v),
                   "imagenet_valsr_resshift/psnr": mean_and_range([22.0 + 0.1 * i for i in range(len(v))])}
             for row, v in niqe.items()}
    v = c.claims(cells, cols)
    assert {name for name, _, _ in c.CLAIMS} == set(v)
    hr = v["each loss path helps: + D_H"]["realset65/niqe"]
    assert hr["better"] and not hr["within_seed_range"] and hr["diff"] == pytest.approx(-0.3)
    lr = v["each loss path helps: + D_L (conv G)"]["realset65/niqe"]
    assert not lr["better"] and lr["within_seed_range"]                  # 5.425 vs 5.35, ranges overlap
    assert not v["all three beat distillation alone (conv G)"]["realset65/niqe"]["better"]
    assert v["L_denoise helps (distill vs pure distillation)"]["realset65/niqe"]["better"]
    t = v[f"full student (diffusion G) vs the {c.T_STEPS}-step teacher"]["realset65/niqe"]
    assert not t["better"] and not t["within_seed_range"]               # 5.5 vs 5.1: the point is outside 5.2–5.8
    assert v["full student (diffusion G) vs the teacher at 1 step"]["realset65/niqe"]["better"]
    assert v["diffusion G beats conv G"]["imagenet_valsr_resshift/psnr"]["diff"] == pytest.approx(0.0)


def _yonos():
    """The YONOS report module (its runner, ``yonos_ablation``, trains and evaluates)."""
    return _benchmark("yonos_report")


def test_yonos_runner_loads_with_its_report_module():
    runner = _benchmark("yonos_ablation")
    assert runner.write_single.__module__ == "yonos_report" and callable(runner.main)


def test_table4_claims_pair_each_arm_with_its_fine_tuned_decoder_image_by_image(tmp_path):
    y = _yonos()
    images = ["a", "b", "c", "d"]
    lpips = {"direct_x4": [0.40, 0.42, 0.38, 0.41], "distilled_x4": [0.41, 0.44, 0.40, 0.42],
             "direct_x4+ft_decoder": [0.35, 0.37, 0.33, 0.36],           # exactly -0.05 on every image
             "distilled_x4+ft_decoder": [0.33, 0.36, 0.34, 0.34]}        # -0.08, -0.08, -0.06, -0.08
    for arm, values in lpips.items():
        (tmp_path / arm).mkdir()
        (tmp_path / arm / "records.jsonl").write_text("\n".join(
            json.dumps({"set": "set14", "method": "model@1", "image": im, "lpips": v, "psnr": 25.0 + v})
            for im, v in zip(images, values)))
    with open(tmp_path / "direct_x4" / "records.jsonl", "a") as f:          # the many-step baseline
        f.write("".join("\n" + json.dumps({"set": "set14", "method": "model@200", "image": im, "lpips": 0.30,
                                           "psnr": 24.0}) for im in images))
    results = {a: {"scale": 4} for a in lpips}
    claims = y.table4_claims(tmp_path, results, ["set14"], [0.5], many=200)["set14"]["x4"]
    get = {(c["claim"], c["metric"]): c for c in claims}
    dist = get[("at 1 step, distilled beats direct", "lpips")]
    assert dist["diff"] == pytest.approx(0.015) and not dist["held"]
    helps = get[("fine-tuning the decoder (GAN weight 0.5) helps direct_x4", "lpips")]
    assert helps["diff"] == pytest.approx(-0.05) and helps["held"] and helps["beyond_2se"]
    assert not get[("fine-tuning the decoder (GAN weight 0.5) helps direct_x4", "psnr")]["held"]  # PSNR = 25 + LPIPS
    more = get[("... (GAN weight 0.5) helps distilled more than direct", "lpips")]
    assert more["diff"] == pytest.approx(-0.025) and more["held"]
    both = get[("distilled + fine-tuned decoder (GAN weight 0.5) beats direct + fine-tuned decoder", "lpips")]
    assert both["diff"] == pytest.approx(-0.01) and both["better"] and not both["beyond_2se"]   # -0.02, -0.01, +0.01, -0.02
    assert both["verdict"] == "not distinguishable" and not both["held"]
    assert both["text"] == "not distinguishable (-0.010 ± 0.007 SE, 4 images; within 2 SE)"
    headline = "distilled + fine-tuned decoder (GAN weight 0.5), 1 step, beats direct at 200 steps"
    assert get[(headline, "lpips")]["diff"] == pytest.approx(0.0425) and not get[(headline, "lpips")]["held"]
    assert get[(headline, "psnr")]["diff"] == pytest.approx(25.3425 - 24.0) and get[(headline, "psnr")]["held"]
    md = "\n".join(y.table4_claims_md({"set14": {"x4": claims}}))
    assert ("| at 1 step, distilled beats direct | held (+0.015 ± 0.003 SE, 4 images; beyond 2 SE) | "
            "did not hold (+0.015 ± 0.003 SE, 4 images; beyond 2 SE) |") in md


def _cell(budget, seed, lp_direct, lp_dist, psnr_direct, psnr_dist):
    def arm(scale, lp, ps):
        m = {f"model@{n}": {"psnr": ps[i], "lpips": lp[i]} for i, n in enumerate((1, 4))}
        m["bicubic"] = {"psnr": 26.0, "lpips": 0.44}
        return {"scale": scale, "steps": [1, 4], "sets": {"set14": {"methods": m}}, "fid": None}
    return {"budget": budget, "seed": seed, "arms": {"direct_x4": arm(4, lp_direct, psnr_direct),
                                                     "distilled_x4": arm(4, lp_dist, psnr_dist)}}


def _sweep_text(y, summary, **extra):
    """The sweep report's markdown for a summary, with placeholder provenance."""
    return y.sweep_markdown({"weighting": y.weighting(None), "summary": summary,
                             "claims": y.sweep_claims(summary, ["set14"]), "command": "x", "date": "d",
                             "machine": {"cpu": "c", "cpu_count": 2, "torch": "t", "platform": "p"}, **extra},
                            ["set14"], 7.5, None)


def test_sweep_report_states_each_claim_per_budget_with_the_seed_range(tmp_path):
    y = _yonos()
    cells = {  # B=1000: distilled worse at 1 step, direct worse with steps; B=4000 (2 seeds): the opposite
        "B1000_s0": _cell(1000, 0, [0.30, 0.40], [0.32, 0.41], [26.7, 24.9], [26.5, 24.8]),
        "B4000_s0": _cell(4000, 0, [0.30, 0.25], [0.27, 0.24], [27.0, 25.0], [27.2, 25.1]),
        "B4000_s1": _cell(4000, 1, [0.31, 0.26], [0.28, 0.25], [27.1, 25.1], [27.0, 25.0]),
    }
    summary = y.summarise_sweep(cells, ["set14"])
    d = summary["set14"]["direct_x4"]["4000"]
    assert d["seeds"] == [0, 1] and d["steps"]["1"]["lpips"] == pytest.approx(
        {"mean": 0.305, "min": 0.30, "max": 0.31, "n": 2})
    claims = y.sweep_claims(summary, ["set14"])["set14"]["x4"]
    assert not claims["1000"]["distilled_beats_direct_at_1_step"]["lpips"]["better"]
    assert not claims["1000"]["direct_improves_in_lpips_with_steps"]
    c = claims["4000"]["distilled_beats_direct_at_1_step"]
    assert c["lpips"]["better"] and not c["lpips"]["within_seed_range"]   # 0.275 vs 0.305, ranges apart
    assert c["psnr"]["better"] and c["psnr"]["within_seed_range"]          # 27.1 vs 27.05, ranges overlap
    assert c["lpips"]["diff"] == pytest.approx(-0.03)
    assert claims["4000"]["direct_improves_in_lpips_with_steps"] and claims["4000"]["direct_best_lpips_steps"] == 4
    text = _sweep_text(y, summary)
    assert "unclipped" in text and "0.305 (0.300–0.310)" in text and "did not hold" in text
    assert "B=1000: -0.020, B=4000: +0.030; from the smallest to the largest budget it grows" in text
    assert "first improves in LPIPS with more DDIM steps at B=4000 (-0.050, outside the 2-seed ranges)." in text
    assert "yes: held (-0.050, outside the 2-seed ranges) | 4 |" in text and "| no | 1 |" in text  # B=4000, B=1000
    assert "1 seed: noise not measured" in text and "within seed range" in text and "outside the 2-seed ranges" in text
    assert "grows." in text                                              # two budgets: monotone
    assert "folded in" not in text
    text = _sweep_text(y, summary, cells=cells, cells_evaluated_now=["B4000_s1"])
    assert "evaluated by this command: B4000_s1; folded in from earlier runs of this benchmark: B1000_s0, B4000_s0" in text
    three = dict(cells, B16000_s0=_cell(16000, 0, [0.29, 0.24], [0.28, 0.23], [27.3, 25.2], [27.2, 25.1]))
    s3 = y.summarise_sweep(three, ["set14"])
    text = _sweep_text(y, s3)
    assert ("B=1000: -0.020, B=4000: +0.030, B=16000: +0.010; from the smallest to the largest budget it grows, "
            "but not at every budget step.") in text
    only_1000 = y.summarise_sweep({"B1000_s0": cells["B1000_s0"]}, ["set14"])
    text = _sweep_text(y, only_1000)
    assert "does not improve in LPIPS with more DDIM steps at any budget up to B=1000" in text
    y.plot_sweep(summary, ["set14"], tmp_path / "sweep.png")
    assert (tmp_path / "sweep.png").stat().st_size > 0


def test_sweep_judges_a_one_seed_cell_on_its_per_image_records(tmp_path):
    """With one seed the sweep pairs the two arms image by image: a sign-right LPIPS difference
    within 2 SE reads "not distinguishable", not "held"; FID (one figure per set) stays unmeasured."""
    y = _yonos()
    cells = {"B1000_s0": _cell(1000, 0, [0.30, 0.40], [0.29, 0.41], [26.7, 24.9], [26.5, 24.8])}
    lpips = {"direct_x4": [0.30, 0.28, 0.32, 0.30], "distilled_x4": [0.27, 0.30, 0.29, 0.30]}   # -0.03, +0.02, -0.03, 0
    psnr = {"direct_x4": [26.7, 26.6, 26.8, 26.7], "distilled_x4": [26.5, 26.4, 26.6, 26.6]}   # -0.2, -0.2, -0.2, -0.1
    for arm in lpips:
        (tmp_path / "B1000_s0" / arm).mkdir(parents=True)
        (tmp_path / "B1000_s0" / arm / "records.jsonl").write_text("\n".join(
            json.dumps({"set": "set14", "method": "model@1", "image": f"im{i}", "lpips": lp, "psnr": ps})
            for i, (lp, ps) in enumerate(zip(lpips[arm], psnr[arm]))))
    summary = y.summarise_sweep(cells, ["set14"])
    c = y.sweep_claims(summary, ["set14"], tmp_path)["set14"]["x4"]["1000"]["distilled_beats_direct_at_1_step"]
    assert c["lpips"]["better"] and c["lpips"]["n"] == 4 and c["lpips"]["verdict"] == "not distinguishable"
    assert claim_text(c["lpips"]) == "not distinguishable (-0.010 ± 0.012 SE, 4 images; within 2 SE)"
    assert c["psnr"]["verdict"] == "did not hold" and c["psnr"]["beyond_2se"]
    without_records = y.sweep_claims(summary, ["set14"])["set14"]["x4"]["1000"]["distilled_beats_direct_at_1_step"]
    assert claim_text(without_records["lpips"]) == "not distinguishable (-0.010, 1 seed: noise not measured)"


def _regenerated(folder: Path, tmp_path: Path, regenerate, name: str) -> tuple[str, str]:
    """(committed report, the report regenerated from a copy of its committed records), each
    without the line that names a regeneration."""
    import shutil

    copy = tmp_path / folder.name
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("*.png"))
    regenerate(copy)

    def strip(text: str) -> str:
        return "\n".join(l for l in text.splitlines() if not l.startswith("Report regenerated from these records"))
    return strip((folder / name).read_text()), strip((copy / name).read_text())


@pytest.mark.parametrize("folder, name", [("yonos_kl16k", "results.md"), ("yonos_sweep", "sweep.md")])
def test_committed_yonos_reports_are_their_records_judged_by_the_current_rule(tmp_path, folder, name):
    committed, regenerated = _regenerated(ROOT / "docs/results" / folder, tmp_path, _yonos().regenerate, name)
    assert committed == regenerated


def test_committed_colearn_report_is_its_records_judged_by_the_current_rule(tmp_path):
    committed, regenerated = _regenerated(ROOT / "docs/results/colearn_seeds", tmp_path,
                                          _benchmark("colearn_ablation").regenerate, "results.md")
    assert committed == regenerated and "not distinguishable (-0.001, within seed range)" in committed
