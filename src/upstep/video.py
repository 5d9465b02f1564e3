"""Video upscaling with PyAV (ffmpeg inside the wheel): ``upstep upscale clip.mp4 -o clip_x4.mp4``.

* Frames are streamed: decode one, upscale it, encode it; memory does not grow with length.
* Each frame goes through the image path (``Upscaler.upscale``) with the same seed, so every
  frame gets the same starting noise (no frame-to-frame sampling jitter) and the same colour
  fix against its own bicubic upsample.
* Audio (and subtitle) packets are copied as they are, not re-encoded.
* The output is written to a temp file beside the destination and renamed at the end
  (``upstep.atomic``): a bad or truncated input never leaves a partial file under the final name.

``pip install upstep[video]`` brings PyAV.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from upstep.atomic import atomic_write
from upstep.errors import UpstepError

VIDEO_EXTS = {".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi"}
# codec per container when none is asked for; pixel formats that keep RGB exactly for lossless codecs
DEFAULT_CODEC = {".webm": "libvpx-vp9", ".avi": "mpeg4"}
LOSSLESS_RGB = {"ffv1": "bgr0", "libx264rgb": "rgb24", "png": "rgb24"}
# ffmpeg's colour enums: 2 = unspecified; matrix 0 = RGB, 5 = BT.601 (what an untagged frame decodes with)
UNSPECIFIED, BT601, LIMITED_RANGE = 2, 5, 1


class VideoError(UpstepError):
    pass


def is_video(path: str | Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


def _av():
    try:
        import av
    except ImportError as e:
        raise VideoError("video needs PyAV: pip install 'upstep[video]' (or pip install av)") from e
    return av


def _reason(e: Exception) -> str:
    """ffmpeg's own words without the file name it appends (the message names the file already)."""
    return getattr(e, "strerror", None) or str(e)


def _open_input(av, src: Path):
    from upstep.io import check_input

    check_input(src)  # missing, a folder, or empty: the same words as for images
    try:
        inp = av.open(str(src))
    except av.FFmpegError as e:
        raise VideoError(f"{src}: not a video ffmpeg can read, or truncated ({_reason(e)})") from e
    if not inp.streams.video:
        inp.close()
        raise VideoError(f"{src}: has no video stream")
    return inp


def _add_video_stream(out, codec: str, rate: Fraction, width: int, height: int, crf: int, like):
    """An output video stream; for YUV formats tagged with the colours of ``like`` (the input's
    codec context): its matrix (or BT.601, which PyAV decodes untagged frames with), limited
    range, its primaries and transfer. The frames are converted with that matrix, so the tags
    say what the pixels are, whatever size the output is (players guess BT.709 for HD)."""
    av = _av()
    try:
        info = av.codec.Codec(codec, "w")
    except (av.FFmpegError, ValueError) as e:
        raise VideoError(f"video codec {codec!r} is not available in this ffmpeg build") from e
    names = [f.name for f in info.video_formats or []]
    pix = LOSSLESS_RGB.get(info.name) or ("yuv420p" if "yuv420p" in names or not names else names[0])
    opts = {"crf": str(crf)} if info.name in ("libx264", "libx264rgb", "libx265", "libvpx-vp9") else {}
    if info.name == "libvpx-vp9":
        opts["b"] = "0"  # constant quality
    stream = out.add_stream(info.name, rate=rate, options=opts)
    stream.width, stream.height, stream.pix_fmt = width, height, pix
    if not pix.startswith(("yuv", "nv")):
        return stream
    cc = stream.codec_context
    cc.colorspace = like.colorspace if like.colorspace not in (0, UNSPECIFIED) else BT601
    cc.color_range = LIMITED_RANGE
    for tag in ("color_primaries", "color_trc"):
        if getattr(like, tag) != UNSPECIFIED:
            setattr(cc, tag, getattr(like, tag))
    return stream


def upscale_video(up, src: str | Path, dest: str | Path, *, steps: int | None = None, seed: int = 0,
                  colorfix: str = "none", strength: float | None = None, codec: str | None = None, crf: int = 18,
                  max_pixels: int | None = None, overwrite: bool = False, progress: bool = True) -> Path:
    """Upscale every frame of ``src`` with ``up`` (an ``upstep.api.Upscaler``) into ``dest``.

    ``codec``: an ffmpeg encoder name (default: H.264 for .mp4/.mov/.mkv, VP9 for .webm);
    ``ffv1`` or ``libx264rgb`` (with ``crf=0``) are lossless. ``crf``: quality of H.264/H.265/VP9.
    """
    from upstep.io import DEFAULT_MAX_PIXELS, check_destination

    av = _av()
    src, dest = Path(src), Path(dest)
    if not is_video(dest):
        raise VideoError(f"{dest}: a video is written to a video file name ({', '.join(sorted(VIDEO_EXTS))})")
    check_destination(dest, overwrite=overwrite, inputs=[src])
    max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    inp = _open_input(av, src)
    with inp:
        vin = inp.streams.video[0]
        w, h = vin.codec_context.width, vin.codec_context.height
        if w * h > max_pixels:  # the decompression-bomb guard of the image path, per frame
            raise VideoError(f"{src}: {w}x{h} frames = {w * h:,} pixels exceed the limit of {max_pixels:,}; "
                             "raise it with --max-pixels if the file is trusted")
        if min(w, h) < 2:
            raise VideoError(f"{src}: {w}x{h} frames are too small to upscale")
        up.check_steps(steps)   # before any frame is encoded
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        copied = [s for s in inp.streams if s.type in ("audio", "subtitle")]
        expected = vin.frames or None  # frame count from the container header, when it has one

        picked = []   # strength "auto" (or a model's auto default) is picked on the first frame, then kept:
                      # a strength that changed from frame to frame would flicker

        def upscale_frame(img: Image.Image) -> Image.Image:  # the image path; same seed: same noise
            if not picked:
                from upstep.io import loaded_from_pil, to_model_rgb

                picked.append(up.resolve_strength(strength, to_model_rgb(loaded_from_pil(img))))
            s = 1.0 if picked[0] is None else picked[0]   # 1: the model's own weights, not auto again
            return up.upscale(img, steps=steps, seed=seed, colorfix=colorfix, strength=s)

        def write(tmp: str) -> None:
            with av.open(tmp, "w") as out, tqdm(total=expected, desc=src.name, unit="frame",
                                                disable=not progress) as bar:
                vout = _add_video_stream(out, codec or DEFAULT_CODEC.get(dest.suffix.lower(), "libx264"),
                                         rate, w * up.scale, h * up.scale, crf, vin.codec_context)
                vout.codec_context.time_base = vin.time_base  # keep the input's timestamps
                try:
                    outs = {s.index: out.add_stream_from_template(s) for s in copied}
                except (av.FFmpegError, ValueError) as e:
                    raise VideoError(f"{dest}: the {dest.suffix} container cannot hold this input's audio "
                                     f"as is ({_reason(e)}); write .mkv instead") from e
                n, end = _transcode(inp, out, vout, outs, upscale_frame, bar, src)
            if n == 0:
                raise VideoError(f"{src}: no frame could be decoded")
            if expected and n < expected:
                raise VideoError(f"{src}: truncated: the header promises {expected} frames, "
                                 f"only {n} could be decoded")
            # containers without a frame count (mkv, webm) still declare a duration: data that stops
            # well short of it is a cut file, not a short one
            declared = inp.duration / 1e6 if inp.duration else None
            if declared and end - (inp.start_time or 0) / 1e6 < declared - max(1.0, 0.1 * declared):
                raise VideoError(f"{src}: truncated: the header says {declared:.1f} s, "
                                 f"the data stops at {end:.1f} s")

        try:
            atomic_write(dest, write, suffix=dest.suffix)
        except av.FFmpegError as e:
            raise VideoError(f"{dest}: could not write the video ({_reason(e)})") from e
    return dest


def _transcode(inp, out, vout, outs: dict, upscale_frame, bar, src: Path) -> tuple[int, float]:
    """Stream ``inp`` into ``out``: video frames through ``upscale_frame`` into ``vout``, the
    packets of the streams in ``outs`` (input index -> output stream) copied. Returns the number
    of frames and where the data ended (s)."""
    av = _av()
    vin = inp.streams.video[0]
    frame_s = 1 / float(vin.average_rate or 25)
    n, end = 0, 0.0
    try:
        for packet in inp.demux(vin, *[inp.streams[i] for i in outs]):
            if packet.stream.index in outs:
                if packet.dts is not None:  # the flush packet at the end has none
                    if packet.pts is not None:
                        end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
                    packet.stream = outs[packet.stream.index]
                    out.mux(packet)
                continue
            for frame in packet.decode():
                sr = upscale_frame(Image.fromarray(frame.to_ndarray(format="rgb24")))
                new = av.VideoFrame.from_ndarray(np.asarray(sr), format="rgb24")
                if vout.codec_context.colorspace != UNSPECIFIED:  # YUV out: the matrix it is tagged with
                    new = new.reformat(format=vout.pix_fmt, dst_colorspace=vout.codec_context.colorspace)
                new.pts, new.time_base = frame.pts, frame.time_base
                out.mux(vout.encode(new))
                n += 1
                end = max(end, (frame.time or 0.0) + frame_s)
                bar.update(1)
        out.mux(vout.encode(None))
    except av.FFmpegError as e:
        raise VideoError(f"{src}: corrupt or truncated video data after {n} frames ({_reason(e)})") from e
    return n, end
