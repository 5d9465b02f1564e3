"""Copy a trained model into the package as a shipped model, stored in float16.

    python scripts/ship_model.py runs/sr_x4_small default-x4
    python scripts/ship_model.py runs/perceptual_x4 default-x4 --fidelity runs/fidelity_x4

RUN is an ``upstep train`` run folder (its ``model/`` is the EMA export, ``config.json`` the
training config, ``log.jsonl`` the log). The shipped ``config.json`` records where it came
from: the training config, steps trained and the last validation figures. float16 halves the
file; ``load_model`` computes in float32 (the half-precision rounding of the weights changes
outputs by well under one 8-bit level; ``tests/test_shipped.py`` checks the quality bar).

``--fidelity FID`` (a run folder, a model folder or a shipped model name): the model the
perceptual fine-tune started from, written beside the shipped weights as
``fidelity.safetensors`` (float16) so ``--strength`` works (``upstep.strength``). Keys and
shapes are checked against the shipped model; a decoder the fidelity model lacks is filled in at
its identity start. ``--dest DIR`` writes the model folder there instead of into the package.

``--blend B`` (with ``--fidelity``) ships θ_fid + B (θ_run − θ_fid) instead of the run's weights:
ESRGAN's network interpolation (§3.4) as a model-making step. default-x4 is made so (the B it ships with is in its config.json;
docs/research/real_camera.md): its ``--strength`` then runs from the fidelity end (S = 0) to the
blend (S = 1).

``--fidelity-shared`` (with ``--fidelity NAME``, a model shipped in the package): write no
``fidelity.safetensors``; the config names the shipped model as the fidelity end instead
(``upstep.strength.fidelity_weights_path``), so the package holds one copy of those weights.

``--no-strength`` (with ``--fidelity`` and ``--blend``): ship the blend but no fidelity end, so the
model has no ``--strength``; for a model whose fidelity end the 40 MB package limit has no room for.

``--tuned-from START`` (with ``--blend``): the model the run was fine-tuned from, when ``--fidelity``
is another model that trained on from that same START (e.g. a longer MSE stage 1). The shipped
weights are then θ_fid + B (θ_run − θ_START): the fine-tune's change of weights (a "task vector",
Ilharco et al. 2023, "Editing models with task arithmetic", eq. 1) added to the further-trained
fidelity model. Without it START is the fidelity model itself, which is the plain blend above.

``--soup RUN2[@START2]`` (repeatable, with ``--blend``): more perceptual runs of the same
architecture. The shipped weights are θ_fid + B · mean_i (θ_run_i − θ_start_i), the uniform mean of
the runs' weight changes (a "model soup" of fine-tunes, Wortsman et al. 2022, §2, here of task
vectors so runs from different starts can join); START2 defaults to ``--fidelity``. The config
and log recorded are RUN's; the soup's members are listed under ``network_interpolation``.

``--run-share F`` (with ``--soup``): RUN's weight in that mean is F and the ``--soup`` members share
1 − F equally, instead of the uniform mean: θ_fid + B (F Δ_run + (1 − F) mean_i Δ_soup_i). With
RUN's weight held at 1/2, several seeds of one recipe averaged as the other half make a soup that
leans less on any one seed.
"""
import argparse
import json
import sys
from pathlib import Path

import torch

from upstep.api import resolve_model
from upstep.errors import UpstepError
from upstep.model import load_model, save_model
from upstep.paths import package_weights_dir


def main(run: str, name: str, fidelity: str | None = None, dest: str | None = None,
         trained_with: str | None = None, blend: float | None = None, tuned_from: str | None = None,
         soup: list[str] | None = None, fidelity_shared: bool = False, no_strength: bool = False,
         run_share: float | None = None, auto_strength: str | None = None) -> None:
    run_dir = Path(run)
    for need in (run_dir / "config.json", run_dir / "log.jsonl"):
        if not need.is_file():
            raise UpstepError(f"{run_dir}: missing {need.name}; give the folder of a finished `upstep train` run")
    model = load_model(run_dir / "model")
    train_cfg = json.loads((run_dir / "config.json").read_text())
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines() if line.strip()]
    last_val = next((r for r in reversed(log) if "val_psnr" in r), {})
    info = {"trained_with": trained_with or f"upstep train configs/{train_cfg['name']}.json --run-dir {run}",
            "train_config": train_cfg, "steps": log[-1]["step"] if log else None,
            "val_psnr_y_1step": last_val.get("val_psnr"), "val_psnr_y_bicubic": last_val.get("val_psnr_bicubic"),
            "weights_dtype": "float16"}
    if auto_strength is not None:   # the model's rule for --strength auto, its default (upstep.strength)
        from upstep.strength import check_strength

        try:
            camera_like, otherwise = (check_strength(v) for v in auto_strength.split(","))
        except (ValueError, UpstepError):
            raise UpstepError(f"--auto-strength wants CAMERA_LIKE,OTHERWISE (two strengths), got {auto_strength!r}") from None
        if not fidelity or no_strength:
            raise UpstepError("--auto-strength needs --fidelity (and not --no-strength): auto may pick a strength below 1")
        info["auto_strength"] = {"camera_like": camera_like, "otherwise": otherwise, "threshold": 0.5,
                                 "detector": "upstep/assets/camera-detector",
                                 "measured": "docs/results/strength_auto"}
    fid_model = None
    if run_share is not None and (not soup or not 0 < run_share < 1):
        raise UpstepError(f"--run-share needs --soup and a value strictly between 0 and 1 (RUN's weight in the "
                          f"soup's mean), got {run_share}" + ("" if soup else " without --soup"))
    if no_strength and (not fidelity or blend is None or fidelity_shared):
        raise UpstepError("--no-strength needs --fidelity and --blend, and not --fidelity-shared: it ships the blend "
                          "without the fidelity end")
    if fidelity:
        from upstep.strength import NetworkInterpolation, check_strength, fidelity_end

        fid_model = load_model(resolve_model(fidelity))
        fid_state, _ = fidelity_end(model, fid_model, fidelity)  # checked before anything is written
        if no_strength:
            info["fidelity_end"] = {"from": fidelity, "shipped": False,
                                    "why": "not shipped (--no-strength): the model has no --strength"}
        elif fidelity_shared:
            from upstep.api import available_models

            if fidelity not in available_models():   # a bare shipped name, never a path
                raise UpstepError(f"--fidelity-shared needs --fidelity to be the name of a shipped model "
                                  f"({', '.join(available_models())}), got {fidelity!r}")
            info["fidelity_end"] = {"from": fidelity, "shipped_model": fidelity}
        else:
            info["fidelity_end"] = {"from": fidelity, "file": "fidelity.safetensors"}
        if blend is not None:   # ESRGAN's network interpolation as the shipped model: θ_fid + b (θ_run − θ_fid)
            b = check_strength(blend)
            info["network_interpolation"] = {"run_weight": b, "fidelity_weight": 1 - b, "run": str(run_dir / "model"),
                                             "fidelity": fidelity}
            members = [(str(run_dir), tuned_from)] + [tuple(m.split("@", 1)) if "@" in m else (m, None)
                                                       for m in soup or []]
            if len(members) > 1 or tuned_from:  # θ_fid + b · Σ_i w_i (θ_run_i − θ_start_i), Σ w_i = 1
                weights = ([run_share] + [(1 - run_share) / (len(members) - 1)] * (len(members) - 1)
                           if run_share is not None else [1 / len(members)] * len(members))
                deltas = []
                for member, start in members:
                    member_state = (model.state_dict() if member == str(run_dir) else
                                    fidelity_end(model, load_model(resolve_model(member)), member)[0])
                    start_state = (fidelity_end(model, load_model(resolve_model(start)), start)[0] if start
                                   else fid_state)
                    deltas.append({k: member_state[k].float() - start_state[k].float() for k in fid_state})
                with torch.no_grad():
                    for k, t in model.state_dict().items():
                        if t.is_floating_point():
                            t.copy_(fid_state[k] + b * sum(w * d[k] for w, d in zip(weights, deltas)))
                if tuned_from:
                    info["network_interpolation"]["run_tuned_from"] = tuned_from
                if soup:
                    info["network_interpolation"]["soup"] = [{"run": m, "tuned_from": st or fidelity, "weight": w}
                                                             for (m, st), w in zip(members, weights)]
            else:
                NetworkInterpolation(model, fid_state).set(b)
        elif tuned_from or soup:
            raise UpstepError("--tuned-from and --soup need --blend: it says which weight change the blend adds to the fidelity end")
    elif fidelity_shared:
        raise UpstepError("--fidelity-shared needs --fidelity NAME: the shipped model that is the fidelity end")
    elif blend is not None or tuned_from or soup:
        raise UpstepError("--blend, --tuned-from and --soup need --fidelity: the blend is between the run's model and its fidelity end")
    out = save_model(model, Path(dest) if dest else package_weights_dir() / name, dtype=torch.float16, extra=info)
    size = (out / "model.safetensors").stat().st_size / 2**20
    print(f"shipped {run_dir / 'model'} as {name} in {out} ({size:.1f} MiB)")
    from upstep.strength import FIDELITY_FILE, write_fidelity

    if (fid_model is None or fidelity_shared or no_strength) and (out / FIDELITY_FILE).is_file():  # an earlier model's
        (out / FIDELITY_FILE).unlink()
        why = ("its fidelity end is now the shipped model" if fidelity_shared else
               "--no-strength" if no_strength else "no --fidelity given")
        print(f"removed {out / FIDELITY_FILE} of the model shipped there before ({why})")
    if no_strength:
        print(f"no fidelity end written (--no-strength): {name} has no --strength")
    elif fid_model is not None and fidelity_shared:
        print(f"fidelity end: the shipped model {fidelity} (named in {out / 'config.json'}, no copy written)")
    elif fid_model is not None:
        differs = write_fidelity(out, fid_model, source=fidelity)
        note = "; settings that are not weights follow the model: " + ", ".join(
            f"{k} {a} -> {b}" for k, (a, b) in differs.items()) if differs else ""
        print(f"fidelity end from {fidelity} in {out / FIDELITY_FILE}{note}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="an `upstep train` run folder")
    ap.add_argument("name", help="the shipped model's name, e.g. default-x4")
    ap.add_argument("--fidelity", default=None, help="the fidelity model the run was fine-tuned from "
                    "(run folder, model folder or shipped name): written as fidelity.safetensors")
    ap.add_argument("--fidelity-shared", action="store_true",
                    help="with --fidelity NAME of a shipped model: name it as the fidelity end in config.json "
                         "instead of writing a copy of its weights")
    ap.add_argument("--no-strength", action="store_true",
                    help="with --fidelity and --blend: ship the blend without its fidelity end (no --strength)")
    ap.add_argument("--dest", default=None, help="model folder to write (default: the package's weights/NAME)")
    ap.add_argument("--blend", type=float, default=None,
                    help="ship θ_fid + B (θ_run − θ_fid) (network interpolation, ESRGAN §3.4) instead of the run's "
                         "weights; needs --fidelity, whose weights stay the strength's S = 0 end")
    ap.add_argument("--tuned-from", default=None,
                    help="with --blend: the model the run was fine-tuned from, when --fidelity trained on from it; "
                         "ships θ_fid + B (θ_run − θ_START)")
    ap.add_argument("--soup", action="append", default=None, metavar="RUN2[@START2]",
                    help="with --blend, repeatable: another run whose weight change (from START2, default --fidelity) "
                         "is averaged with RUN's; ships θ_fid + B · mean of the changes")
    ap.add_argument("--run-share", type=float, default=None, metavar="F",
                    help="with --soup: RUN's weight in the mean of weight changes; the --soup runs share 1 - F "
                         "equally (default: all equal)")
    ap.add_argument("--trained-with", default=None, help="the command that trained the run, when it is not "
                    "`upstep train configs/<config name>.json` (e.g. a script with overrides)")
    ap.add_argument("--auto-strength", default=None, metavar="CAMERA_LIKE,OTHERWISE",
                    help="the model's --strength auto rule, also its default: CAMERA_LIKE where the camera detector "
                         "(upstep.camera_detect) gives P > 0.5, else OTHERWISE (needs --fidelity)")
    a = ap.parse_args()
    try:
        main(a.run, a.name, a.fidelity, a.dest, a.trained_with, a.blend, a.tuned_from, a.soup,
             a.fidelity_shared, a.no_strength, a.run_share, a.auto_strength)
    except UpstepError as e:
        sys.exit(f"ship_model: error: {e}")
