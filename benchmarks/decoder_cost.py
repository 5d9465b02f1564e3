"""What the learnable pixel-shuffle decoder costs at inference: 1-step upscaling time of the
shipped default-x4 with its plain pixel_shuffle decoder vs the same model with the refinement
network of ``RefinedPixelShuffleAutoencoder`` (random weights: the cost does not depend on them).
The two are timed alternately (A, B, A, B, ...) so load from other processes hits both alike;
the best of N is reported (contention only ever adds time). The ratio is taken on *CPU time* of this process (one thread by default),
which other processes sharing the cores disturb far less than wall time; wall time is reported
beside it.

    python benchmarks/decoder_cost.py                # writes docs/results/decoder_cost.{json,md}
    python benchmarks/decoder_cost.py --channels 16 --layers 3 --sizes 128,256 --repeats 5
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

from upstep.api import Upscaler, resolve_model
from upstep.evaluate.report import md_table, provenance, provenance_md, write_json
from upstep.model import load_model
from upstep.nn.autoencoders import RefinedPixelShuffleAutoencoder

OUT = Path(__file__).resolve().parents[1] / "docs" / "results"


def _image(size: int) -> Image.Image:
    g = torch.Generator().manual_seed(size)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, size // 8, size // 8, generator=g), size=(size, size),
                                        mode="bicubic", align_corners=False).clamp(0, 1)
    return Image.fromarray((x[0].permute(1, 2, 0) * 255).round().byte().numpy())


def _best_cpu(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        c0 = time.process_time()
        fn()
        times.append(time.process_time() - c0)
    return min(times)


@torch.no_grad()
def _component_times(model, widths, layers: int, repeats: int):
    x = torch.rand(1, 3, 512, 512) * 2 - 1
    z = model.autoencoder.encode(x)
    t = torch.ones(1)
    model.unet(z, z, t)
    unet_s = _best_cpu(lambda: model.unet(z, z, t), repeats)
    comp = {}
    for w in widths:
        refine = RefinedPixelShuffleAutoencoder(channels=w, layers=layers).refine
        refine(x)
        comp[w] = _best_cpu(lambda: refine(x), repeats)
    return unet_s, comp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default-x4")
    ap.add_argument("--channels", type=int, default=12)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--sizes", default="128,256", help="LR sizes (square)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--widths", default="8,12,16", help="refinement widths for the component timing")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    plain = load_model(resolve_model(args.model))
    refined = copy.deepcopy(plain)
    refined.autoencoder = RefinedPixelShuffleAutoencoder.from_plain(plain.autoencoder, channels=args.channels,
                                                                    layers=args.layers)
    torch.nn.init.normal_(refined.autoencoder.refine[-1].weight, std=0.01)
    ups = {"plain": Upscaler(plain, device="cpu"), "refined": Upscaler(refined, device="cpu")}
    params = sum(p.numel() for p in refined.autoencoder.parameters())
    rows, records = [], []
    for size in [int(s) for s in args.sizes.split(",")]:
        img = _image(size)
        for up in ups.values():
            up.upscale(img)  # warm-up
        cpu, wall = {k: [] for k in ups}, {k: [] for k in ups}
        for _ in range(args.repeats):
            for k, up in ups.items():
                c0, t0 = time.process_time(), time.perf_counter()
                up.upscale(img)
                cpu[k].append(time.process_time() - c0)
                wall[k].append(time.perf_counter() - t0)
        med = {k: min(v) for k, v in cpu.items()}   # best of N: contention only adds time
        med_wall = {k: statistics.median(v) for k, v in wall.items()}
        extra = med["refined"] / med["plain"] - 1
        records.append({"lr_size": size, "cpu_seconds": cpu, "wall_seconds": wall, "best_cpu_s": med,
                        "median_wall_s": med_wall, "added_fraction_cpu": extra})
        rows.append([f"{size}² → {size * 4}²", med["plain"], med["refined"], f"{100 * extra:+.1f} %",
                     med_wall["plain"], med_wall["refined"]])
    # component timing: the refinement net alone vs the U-Net alone on one 512² HR tile
    unet_s, comp = _component_times(plain, [int(w) for w in args.widths.split(",")], args.layers, args.repeats)
    comp_rows = [[w, t, f"{100 * t / unet_s:.1f} %"] for w, t in comp.items()]
    result = {"model": args.model, "component_512": {"unet_cpu_s": unet_s, "refine_cpu_s": comp}, "refine": {"channels": args.channels, "layers": args.layers,
                                              "parameters": params},
              "threads": args.threads, "repeats": args.repeats, "results": records, **provenance()}
    out = Path(args.out)
    write_json(out / "decoder_cost.json", result)
    md = "\n".join([
        "# Learnable pixel-shuffle decoder: added 1-step inference time", "", provenance_md(result), "",
        f"`{args.model}`, 1 step, tiled pipeline defaults, {args.threads} thread(s), best CPU time of "
        f"{args.repeats} alternating runs. Refinement network: {args.layers} 3x3 convs, {args.channels} channels, "
        f"{params} parameters, at HR resolution.", "",
        md_table(["LR → HR", "pixel_shuffle, CPU s", "+ refinement, CPU s", "added (CPU time)",
                  "pixel_shuffle, wall s", "+ refinement, wall s"], rows), "",
        f"Components on one 512² HR tile (best CPU time of {args.repeats}): the U-Net's one evaluation "
        f"{unet_s:.3f} s; the refinement net ({args.layers} layers) by width:", "",
        md_table(["width", "refinement, CPU s", "of the U-Net"], comp_rows), ""])
    (out / "decoder_cost.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
