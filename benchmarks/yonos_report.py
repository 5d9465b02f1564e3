"""The YONOS-SR ablation's report: the markdown, claims and plots of ``benchmarks/yonos_ablation.py``
(which trains and evaluates the arms), written from its ``results.json`` / ``sweep.json`` and the
per-image evaluation records beside them.

    python benchmarks/yonos_report.py --out docs/results/yonos_kl16k      one budget: results.md, fig3.png
    python benchmarks/yonos_report.py --out docs/results/yonos_sweep      sweep: sweep.md, sweep.png

rewrites a committed report from its committed records without training or evaluating anything
(e.g. after a change to how claims are judged, ``upstep.evaluate.ablation``); the results file keeps
the command and date of its measurement, and gains a line naming the regeneration.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from upstep.evaluate.ablation import (claim_text, compare, difference_of, evidence, fmt_diff, fmt_mean_range,
                                     mean_and_range, paired_claim, per_image)
from upstep.evaluate.report import md_table, regenerated_md


GAN_WEIGHT = 0.5  # the latent-diffusion autoencoder's disc_weight, the paper's decoder loss


def _gan_suffix(disc_weight: float) -> str:
    return "" if disc_weight == GAN_WEIGHT else f"_gan{disc_weight:g}"


def ft_name(arm: str, disc_weight: float) -> str:
    """Arm name of ``arm`` with its decoder fine-tuned at GAN weight ``disc_weight``."""
    return f"{arm}+ft_decoder{_gan_suffix(disc_weight)}"



def weighting(omega_max: float | None) -> dict:
    """The eq. 2 weighting actually used, for the results' metadata."""
    from upstep.diffusion.schedule import omega_clip_time

    t = omega_clip_time(omega_max)
    text = ("omega = 1 + SNR (YONOS eq. 2), unclipped" if omega_max is None else
            f"omega = 1 + SNR clipped at {omega_max:g}: every t < {t:.3g} ({100 * t:.1f} % of uniform training t) "
            f"weighted {omega_max:g} instead of 1 / sin^2(pi t / 2)")
    return {"omega_max": omega_max, "clipped_below_t": t, "text": text}



def _fid_label(result: dict, s: str) -> str:
    return ((result.get("fid") or {}).get(s) or {}).get("label", "FID")



METRICS = ("psnr", "lpips", "fid")


def summarise_sweep(cells: dict, sets: list[str]) -> dict:
    """{set: {arm: {budget: {"seeds": [...], "steps": {n: {metric: mean_and_range}}, "bicubic": ...}}}}."""
    out: dict = {}
    for s in sets:
        per: dict = {}
        for c in cells.values():
            for arm, r in c["arms"].items():
                if s not in r["sets"]:
                    continue
                m = r["sets"][s]["methods"]
                d = per.setdefault(arm, {}).setdefault(str(c["budget"]), {"scale": r["scale"], "seeds": [], "raw": {}})
                d["seeds"].append(c["seed"])
                d["fid_label"] = _fid_label(r, s)
                for n in r["steps"]:
                    for k in METRICS:
                        d["raw"].setdefault(str(n), {}).setdefault(k, []).append(m[f"model@{n}"].get(k, float("nan")))
                for k in METRICS:
                    d["raw"].setdefault("bicubic", {}).setdefault(k, []).append(m["bicubic"].get(k, float("nan")))
        for arm, by_b in per.items():
            for d in by_b.values():
                d["steps"] = {n: {k: mean_and_range(v) for k, v in ms.items()} for n, ms in d.pop("raw").items()}
        out[s] = per
    return out


def sweep_claims(summary: dict, sets: list[str], out_dir: Path | None = None) -> dict:
    """Per set, scale and budget: (a) distilled vs direct at 1 step, (b) whether the direct model
    improves in LPIPS with more steps, and at which step count it is best. Each is a ``compare`` of
    the seed means against the seed ranges or, for a one-seed cell whose per-image records are in
    ``out_dir/B{B}_s{seed}/<arm>``, a ``paired_claim`` against 2 SE over the images (FID is a
    set-level figure: one seed leaves its noise unmeasured)."""
    from upstep.metrics import HIGHER_IS_BETTER

    def judge(by_b: dict, arm_a: str, n_a: int, arm_b: str, n_b: int, b: str, k: str) -> dict:
        a, o = by_b[arm_a][b], by_b[arm_b][b]
        seeds = sorted(set(a["seeds"]) | set(o["seeds"]))
        if out_dir is not None and len(seeds) == 1 and k != "fid":
            cell = Path(out_dir) / f"B{b}_s{seeds[0]}"
            try:
                return paired_claim(per_image(cell / arm_a, s, f"model@{n_a}", k),
                                    per_image(cell / arm_b, s, f"model@{n_b}", k), HIGHER_IS_BETTER[k])
            except ValueError:   # no records for this cell: judged on the seed means (noise not measured)
                pass
        return compare(a["steps"][str(n_a)][k], o["steps"][str(n_b)][k], HIGHER_IS_BETTER[k])

    out: dict = {}
    for s in sets:
        for scale in (4, 8):
            direct, dist = summary[s].get(f"direct_x{scale}", {}), summary[s].get(f"distilled_x{scale}", {})
            for b in sorted(set(direct) & set(dist), key=int):
                one_d, one_s = direct[b]["steps"]["1"], dist[b]["steps"]["1"]
                d_arm, s_arm = f"direct_x{scale}", f"distilled_x{scale}"
                comp = {k: judge(summary[s], d_arm, 1, s_arm, 1, b, k)
                        for k in METRICS if one_d[k]["n"] and one_s[k]["n"]}
                lp = {int(n): v["lpips"]["mean"] for n, v in direct[b]["steps"].items() if n != "bicubic"}
                best = min(lp, key=lambda n: lp[n]) if lp else None
                # the direct model's best step count against its own 1 step, judged against the noise
                more = judge(summary[s], d_arm, 1, d_arm, best, b, "lpips") if best is not None and best > 1 else None
                out.setdefault(s, {}).setdefault(f"x{scale}", {})[b] = {
                    "distilled_beats_direct_at_1_step": comp,
                    "direct_improves_in_lpips_with_steps": bool(more and more["held"]),
                    "direct_best_lpips_steps": best, "direct_best_vs_1_step_lpips": more}
    return out


def sweep_markdown(report: dict, sets: list[str], scaling: float, autoencoder) -> str:
    from upstep.evaluate.report import provenance_md

    latent = f"the KL autoencoder of `{autoencoder}`" if autoencoder else "the pixel-unshuffle x4 latent"
    lines = ["# YONOS-SR budget sweep: direct vs scale-distilled, quality vs DDIM steps", "", provenance_md(report), "",
             *regenerated_md(report),
             f"Latent: {latent}, scaling {scaling:.4g}. Weighting: {report['weighting']['text']}. x4 arms: 2B optimiser "
             "steps in total (direct x4, or x2 B + distilled x4 B); x8 arms: 3B (see the benchmark's docstring). "
             "Cells: mean over training seeds, with the (min–max) range when there are several. PSNR-Y falls with "
             "more DDIM steps even for a perfect sampler (a posterior sample has about twice the MSE of the "
             "posterior mean a one-step model predicts, about -3 dB): judge steps by LPIPS and FID.", ""]
    folded = sorted(set(report.get("cells", {})) - set(report.get("cells_evaluated_now", report.get("cells", {}))))
    if folded:
        lines += [f"Cells evaluated by this command: {', '.join(report['cells_evaluated_now'])}; folded in from earlier "
                  f"runs of this benchmark: {', '.join(folded)} (each arm's `results.md` in `<cell>/<arm>/` gives "
                  "its own command and date).", ""]
    names = {"psnr": "PSNR-Y ↑", "lpips": "LPIPS ↓", "fid": "FID ↓"}
    for s in sets:
        per = report["summary"][s]
        for scale in (4, 8):
            arms = [a for a in per if next(iter(per[a].values()))["scale"] == scale]
            if not arms:
                continue
            steps = sorted({int(n) for a in arms for d in per[a].values() for n in d["steps"] if n != "bicubic"})
            for k in METRICS:
                rows = []
                for a in arms:
                    for b in sorted(per[a], key=int):
                        d = per[a][b]
                        rows.append([a, b, len(d["seeds"]), *(fmt_mean_range(d["steps"][str(n)][k]) if str(n) in d["steps"]
                                                             else "" for n in steps)])
                bic = per[arms[0]][sorted(per[arms[0]], key=int)[0]]["steps"]["bicubic"][k]
                if not bic["n"] and not any(r[3:] != ["n/a"] * len(steps) for r in rows):
                    continue
                label = names[k] if k != "fid" else f"{per[arms[0]][sorted(per[arms[0]], key=int)[0]]['fid_label']} ↓"
                lines += [f"## {s}, x{scale}: {label} vs DDIM steps (bicubic {fmt_mean_range(bic)})", "",
                          md_table(["arm", "budget B", "seeds", *(f"{n} step{'s' * (n > 1)}" for n in steps)], rows), ""]
    lines += ["## Claims per budget", ""]
    for s in sets:
        for sc, by_b in report["claims"].get(s, {}).items():
            rows = []
            for b, c in by_b.items():
                comp = c["distilled_beats_direct_at_1_step"]
                cells_ = [claim_text(comp[k]) if k in comp else "n/a" for k in METRICS]
                more = c.get("direct_best_vs_1_step_lpips")
                improves = ("yes: " if c["direct_improves_in_lpips_with_steps"] else "no: ") + claim_text(more) if more else "no"
                rows.append([b, *cells_, improves, c["direct_best_lpips_steps"]])
            lines += [f"### {s}, {sc}", "", "Distilled beats direct at 1 step (distilled − direct; PSNR higher, "
                      "LPIPS/FID lower is better); the standard (direct) model improves in LPIPS with more DDIM steps "
                      "(its best step count − its 1 step). \"held\" / \"did not hold\" only beyond the noise: outside "
                      "both arms' seed ranges or, with one seed, beyond 2 SE of the mean per-image difference; "
                      "otherwise \"not distinguishable\" (FID is one figure per set: with one seed its noise is not "
                      "measured).", "",
                      md_table(["budget B", "PSNR-Y", "LPIPS", "FID", "direct improves with steps", "direct's best LPIPS at"],
                               rows), ""]
            first = next((b for b, c in by_b.items() if c["direct_improves_in_lpips_with_steps"]), None)
            gain = by_b[first]["direct_best_vs_1_step_lpips"] if first else None
            lines += [f"The standard (direct) model first improves in LPIPS with more DDIM steps at B={first} "
                      f"({evidence(gain)})." if first
                      else f"The standard (direct) model does not improve in LPIPS with more DDIM steps at any budget "
                           f"up to B={list(by_b)[-1]}.", ""]
            gaps = [(b, c["distilled_beats_direct_at_1_step"]["lpips"]["diff"])
                    for b, c in by_b.items() if "lpips" in c["distilled_beats_direct_at_1_step"]]
            if len(gaps) > 1:  # issue 11: does distillation's 1-step advantage grow or shrink with budget?
                trend = "grows" if -gaps[-1][1] > -gaps[0][1] else "shrinks"
                grew = [-g1 > -g0 for (_, g0), (_, g1) in zip(gaps, gaps[1:])]  # per consecutive budget pair
                monotone = all(grew) or not any(grew)
                lines += ["1-step LPIPS advantage of distillation (direct − distilled) by budget: "
                          + ", ".join(f"B={b}: {fmt_diff(-g)}" for b, g in gaps)
                          + f"; from the smallest to the largest budget it {trend}"
                          + ("." if monotone else ", but not at every budget step."), ""]
    return "\n".join(lines)


def plot_sweep(summary: dict, sets: list[str], path: Path) -> None:
    """LPIPS and FID vs DDIM steps: one line per arm and budget (seed mean, range as error bars)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(s, sc, k) for s in sets for sc in (4, 8) for k in ("lpips", "fid")
              if any(d["scale"] == sc and any(n != "bicubic" and v[k]["n"] for n, v in d["steps"].items())
                     for by_b in summary[s].values() for d in by_b.values())]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False)
    for ax, (s, sc, k) in zip(axes[0], panels):
        budgets = sorted({b for d in summary[s].values() for b in d}, key=int)
        for a, by_b in summary[s].items():
            for b, d in by_b.items():
                if d["scale"] != sc:
                    continue
                ns = sorted(int(n) for n in d["steps"] if n != "bicubic" and d["steps"][n][k]["n"])
                if not ns:
                    continue
                r = [d["steps"][str(n)][k] for n in ns]
                mean = [x["mean"] for x in r]
                err = [[x["mean"] - x["min"] for x in r], [x["max"] - x["mean"] for x in r]]
                shade = 0.35 + 0.65 * (budgets.index(b) + 1) / len(budgets)
                color = (0.1, 0.3, shade) if a.startswith("direct") else (shade, 0.35, 0.1)
                ax.errorbar(ns, mean, yerr=err, marker="o" if a.startswith("direct") else "s", ms=3, capsize=2,
                            color=color, label=f"{a} B={b}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("DDIM steps")
        ax.set_title(f"{s} x{sc}: {'LPIPS' if k == 'lpips' else 'FID'} ↓", fontsize=9)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cols(results: dict) -> list[str]:
    return ["psnr", "ssim", "lpips"] + (["fid"] if any(r.get("fid") for r in results.values()) else [])


def _header(results: dict, s: str) -> list[str]:
    names = {"psnr": "PSNR-Y ↑", "ssim": "SSIM-Y ↑", "lpips": "LPIPS ↓"}
    return [names.get(c) or f"{_fid_label(next(iter(results.values())), s)} ↓" for c in _cols(results)]


def _cell(results: dict, arm: str, s: str, steps: int = 1, method: str | None = None) -> list:
    m = results[arm]["sets"][s]["methods"][method or f"model@{steps}"]
    return [m.get(c, float("nan")) for c in _cols(results)]


def table4(results: dict, sets: list[str], decoder_steps: int, gan_weights: list[float]) -> list[str]:
    """YONOS Table 4: {original, fine-tuned decoder} x {no distillation, scale distillation}, 1 step."""
    lines = ["## Table 4: decoder fine-tuning x scale distillation (1 DDIM step)", "",
             f"Fine-tuned decoder: {decoder_steps} steps of `decoder_finetune` (L1 + EfficientNet-Lite0 feature loss (not LPIPS-alex, the metric) + GAN weight x patch-GAN "
             "loss with the adaptive weight of VQGAN eq. 7; 0.5 is the latent-diffusion autoencoder's) on each arm's own "
             "one-step latents, U-Net and encoder frozen.", ""]
    for s in sets:
        rows = []
        for scale in sorted({r["scale"] for r in results.values()}):
            for dist, arm in (("no", f"direct_x{scale}"), ("yes", f"distilled_x{scale}")):
                rows.append([f"x{scale}", dist, "original", *_cell(results, arm, s)])
                for w in gan_weights:
                    rows.append([f"x{scale}", dist, f"fine-tuned, GAN weight {w:g}", *_cell(results, ft_name(arm, w), s)])
            rows.append([f"x{scale}", "bicubic", "-", *_cell(results, f"direct_x{scale}", s, method="bicubic")])
        lines += [f"### {s}", "", md_table(["scale", "distillation", "decoder", *_header(results, s)], rows), ""]
    return lines


def table4_claims(out: Path, results: dict, sets: list[str], gan_weights: list[float], many: int = 0) -> dict:
    """The design's Table 4 claims at 1 step (and with ``many`` the headline: 1-step distilled +
    fine-tuned decoder vs the direct model at ``many`` steps), per set and scale, each a
    ``paired_claim`` (b − a with its standard error over the test images: one seed, so the images
    are the only noise measured here): {set: {"x4": [{"claim", "metric", "diff", "se", "n", "held",
    "beyond_2se", "text"}]}}."""
    claims: dict = {}
    for s in sets:
        for scale in sorted({r["scale"] for r in results.values()}):
            direct, dist = f"direct_x{scale}", f"distilled_x{scale}"
            rows = []
            for metric, higher in (("psnr", True), ("lpips", False)):   # the claimed direction of b − a

                def v(arm: str, steps: int = 1) -> dict[str, float]:
                    return per_image(out / arm, s, f"model@{steps}", metric)

                pairs = [("at 1 step, distilled beats direct", v(direct), v(dist))]
                for w in gan_weights:
                    ft_direct, ft_dist = v(ft_name(direct, w)), v(ft_name(dist, w))
                    pairs += [(f"fine-tuning the decoder (GAN weight {w:g}) helps {direct}", v(direct), ft_direct),
                              (f"fine-tuning the decoder (GAN weight {w:g}) helps {dist}", v(dist), ft_dist),
                              (f"... (GAN weight {w:g}) helps distilled more than direct",
                               difference_of(v(direct), ft_direct), difference_of(v(dist), ft_dist)),
                              (f"distilled + fine-tuned decoder (GAN weight {w:g}) beats direct + fine-tuned decoder",
                               ft_direct, ft_dist)]
                    if many:
                        pairs.append((f"distilled + fine-tuned decoder (GAN weight {w:g}), 1 step, beats direct at "
                                      f"{many} steps", v(direct, many), ft_dist))
                for claim, a, b in pairs:
                    c = paired_claim(a, b, higher)
                    rows.append({"claim": claim, "metric": metric, **c, "text": claim_text(c)})
            claims.setdefault(s, {})[f"x{scale}"] = rows
    return claims


def table4_claims_md(claims: dict) -> list[str]:
    lines = ["### Table 4 claims", "",
             "Each claim as the mean per-image difference over the set (PSNR-Y in dB; LPIPS, lower is better) "
             "± its standard error over the images. One seed: \"within 2 SE\" means the difference is not "
             "distinguishable from the choice of test images; seed-to-seed noise is not measured here and adds to it.",
             ""]
    for s, per_scale in claims.items():
        for scale, rows in per_scale.items():
            by_claim: dict = {}
            for r in rows:
                by_claim.setdefault(r["claim"], {})[r["metric"]] = r["text"]
            lines += [f"#### {s}, {scale}", "",
                      md_table(["claim", "PSNR-Y", "LPIPS"], [[c, m["psnr"], m["lpips"]] for c, m in by_claim.items()]),
                      ""]
    return lines


def headline_table(results: dict, sets: list[str], many: int) -> list[str]:
    """The headline: 1-step distilled + fine-tuned decoder vs the standard model at ``many`` steps."""
    lines = [f"## Headline: 1 step (distilled + fine-tuned decoder) vs the standard model at {many} steps", ""]
    for s in sets:
        rows = []
        for scale in sorted({r["scale"] for r in results.values()}):
            for arm in [a for a in results if a.startswith(f"distilled_x{scale}")]:
                rows.append([f"x{scale}", arm, 1, *_cell(results, arm, s)])
            for n in (1, many):
                rows.append([f"x{scale}", f"direct_x{scale}", n, *_cell(results, f"direct_x{scale}", s, n)])
        lines += [f"### {s}", "", md_table(["scale", "model", "steps", *_header(results, s)], rows), ""]
    return lines


def _plot(results: dict, sets: list[str], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scales = sorted({r["scale"] for r in results.values()})
    fig, axes = plt.subplots(len(sets), 2 * len(scales), figsize=(3.3 * 2 * len(scales), 3.2 * len(sets)), squeeze=False)
    for i, s in enumerate(sets):
        for j, (scale, metric) in enumerate([(sc, m) for sc in scales for m in ("psnr", "lpips")]):
            ax = axes[i][j]
            for a, r in results.items():
                if r["scale"] == scale:
                    m = r["sets"][s]["methods"]
                    if "+" in a:   # fine-tuned decoder: 1 step only
                        ax.plot([1], [m["model@1"][metric]], "*", ms=10, label=a)
                    else:
                        ax.plot(r["steps"], [m[f"model@{n}"][metric] for n in r["steps"]], "o-", label=a)
                    bic = m["bicubic"][metric]
            ax.axhline(bic, ls="--", color="gray", label="bicubic")
            ax.set_xscale("log", base=2), ax.set_xlabel("DDIM steps"), ax.set_title(f"{s} x{scale} {metric}")
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "fig3.png", dpi=100)
    plt.close(fig)


def _sets(arms: dict) -> list[str]:
    return list(next(iter(arms.values()))["sets"])


def _headline(summary: dict) -> list[int]:
    """The many-step baseline's step counts: recorded, or (results written before the runner
    recorded them) the direct arms' step counts beyond the common ones."""
    if "headline_steps" in summary:
        return summary["headline_steps"]
    return sorted({n for a, r in summary["arms"].items() if a.startswith("direct") for n in r["steps"]}
                  - set(summary["steps"]))


def gan_weights_of(tuned_arms: list[str]) -> list[float]:
    """The GAN weights of the fine-tuned-decoder arms, in the order the runner made them."""
    out: list[float] = []
    for a in tuned_arms:
        suffix = a.partition("+ft_decoder")[2]
        w = float(suffix[len("_gan"):]) if suffix else GAN_WEIGHT
        if w not in out:
            out.append(w)
    return out


def single_markdown(summary: dict) -> str:
    """results.md of one budget and seed (Fig. 3, and Table 4 with its claims and the headline when
    the run fine-tuned decoders), from the ``results.json`` the runner wrote."""
    from upstep.evaluate.report import provenance_md

    results, sets = summary["arms"], _sets(summary["arms"])
    scales = sorted({r["scale"] for r in results.values()})
    autoencoder, scaling = summary.get("autoencoder"), summary.get("latent_scaling", 1.0)
    crop_pool = summary["config_base"]["data"].get("crop_pool", 0)
    tuned = [a for a in results if "+" in a]
    gan_weights = summary.get("decoder_gan_weights") or gan_weights_of(tuned)
    headline = _headline(summary)
    fid = summary.get("fid_patches", any(r.get("fid") for r in results.values()))
    recon, claims = summary.get("decoder_reconstruction", {}), summary.get("table4_claims", {})
    latent = (f"the KL autoencoder of `{autoencoder}`" if autoencoder else "the pixel-unshuffle x4 latent")
    lines = ["# YONOS-SR at small scale: direct vs scale-distilled", "", provenance_md(summary), ""]
    lines += regenerated_md(summary)
    lines += [f"Latent: {latent}, scaling {scaling:.4g}. B = {summary['budget_B']} optimiser steps; x4 arms trained 2B "
              "steps in total, x8 arms 3B (see the benchmark's docstring). U-Net [32, 64, 64], batch 8, 128-px crops, "
              f"uniform t, seed {summary['seed']}. Weighting: {summary['weighting']['text']}. PSNR/SSIM on "
              "Y with `scale` px cropped; LPIPS-alex. Bicubic measured in the same run.", ""]
    if crop_pool:
        lines += [f"Training crops: one fixed pool of {crop_pool} random 128-px crops (with flips/rotations) of the "
                  "training images, shared by every arm" + (", so the frozen encoder's latent of each crop is computed "
                  "once and cached" if autoencoder else "") + ".", ""]
    if tuned:
        lines += table4(results, sets, summary["decoder_steps"], gan_weights)
        lines += table4_claims_md(claims)
        rows = [[name, *(recon[name][s][m] for s in sets for m in ("psnr", "lpips"))] for name in recon]
        lines += ["Control: plain reconstruction, decode(encode(HR)), with each decoder (no U-Net). "
                  "It bounds, roughly, what a model in this latent can reach; a fine-tuned decoder that improves it "
                  "gained from more decoder training in general, not only from adapting to one-step latents.", "",
                  md_table(["decoder", *(f"{s} {m}" for s in sets for m in ("PSNR-Y ↑", "LPIPS ↓"))], rows), ""]
    if headline:
        lines += headline_table(results, sets, max(headline))
    lines += ["## Fig. 3: quality vs DDIM steps", ""]
    for s in sets:
        for scale in scales:
            arms = [a for a in results if results[a]["scale"] == scale and "+" not in a]
            cols = ["psnr", "ssim", "lpips"] + (["fid"] if fid else [])
            rows = []
            for a in arms:
                m = results[a]["sets"][s]["methods"]
                rows += [[a, n, *(m[f"model@{n}"].get(c, float("nan")) for c in cols)] for n in results[a]["steps"]]
            bic = results[arms[0]]["sets"][s]["methods"]["bicubic"]
            rows.append(["bicubic", "-", *(bic.get(c, float("nan")) for c in cols)])
            names = ["PSNR-Y ↑", "SSIM-Y ↑", "LPIPS ↓"] + [f"{_fid_label(results[arms[0]], s)} ↓"] * bool(fid)
            lines += [f"## {s}, x{scale}", "", md_table(["arm", "steps", *names], rows), ""]
    return "\n".join(lines)


def write_single(out: Path, summary: dict) -> str:
    """Write ``results.md`` and ``fig3.png`` in ``out``; returns the markdown."""
    text = single_markdown(summary)
    (out / "results.md").write_text(text)
    _plot(summary["arms"], _sets(summary["arms"]), out)
    return text


def write_sweep(out: Path, report: dict) -> str:
    """Write ``sweep.md`` and ``sweep.png`` in ``out``; returns the markdown."""
    sets = list(report["summary"])
    text = sweep_markdown(report, sets, report["latent_scaling"], report["autoencoder"])
    (out / "sweep.md").write_text(text)
    plot_sweep(report["summary"], sets, out / "sweep.png")
    return text


def regenerate(out: Path) -> str:
    """Re-judge the claims of the run in ``out`` from its records and rewrite its report."""
    from upstep.evaluate.report import regeneration_stamp, write_json

    stamp = regeneration_stamp(["python", "benchmarks/yonos_report.py", "--out", str(out)])
    if (out / "sweep.json").is_file():
        report = json.loads((out / "sweep.json").read_text())
        report["claims"] = sweep_claims(report["summary"], list(report["summary"]), out)
        report["report_regenerated"] = stamp
        write_json(out / "sweep.json", report)
        return write_sweep(out, report)
    if not (out / "results.json").is_file():
        raise SystemExit(f"{out}: no results.json or sweep.json (run benchmarks/yonos_ablation.py first)")
    summary = json.loads((out / "results.json").read_text())
    if "weighting" not in summary:
        raise SystemExit(f"{out}/results.json was written by an older version of the benchmark (no weighting "
                         "recorded); its report cannot be regenerated")
    if summary.get("table4_claims"):
        arms = summary["arms"]
        weights = summary.get("decoder_gan_weights") or gan_weights_of([a for a in arms if "+" in a])
        summary["table4_claims"] = table4_claims(out, arms, _sets(arms), weights, max(_headline(summary), default=0))
    summary["report_regenerated"] = stamp
    write_json(out / "results.json", summary)
    return write_single(out, summary)


def main() -> None:
    ap = argparse.ArgumentParser(description="Rewrite a YONOS ablation report from its committed records "
                                             "(results.json or sweep.json, and the per-image records)")
    ap.add_argument("--out", type=Path, required=True, help="the results folder, e.g. docs/results/yonos_kl16k")
    print(regenerate(ap.parse_args().out))


if __name__ == "__main__":
    main()
