"""How alike the weight changes of several fine-tuning runs are (the premise of a model soup).

Each member is ``RUN@START``: a fine-tuned model (run folder, model folder or shipped name) and the
model it was fine-tuned from. Its weight change is Δ = θ_RUN − θ_START over the U-Net's floating
point tensors. The file written holds the norm of each Δ and the cosine of every pair,
cos(Δ_i, Δ_j) = ⟨Δ_i, Δ_j⟩ / (‖Δ_i‖ ‖Δ_j‖). If the changes were independent noise around a shared
part s, cos ≈ ‖s‖² / ‖Δ‖²; averaging k of them keeps s and shrinks the rest by 1/√k
(Wortsman et al. 2022, §2, on why soups of fine-tunes work).

    python benchmarks/weight_changes.py --member runs/cpu_arm_plain@runs/real_x4_fidelity_cpu/model_step1000 \
        --member runs/real_camera_gpu/new_mix@runs/real_camera_gpu/fidelity --out docs/results/...
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from upstep.api import resolve_model
from upstep.errors import UpstepError
from upstep.evaluate.report import md_table, provenance, provenance_md, write_json
from upstep.model import load_model


def weight_change(run: str, start: str) -> torch.Tensor:
    """θ_run − θ_start, flattened over the floating point tensors both models share by name and shape."""
    a = load_model(resolve_model(run)).state_dict()
    b = load_model(resolve_model(start)).state_dict()
    keys = [k for k in a if a[k].is_floating_point() and k in b and b[k].shape == a[k].shape]
    if len(keys) != sum(t.is_floating_point() for t in a.values()):
        raise UpstepError(f"{run}: its weights do not match {start}'s; give the model it was fine-tuned from")
    return torch.cat([(a[k].double() - b[k].double()).flatten() for k in sorted(keys)])


def cosine_table(deltas: dict[str, torch.Tensor]) -> tuple[list[str], list[list[float]]]:
    names = list(deltas)
    if len({d.numel() for d in deltas.values()}) > 1:
        raise UpstepError("the members are different networks: their weight changes cannot be compared")
    rows = [[float(torch.dot(deltas[i], deltas[j]) / (deltas[i].norm() * deltas[j].norm())) for j in names]
            for i in names]
    return names, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--member", action="append", required=True, metavar="[NAME=]RUN@START",
                    help="a fine-tuned model and the model it started from (repeat for each member)")
    ap.add_argument("--out", required=True, help="folder for results.md and results.json")
    a = ap.parse_args(argv)
    deltas = {}
    for spec in a.member:
        name, _, rest = spec.partition("=") if "=" in spec.split("@", 1)[0] else ("", "", spec)
        if "@" not in rest:
            ap.error(f"--member {spec!r}: give RUN@START, the run and the model it was fine-tuned from")
        run, start = rest.split("@", 1)
        deltas[name or run] = weight_change(run, start)
    names, cos = cosine_table(deltas)
    prov = provenance([sys.argv[0]] + (argv if argv is not None else sys.argv[1:]))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", {**prov, "members": a.member,
                                      "norm": {n: float(deltas[n].norm()) for n in names},
                                      "cosine": {n: dict(zip(names, r)) for n, r in zip(names, cos)}})
    text = ["# Weight changes of fine-tuning runs: norms and pairwise cosines", "", provenance_md(prov), "",
            md_table(["member", "‖Δ‖"] + names, [[n, float(deltas[n].norm())] + r for n, r in zip(names, cos)]), ""]
    (out / "results.md").write_text("\n".join(text))
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UpstepError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
