"""``upstep`` command line: upscale | train | eval | bench | degrade | models | serve.

Errors meant for the user (``UpstepError``) print one line and exit 2; batch upscaling goes
on past a bad file and exits 1 with every failure listed at the end.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path

from upstep.errors import ConfigError, UpstepError


def _add_upscale(sub):
    from upstep.io import FORMAT_EXTS

    p = sub.add_parser("upscale", help="upscale images with ONE diffusion step (default)")
    p.add_argument("inputs", nargs="*", help="image files or folders, or video files (.mp4, .mkv, .webm, ...)")
    p.add_argument("-o", "--output", help="output file (one input) or folder (default: ./upscaled)")
    p.add_argument("--scale", type=float, default=None,
                   help="any factor from 1 to 8, e.g. 3 or 1.5 (default 4, or the --model's own scale): runs the "
                        "smallest shipped scale at or above it, then resizes down (antialiased)")
    p.add_argument("--width", type=int, default=None,
                   help="output width in pixels; keeps the aspect ratio unless --height is given too")
    p.add_argument("--height", type=int, default=None,
                   help="output height in pixels; keeps the aspect ratio unless --width is given too")
    p.add_argument("--strength", default=None,
                   help="0 (fidelity: smooth, faithful) .. 1 (the shipped perceptual model: sharp); needs a model "
                        "that ships its fidelity end. 'auto': picked per image from the LR (0.75 for LR a small "
                        "detector calls camera-like: clean and blurred, lossless or JPEG; each output line says what "
                        "it picked), the default of a model with an auto rule (default-x4, torch backend); otherwise "
                        "the default is the model as shipped (S = 1)")
    p.add_argument("--model", default=None,
                   help="shipped model name, model folder, or an `upstep train` run folder (its model/) "
                        "(default: default-x<s>, s the smallest shipped scale at or above the factor asked)")
    p.add_argument("-r", "--recursive", action="store_true",
                   help="folders: also their subfolders, mirrored under -o; non-image files are skipped")
    p.add_argument("--steps", type=int, default=None,
                   help="sampler steps (default: the model's own: 1 for the one-step models)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="auto: bfloat16 on a CPU with native bf16 (AVX512-BF16/AMX), else float32")
    p.add_argument("--backend", default="auto", choices=("auto", "torch", "onnxruntime"),
                   help="auto: torch; onnxruntime: the U-Net and decoder in ONNX Runtime (float32 CPU, models without self-attention, e.g. default-x4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--colorfix", default="none", choices=("none", "wavelet", "adain"))
    p.add_argument("--tile", default="auto",
                   help="LR tile size in pixels, or auto: the whole image while it fits the memory budget")
    p.add_argument("--overlap", type=int, default=16, help="LR overlap between tiles in pixels")
    p.add_argument("--format", choices=sorted(FORMAT_EXTS), default=None,
                   help="output format (default: the output name's extension, or the input's in folder mode)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality, 1-100")
    p.add_argument("--suffix", default="", help="added to output file names in folder mode")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files (never inputs)")
    p.add_argument("--max-pixels", type=int, default=None, help="refuse larger inputs (decompression-bomb guard)")
    p.add_argument("--demo", action="store_true", help="upscale the bundled sample image")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--video-codec", default=None,
                   help="ffmpeg encoder for video outputs (default: libx264, VP9 for .webm; ffv1 is lossless)")
    p.add_argument("--crf", type=int, default=18, help="video quality for x264/x265/VP9 (lower is better; 0 lossless)")
    p.set_defaults(func=run_upscale)


def check_upscale_args(args) -> None:
    """Option values argparse cannot check alone; each failure is one line, exit 2."""
    from upstep.api import MAX_FACTOR
    from upstep.strength import parse_strength

    if args.scale is not None and (args.width is not None or args.height is not None):
        raise UpstepError("give either --scale or --width/--height, not both")
    if args.scale is not None and not 1 <= args.scale <= MAX_FACTOR:
        raise UpstepError(f"--scale must be a factor from 1 to {MAX_FACTOR:g}, got {args.scale:g}")
    for name in ("width", "height"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise UpstepError(f"--{name} must be a positive number of pixels, got {getattr(args, name)}")
    args.strength = parse_strength(args.strength)
    if args.steps is not None and args.steps < 1:
        raise UpstepError(f"--steps must be at least 1, got {args.steps}")
    from upstep.pipeline import check_tiling

    try:   # the API's own check (upstep.pipeline), named as the flags here
        args.tile, args.overlap = check_tiling(args.tile, args.overlap)
    except UpstepError as e:
        raise UpstepError(f"--{e}") from None
    if args.tile != "auto" and args.overlap >= args.tile:
        raise UpstepError(f"--overlap {args.overlap} must be smaller than --tile {args.tile}")
    if not 1 <= args.quality <= 100:
        raise UpstepError(f"--quality must be between 1 and 100, got {args.quality}")
    if not 0 <= args.crf <= 63:
        raise UpstepError(f"--crf must be between 0 (lossless) and 63, got {args.crf}")
    if args.format and args.output and Path(args.output).suffix and not Path(args.output).is_dir():
        from upstep.io import FORMAT_EXTS, WRITE_FORMATS

        want = FORMAT_EXTS[args.format]
        if WRITE_FORMATS.get(Path(args.output).suffix.lower()) != WRITE_FORMATS[want]:
            raise UpstepError(f"-o {args.output} is not a {want} name but --format {args.format} was asked; "
                              "make them agree")


class _Models:
    """The upscaler for each model scale an input needs, loaded on first use: ``--model`` if given
    (its scale only), else the shipped ``default-x<s>``."""

    def __init__(self, args):
        from upstep.api import SHIPPED_SCALES, default_model_for, default_scales, load

        self.args, self.loaded = args, {}
        self.kw = dict(device=args.device, dtype=args.dtype, tile=args.tile, overlap=args.overlap,
                       backend=args.backend)
        if args.model:
            up = load(args.model, **self.kw)
            if args.scale is not None and args.scale > up.scale:
                raise UpstepError(f"model {args.model} upscales x{up.scale}, but --scale {args.scale:g} was asked; "
                                  f"drop --model or pick a model of scale {args.scale:g} or more")
            self.loaded[up.scale] = up
            self.scales = (up.scale,)
        else:
            self.scales = default_scales()
            if args.width is None and args.height is None:  # the model is known now: a missing one is a usage error
                factor = args.scale or 4
                fits = [s for s in self.scales if s >= factor] or [s for s in SHIPPED_SCALES if s >= factor]
                want = fits[0] if fits else max(SHIPPED_SCALES)
                self.loaded[want] = load(default_model_for(want), **self.kw)  # not shipped: says what ships
        for up in self.loaded.values():  # before the first image: these are usage errors
            up.check_steps(args.steps)
            if args.strength is not None:
                up.prepare_strength(args.strength)

    def plan(self, size: tuple[int, int]):
        from upstep.api import plan_size

        a = self.args
        scale = a.scale
        if scale is None and a.width is None and a.height is None and a.model:
            scale = float(self.scales[0])  # --model alone: its own scale
        return plan_size(size, scale, a.width, a.height, model_scales=self.scales)

    def video_scale(self, path: Path) -> int:
        """Videos run at a model's own scale (no resizing of frames yet)."""
        a = self.args
        s = a.scale if a.scale is not None else (self.scales[0] if a.model else 4)
        own = ", ".join(str(m) for m in self.scales)
        if a.width is not None or a.height is not None:
            raise UpstepError(f"{path}: videos are upscaled at a model's own scale ({own}); drop --width/--height")
        if s not in self.scales:
            raise UpstepError(f"{path}: videos are upscaled at a model's own scale; --scale {s:g} is not one of "
                              f"them ({own})")
        return int(s)

    def get(self, scale: int):
        from upstep.api import default_model_for, load

        if scale not in self.loaded:
            up = load(default_model_for(scale), **self.kw)
            up.check_steps(self.args.steps)
            self.loaded[scale] = up
        return self.loaded[scale]


def _auto_note(up, strength) -> str:
    """" (strength auto: 0.75, camera-like)" or " (strength auto: 1)" after a file that strength auto
    ran on, else ""."""
    from upstep.strength import AUTO, parse_strength

    if up.auto_rule is None or up.backend != "torch" or parse_strength(strength) not in (None, AUTO):
        return ""
    used = 1.0 if up.last_strength is None else up.last_strength
    camera = used == up.auto_rule["camera_like"] != up.auto_rule["otherwise"]
    return f" (strength auto: {used:g}{', camera-like' if camera else ''})"


def _check_output(out_arg: str, files: list[Path]) -> None:
    """Usage errors of ``-o`` (as typed) that need the inputs: one line, exit 2, before any work."""
    import upstep.io as uio
    from upstep.video import VIDEO_EXTS, is_video

    out = Path(out_arg)
    if uio.output_is_folder(out_arg, 1):
        return
    ext = out.suffix.lower()
    if len(files) > 1 and (ext in uio.WRITE_FORMATS or ext in VIDEO_EXTS):
        raise UpstepError(f"-o {out} names one file, but there are {len(files)} inputs; give an output folder")
    if len(files) == 1 and ext not in uio.WRITE_FORMATS and not is_video(files[0]):
        raise UpstepError(f"-o {out}: cannot write '{out.suffix}' files; use one of "
                          f"{', '.join(sorted(uio.WRITE_FORMATS))}")


def _clashes(dests: list[Path], files: list[Path]) -> dict[int, str]:
    """Index of each input whose output name an earlier input already takes -> the reason (the
    earlier one is written, this one is reported as failed)."""
    first: dict[str, Path] = {}
    out = {}
    for i, (dest, src) in enumerate(zip(dests, files)):
        key = os.path.normcase(os.path.abspath(dest))
        if key in first:
            out[i] = (f"{src}: its output {dest} is also the output of {first[key]}; upscale it on its own "
                      "with another -o")
        else:
            first[key] = src
    return out


def run_upscale(args) -> int:
    import upstep.io as uio
    from upstep.video import VIDEO_EXTS, is_video, upscale_video

    check_upscale_args(args)
    inputs = list(args.inputs)
    if args.demo:
        inputs.append(str(Path(__file__).parent / "assets" / "sample.png"))
    if not inputs:
        raise UpstepError("no input images: give files or folders, or --demo for the bundled sample")
    out_arg = args.output or "upscaled"
    out = Path(out_arg)
    for folder in (Path(i) for i in inputs if Path(i).is_dir()):
        if out.is_dir() and uio.same_file(folder, out):
            named = f"-o {out}" if args.output else f"the default output folder {out}"
            raise UpstepError(f"{named} is the input folder {folder}; the results would mix with the inputs. "
                              "Give another output folder with -o")
    tree = uio.list_input_tree(inputs, recursive=args.recursive, exclude=out if out.is_dir() else None)
    files = [f for f, _ in tree]
    if not files:
        videos = [f for f, _ in uio.list_input_tree(inputs, recursive=args.recursive, exts=VIDEO_EXTS)]
        hint = (f" ({len(videos)} video(s) there: a folder is read for images; name videos one by one)" if videos
                else "" if args.recursive else " (add --recursive to look in subfolders)")
        raise UpstepError(f"no images found in {', '.join(inputs)}{hint}")
    _check_output(out_arg, files)

    def dest_for(path: Path, sub: Path) -> Path:
        ext = path.suffix.lower() if is_video(path) else (uio.FORMAT_EXTS[args.format] if args.format else None)
        return uio.output_path_for(path, out_arg, len(files), suffix=args.suffix, ext=ext, subfolder=sub)

    clash = _clashes([dest_for(f, sub) for f, sub in tree], files)
    models = _Models(args)
    read_kw = {} if args.max_pixels is None else {"max_pixels": args.max_pixels}

    def one(item: tuple[int, tuple[Path, Path]]) -> Path:
        i, (path, sub) = item
        uio.check_input(path)  # a missing input is reported as such, whatever the output is
        if i in clash:
            raise UpstepError(clash[i])
        dest = dest_for(path, sub)
        uio.check_destination(dest, overwrite=args.overwrite, inputs=files)  # before the slow part
        if is_video(path):
            up = models.get(models.video_scale(path))
            written = upscale_video(up, path, dest, steps=args.steps, seed=args.seed, colorfix=args.colorfix,
                                    strength=args.strength, codec=args.video_codec, crf=args.crf,
                                    overwrite=args.overwrite, progress=not args.no_progress, **read_kw)
            return f"{written}{_auto_note(up, args.strength)}"   # a video keeps its first frame's pick
        img = uio.read_image(path, **read_kw)
        fmt = uio.WRITE_FORMATS.get(dest.suffix.lower())
        if img.alpha is not None and fmt in uio.NO_ALPHA_FORMATS:   # before the slow part
            raise UpstepError(f"{path}: has an alpha channel, which {fmt} ({dest.name}) cannot store; "
                              "write .png or .webp")
        plan = models.plan(img.size)
        up = models.get(plan.model_scale)
        result = up.upscale_loaded(
            img, steps=args.steps, seed=args.seed, colorfix=args.colorfix, strength=args.strength,
            out_size=plan.size, progress=not args.no_progress and len(files) == 1)
        uio.write_image(result, dest, overwrite=args.overwrite, inputs=files, icc_profile=img.icc_profile,
                        exif=img.exif, text=img.text, quality=args.quality)
        return f"{dest}{_auto_note(up, args.strength)}"

    report = uio.run_batch(list(enumerate(tree)), one, progress=not args.no_progress and len(files) > 1)
    for (_, (src, _)), dest in report.ok:
        print(f"{src} -> {dest}")
    report.failed = [(src, reason) for (_, (src, _)), reason in report.failed]
    if len(files) > 1:
        failed = f", {len(report.failed)} failed" if report.failed else ""
        print(f"{len(report.ok)} of {len(files)} upscaled into {out}{failed}")
    if report.failed:
        print(report.summary(), file=sys.stderr)
    return report.exit_code


def _add_train(sub):
    p = sub.add_parser("train", help="train a model from a recipe config (resumes if RUN has a checkpoint)")
    p.add_argument("config", help="config JSON (a path, or a name in configs/)")
    p.add_argument("--run-dir", "-o", required=True, help="folder for checkpoints, logs and the exported model")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config entry, e.g. --set train.steps=1000")
    p.add_argument("--init-from", default=None, help="start from a local diffusers folder or an upstep model")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--fill-latent-cache", metavar="SHARD/SHARDS", default=None,
                   help="do not train: compute the frozen encoder's latents of the crop pool into the config's "
                        "train.latent_cache, pool entries SHARD, SHARD+SHARDS, ... (e.g. 0/2 and 1/2 on two cores)")
    p.set_defaults(func=run_train)


def run_train(args) -> int:
    try:
        return _train(args)
    except KeyboardInterrupt:   # say where the same command picks up
        from upstep.train.checkpoint import latest_checkpoint

        found = sorted(Path(args.run_dir).rglob("latest.json"))   # a chain: one per stage
        ckpts = [c for c in (latest_checkpoint(f.parent) for f in found) if c is not None]
        where = f"from {ckpts[-1]}" if ckpts else "from the start (no checkpoint was written yet)"
        print(f"stopped; run the same command again to resume {where}", file=sys.stderr)
        raise


def _train(args) -> int:
    from upstep.config import apply_override, load_config
    from upstep.train.loop import train

    cfg = load_config(args.config)
    chain = cfg.get("recipe") == "yonos_chain"
    head = [i.split("=", 1)[0].split(".")[0] for i in args.set]
    # a chain: defaults.* and name go to the chain, stages.N.* to stage N, any other --set to every stage
    # (after defaults are merged in and before stages.N, so the more specific one wins)
    for item, h in zip(args.set, head):
        if not chain or h in ("defaults", "name"):
            apply_override(cfg, item)
    if args.fill_latent_cache:
        return _fill_latent_cache(cfg, args)
    if chain:  # YONOS-SR x2 -> x4 -> x8: one run folder per stage
        from upstep.recipes.scale_distill import chain_stages, run_chain

        stages = chain_stages(cfg)
        for item in (i for i, h in zip(args.set, head) if h not in ("defaults", "name", "stages")):
            for stage in stages:
                apply_override(stage, item)
        for item in (i for i, h in zip(args.set, head) if h == "stages"):
            apply_override({"stages": stages}, item)
        if args.init_from and stages:  # --init-from applies to the first (non-distilled) stage
            stages[0].setdefault("model", {})["init_from"] = args.init_from
        out = run_chain(stages, args.run_dir, progress=not args.no_progress)
        print(f"model written to {out}")
        return 0
    if args.init_from:
        cfg.setdefault("model", {})["init_from"] = args.init_from
    out = train(cfg, args.run_dir, progress=not args.no_progress)
    print(f"model written to {out}")
    return 0


def _fill_latent_cache(cfg: dict, args) -> int:
    from upstep.train.loop import fill_latent_cache

    try:
        shard, shards = (int(v) for v in args.fill_latent_cache.split("/"))
    except ValueError:
        raise ConfigError(f"--fill-latent-cache wants SHARD/SHARDS, e.g. 0/2, not {args.fill_latent_cache!r}") from None
    counts = fill_latent_cache(cfg, args.run_dir, shard, shards)
    print(f"latent cache: {counts['misses']} latents computed, {counts['hits']} already cached")
    return 0


def _add_models(sub):
    p = sub.add_parser("models", help="list the shipped models")
    p.set_defaults(func=run_models)


def run_models(args) -> int:
    """One line per shipped model: name, scale, and whether ``--scale`` picks it."""
    from upstep.api import default_model_for, shipped_models

    for m in shipped_models():
        try:
            pick = default_model_for(m["scale"]) == m["name"]
        except UpstepError:
            pick = False
        print(f"{m['name']}\tx{m['scale']}\t{m['recipe']}" + (f"\t(--scale {m['scale']})" if pick else ""))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="upstep", description="One-step diffusion super-resolution.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_upscale(sub)
    _add_train(sub)
    _add_models(sub)
    for module, name in (("upstep.degrade.dataset", "degrade"), ("upstep.evaluate.runner", "eval"),
                         ("upstep.evaluate.bench", "bench"), ("upstep.web", "serve"),
                         ("upstep.evaluate.datacheck", "check-data")):
        _add_optional(sub, module, name)
    return parser


def _add_optional(sub, module: str, name: str) -> None:
    """Commands whose module provides ``add_<name>_arguments(parser)`` and ``run_<name>(args)``."""
    import importlib

    try:
        mod = importlib.import_module(module)
    except ImportError:
        return
    p = sub.add_parser(name, help=(mod.__doc__ or "").strip().splitlines()[0] if mod.__doc__ else None)
    getattr(mod, f"add_{name.replace('-', '_')}_arguments")(p)
    p.set_defaults(func=getattr(mod, f"run_{name.replace('-', '_')}"))


# Commands whose SIGTERM unwinds as Ctrl+C does, so their temporary files are removed before the
# process ends by the signal. Not serve (uvicorn has its own handlers) nor train (its checkpoints are
# atomic files already; an exception there would only slow the stop).
TERM_CLEANS_UP = {"upscale", "degrade"}


class _Terminated(KeyboardInterrupt):
    """SIGTERM in a TERM_CLEANS_UP command: unwinds like Ctrl+C, then the process ends by SIGTERM."""


def _terminate(signum, frame):
    raise _Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from upstep.hardware import reuse_freed_memory

    reuse_freed_memory()  # every command allocates the same tensors again and again (training steps, tiles)
    on_term = (args.command in TERM_CLEANS_UP and hasattr(signal, "SIGTERM")
               and threading.current_thread() is threading.main_thread()
               and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL)
    if on_term:   # like Ctrl+C: temporary files are removed on the way out
        signal.signal(signal.SIGTERM, _terminate)
    try:
        return int(args.func(args) or 0)
    except UpstepError as e:
        print(f"upstep {args.command}: error: {e}", file=sys.stderr)
        return 2
    except _Terminated:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)   # cleaned up; now end as SIGTERM ends a process
        raise
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if on_term:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
