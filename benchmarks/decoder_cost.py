"""What the learnable pixel-shuffle decoder costs at inference: 1-step upscaling time of the
shipped default-x4 with its plain pixel_shuffle decoder vs the same model with a learnable decoder
(``--decoder``: a ``perceptual.decoder`` setting, the HR refinement network of
``RefinedPixelShuffleAutoencoder`` or the resize-convolution branch of ``ResizeConvAutoencoder``;
random weights: the cost does not depend on them).
The two are timed alternately (A, B, A, B, ...) so load from other processes hits both alike;
the best of N is reported (contention only ever adds time). The ratio is taken on *CPU time* of this process (one thread by default),
which other processes sharing the cores disturb far less than wall time; wall time is reported
beside it.

    python benchmarks/decoder_cost.py                # writes docs/results/decoder_cost.{json,md}
    python benchmarks/decoder_cost.py --decoder model --name decoder_cost_default_x4 --dtype bfloat16
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import json
import statistics
import time
from pathlib import Path

import torch
from PIL import Image

from upstep.api import Upscaler, resolve_model
from upstep.evaluate.report import md_table, provenance, provenance_md, write_json
from upstep.model import load_model
from upstep.nn.autoencoders import PixelUnshuffleAutoencoder, RefinedPixelShuffleAutoencoder
from upstep.recipes.perceptual import DECODERS

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
def _component_times(model, widths, layers: int, repeats: int, decoder):
    """One 512² HR tile: the U-Net's one evaluation, the tested decoder's learnable part, and the
    HR refinement network by width."""
    x = torch.rand(1, 3, 512, 512) * 2 - 1
    z = model.autoencoder.encode(x)
    t = torch.ones(1)
    model.unet(z, z, t)
    unet_s = _best_cpu(lambda: model.unet(z, z, t), repeats)
    decoder.decode(z)
    decoder_s = _best_cpu(lambda: decoder.decode(z), repeats)
    comp = {}
    for w in widths:
        refine = RefinedPixelShuffleAutoencoder(channels=w, layers=layers).refine
        refine(x)
        comp[w] = _best_cpu(lambda: refine(x), repeats)
    return unet_s, decoder_s, comp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default-x4")
    ap.add_argument("--decoder", default='{"kind": "refine", "channels": 12, "layers": 3}',
                    help="the learnable decoder, as perceptual.decoder (JSON), or 'model': the model's own "
                         "decoder and grid notch against plain pixel_shuffle")
    ap.add_argument("--layers", type=int, default=3, help="refinement layers for the component timing")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                    help="autocast dtype of the whole upscale (bfloat16: the default path on a CPU with native bf16)")
    ap.add_argument("--name", default="decoder_cost", help="results file stem")
    ap.add_argument("--sizes", default="128,256", help="LR sizes (square)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--widths", default="8,12,16", help="refinement widths for the component timing")
    ap.add_argument("--out", default=str(OUT))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model(resolve_model(args.model))
    plain = copy.deepcopy(model)     # pixel_shuffle only, no grid notch
    plain.autoencoder = PixelUnshuffleAutoencoder(model.autoencoder.factor, model.autoencoder.in_channels,
                                                  model.autoencoder.scaling)
    plain.set_degrid(0.0)
    if args.decoder == "model":      # the model's own decoder and notch, as trained
        refined = model
        decoder = {**model.autoencoder.config(), "degrid_sigma": model.degrid_sigma}
    else:
        refined = copy.deepcopy(plain)
        decoder = json.loads(args.decoder)
        kw = dict(decoder)
        refined.autoencoder = DECODERS[kw.pop("kind", "refine")].from_plain(plain.autoencoder, **kw)
        torch.nn.init.normal_(refined.autoencoder.last_layer, std=0.01)
    dtype = getattr(torch, args.dtype)
    ups = {"plain": Upscaler(plain, device="cpu", dtype=args.dtype), "refined": Upscaler(refined, device="cpu", dtype=args.dtype)}
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
    autocast = torch.autocast("cpu", dtype=dtype) if dtype != torch.float32 else contextlib.nullcontext()
    with autocast:
        unet_s, decoder_s, comp = _component_times(plain, [int(w) for w in args.widths.split(",")], args.layers,
                                                   args.repeats, refined.autoencoder)
    comp_rows = [[w, t, f"{100 * t / unet_s:.1f} %"] for w, t in comp.items()]
    result = {"model": args.model, "dtype": args.dtype,
              "component_512": {"unet_cpu_s": unet_s, "decoder_cpu_s": decoder_s, "refine_cpu_s": comp},
              "decoder": {**decoder, "parameters": params},
              "threads": args.threads, "repeats": args.repeats, "results": records, **provenance()}
    out = Path(args.out)
    write_json(out / f"{args.name}.json", result)
    md = "\n".join([
        "# Learnable pixel-shuffle decoder: added 1-step inference time", "", provenance_md(result), "",
        f"`{args.model}`, 1 step, tiled pipeline defaults, {args.dtype}, {args.threads} thread(s), best CPU time of "
        f"{args.repeats} alternating runs. Learnable decoder: `{json.dumps(decoder)}`, {params} parameters.", "",
        md_table(["LR → HR", "pixel_shuffle, CPU s", "+ refinement, CPU s", "added (CPU time)",
                  "pixel_shuffle, wall s", "+ refinement, wall s"], rows), "",
        f"Components on one 512² HR tile (best CPU time of {args.repeats}): the U-Net's one evaluation "
        f"{unet_s:.3f} s; the whole learnable decoder {decoder_s:.3f} s ({100 * decoder_s / unet_s:.1f} % of the "
        f"U-Net); the HR refinement net ({args.layers} layers) by width:", "",
        md_table(["width", "refinement, CPU s", "of the U-Net"], comp_rows), ""])
    (out / f"{args.name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
