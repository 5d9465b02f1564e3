"""Train these arms, then evaluate them: the skeleton the ablation benchmarks share.

An ``Arm`` is a name, a function that trains it (or resumes an interrupted run, or reuses a
finished one) and returns its exported model folder, and the DDIM step counts to evaluate it at.
``run_arms`` trains every arm first, then evaluates each with ``upstep.evaluate.runner.evaluate``
into ``out/<arm>/``: per-image records (and patch-FID features) resume, and an arm whose model
changed since its records were written is re-evaluated from scratch. ``train_run`` refuses a run
folder made by another configuration, so a changed budget or weighting never silently reuses
old weights. ``mean_and_range`` is how seeds are reported: mean, min and max; ``compare`` judges a claim "arm A
beats arm B" against that seed spread. ``per_image`` and ``paired_claim`` judge a one-seed claim
against the test images instead: the mean per-image difference and its standard error (SE).

Every claim gets one of three verdicts (``verdict``), and ``claim_text`` writes it with its evidence:

* "held": the difference goes the claimed way and is beyond the noise — outside both arms' seed
  ranges, or, for one seed, more than 2 SE of the paired per-image difference;
* "did not hold": it goes the other way, beyond the noise in the same sense;
* "not distinguishable": inside the noise (the seed ranges overlap, or within 2 SE), or the noise
  was not measured at all (one seed and no per-image records, e.g. a set-level FID).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HELD, NOT_DISTINGUISHABLE, DID_NOT_HOLD = "held", "not distinguishable", "did not hold"


def verdict(better: bool, beyond_noise: bool) -> str:
    """The three-way verdict of a claim: its direction counts only beyond the noise."""
    return (HELD if better else DID_NOT_HOLD) if beyond_noise else NOT_DISTINGUISHABLE


@dataclass
class Arm:
    name: str
    train: Callable[[], Path]          # trains / resumes / reuses; returns the model folder
    steps: list[int] = field(default_factory=lambda: [1])


def check_run_config(cfg: dict, run_dir: Path, saved_name: str = "config.json") -> None:
    """SystemExit if ``run_dir`` holds a run made with a different config."""
    saved = Path(run_dir) / saved_name
    if saved.is_file() and json.loads(saved.read_text()) != json.loads(json.dumps(cfg)):
        raise SystemExit(f"{run_dir} was trained with a different config (budget, seed, weighting, crop...); "
                         "pass another --runs folder or delete it")


def train_run(cfg: dict, run_dir: Path) -> Path:
    """Train (or resume, or reuse) ``cfg`` in ``run_dir``; returns ``run_dir/model``."""
    from upstep.train.loop import train

    run_dir = Path(run_dir)
    check_run_config(cfg, run_dir)
    if not (run_dir / "model" / "model.safetensors").is_file():
        print(f"training {cfg.get('name', run_dir.name)} ({cfg['train']['steps']} steps) in {run_dir}", flush=True)
        train(cfg, run_dir, progress=False)
    return run_dir / "model"


def _sha1(path: Path) -> str:
    return hashlib.sha1(Path(path).read_bytes()).hexdigest()


def evaluate_model(folder: Path, steps: list[int], out: Path, **eval_kwargs) -> dict:
    """``runner.evaluate`` with its resumable records, restarted when the model file changed."""
    from upstep.evaluate.runner import evaluate

    out = Path(out)
    stamp, digest = out / "model_sha1.txt", _sha1(Path(folder) / "model.safetensors")
    fresh = not stamp.is_file() or stamp.read_text().strip() != digest
    out.mkdir(parents=True, exist_ok=True)
    eval_kwargs.setdefault("peers", "none")
    eval_kwargs.setdefault("progress", False)
    res = evaluate(str(folder), eval_kwargs.pop("sets"), steps, out, fresh=fresh, check_settings=False, **eval_kwargs)
    stamp.write_text(digest + "\n")
    res["steps"] = steps
    return res


def run_arms(arms: list[Arm], out: Path, *, train_only: bool = False, **eval_kwargs) -> dict[str, dict]:
    """Train every arm, then evaluate each into ``out/<name>``; {name: evaluation result}
    (empty with ``train_only``). ``eval_kwargs`` go to ``runner.evaluate`` (sets, metrics, limit,
    fid_patches, command...)."""
    folders = {a.name: a.train() for a in arms}
    if train_only:
        return {}
    return {a.name: evaluate_model(folders[a.name], a.steps, Path(out) / a.name, **dict(eval_kwargs))
            for a in arms}


def per_image(out: Path, set_name: str, method: str, metric: str) -> dict[str, float]:
    """{image: value} of ``metric`` for ``method`` (e.g. ``model@1``) on ``set_name``, read from the
    per-image records ``evaluate_model`` wrote in ``out``."""
    path = Path(out) / "records.jsonl"
    if not path.is_file():
        raise ValueError(f"{path}: no evaluation records; evaluate that arm first (run the benchmark without --train-only)")
    values = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            raise ValueError(f"{path}, line {n}: not a JSON record; delete the file to re-evaluate that arm") from None
        if r.get("set") == set_name and r.get("method") == method and metric in r:
            values[r["image"]] = float(r[metric])
    if not values:
        raise ValueError(f"{path} has no {metric} records of {method} on {set_name}")
    return values


def difference_of(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    """{image: b − a} over the images both hold: a per-image gain, to compare two gains with
    ``paired_claim``."""
    return {k: b[k] - a[k] for k in sorted(set(a) & set(b))}


def paired_claim(a: dict[str, float], b: dict[str, float], higher_is_better: bool) -> dict:
    """Is b better than a, image by image? {"diff": mean of b − a, "se": its standard error (sample
    sd of the per-image differences / sqrt n), "n", "better": the mean moved the claimed way
    (``higher_is_better`` is the claimed direction), "beyond_2se": |diff| > 2 SE, "verdict" (see the
    module docstring), "held": verdict is "held"}. Pairing by image removes the image-to-image spread
    both share. The SE says how far the mean would move on another draw of test images like these;
    it does not measure seed-to-seed (training) noise."""
    d = list(difference_of(a, b).values())
    n = len(d)
    if n < 2:
        raise ValueError(f"a paired difference needs at least 2 shared images, got {n}")
    mean = sum(d) / n
    se = (sum((x - mean) ** 2 for x in d) / (n - 1)) ** 0.5 / n ** 0.5
    better, beyond = (mean > 0 if higher_is_better else mean < 0), abs(mean) > 2 * se
    v = verdict(better, beyond)
    return {"diff": mean, "se": se, "n": n, "better": better, "beyond_2se": beyond, "verdict": v, "held": v == HELD}


def mean_and_range(values: list[float]) -> dict:
    """{"mean", "min", "max", "n"} of the finite values (NaN-free); the seed spread of a cell."""
    v = [float(x) for x in values if x == x]
    if not v:
        return {"mean": float("nan"), "min": float("nan"), "max": float("nan"), "n": 0}
    return {"mean": sum(v) / len(v), "min": min(v), "max": max(v), "n": len(v)}


def fmt_mean_range(r: dict, digits: int = 3) -> str:
    """'0.412' for one seed (or identical values), '0.412 (0.405–0.419)' for several; 'n/a' for none."""
    if not r["n"]:
        return "n/a"
    f = f"{{:.{digits}f}}"
    return f.format(r["mean"]) if r["n"] == 1 or r["min"] == r["max"] else f"{f.format(r['mean'])} ({f.format(r['min'])}–{f.format(r['max'])})"


def compare(base: dict, other: dict, higher_is_better: bool) -> dict:
    """Does ``other`` beat ``base``? Both are ``mean_and_range`` cells (a single-seed cell is a
    point). ``diff`` is other − base of the means; ``within_seed_range`` is true when the two
    seed ranges overlap (a point inside the other's range counts), i.e. the difference is not
    larger than the seed-to-seed noise; ``noise_measured`` is false when neither has 2 seeds;
    ``verdict`` (see the module docstring) is "held" or "did not hold" only when the noise was
    measured and the ranges are apart; ``held``: verdict is "held"."""
    better = other["mean"] > base["mean"] if higher_is_better else other["mean"] < base["mean"]
    measured = max(base["n"], other["n"]) > 1
    overlap = measured and not (other["max"] < base["min"] or base["max"] < other["min"])
    v = verdict(bool(better), measured and not overlap)
    return {"base": base["mean"], "other": other["mean"], "diff": other["mean"] - base["mean"], "better": bool(better),
            "within_seed_range": bool(overlap), "noise_measured": bool(measured),
            "seeds": max(base["n"], other["n"]), "verdict": v, "held": v == HELD}


def claim_text(c: dict, digits: int = 3) -> str:
    """A ``compare`` or ``paired_claim`` as its verdict with the evidence: 'held (-0.070, outside
    the 2-seed ranges)', 'not distinguishable (-0.001, within seed range)', 'not distinguishable
    (+0.50, 1 seed: noise not measured)', 'held (-0.054 ± 0.008 SE, 14 images; beyond 2 SE)'."""
    return f"{c['verdict']} ({evidence(c, digits)})"


def evidence(c: dict, digits: int = 3) -> str:
    """The difference and how it stands against the noise, for ``claim_text``."""
    if "se" in c:
        return (f"{fmt_diff(c['diff'], digits)} ± {c['se']:.{digits}f} SE, {c['n']} images; "
                f"{'beyond' if c['beyond_2se'] else 'within'} 2 SE")
    return f"{fmt_diff(c['diff'], digits)}, {noise_note(c)}"


def noise_note(comp: dict) -> str:
    """How a ``compare`` difference stands against the seed spread."""
    return ("1 seed: noise not measured" if not comp["noise_measured"] else
            "within seed range" if comp["within_seed_range"] else f"outside the {comp['seeds']}-seed ranges")


def fmt_diff(d: float, digits: int = 3) -> str:
    """Signed difference with ``digits`` decimals, more when it would otherwise print as +0.000."""
    while d and abs(d) < 0.5 * 10 ** -digits and digits < 6:
        digits += 1
    return f"{d:+.{digits}f}"
