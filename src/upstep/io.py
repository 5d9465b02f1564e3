"""Image I/O that never loses data.

* ``read_image``: whatever Pillow opens, any mode, EXIF orientation applied, decompression
  bombs refused before any pixel is decoded, truncated/empty/non-image files reported in one
  line that names the file.
* ``LoadedImage`` keeps what an upscaler must give back: grayscale stays grayscale, alpha is
  kept aside (upscaled separately and put back), 16-bit stays 16-bit where the format allows,
  the ICC profile, EXIF (orientation reset to 1, since it has been applied) and PNG text chunks
  are carried over.
* ``write_image``: atomic (temp file + rename), never over an input, never over an existing
  file unless ``overwrite``; writes the metadata the format can hold (EXIF pixel sizes updated).
* ``run_batch``: goes on past a bad file and reports every failure at the end.

Tensor convention: CHW float32 in [0, 1].
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, PngImagePlugin, UnidentifiedImageError
from tqdm import tqdm

from upstep.atomic import atomic_write
from upstep.errors import UpstepError

DEFAULT_MAX_PIXELS = int(os.environ.get("UPSTEP_MAX_PIXELS", 64_000_000))
READ_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF",
                 ".tiff": "TIFF", ".bmp": "BMP"}
FORMAT_EXTS = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "tiff": ".tif",
               "tif": ".tif", "bmp": ".bmp"}  # --format choices
SIXTEEN_BIT_FORMATS = {"PNG", "TIFF"}  # the formats that store 16-bit grayscale; others get 8 bits
NO_ALPHA_FORMATS = {"JPEG", "BMP"}     # the formats that cannot store an alpha channel
# BT.601 luma, used to turn the model's RGB output back into grayscale
LUMA = (0.299, 0.587, 0.114)


class ImageReadError(UpstepError):
    pass


class ImageWriteError(UpstepError):
    pass


class OutputExistsError(ImageWriteError):
    pass


class OutputIsInputError(ImageWriteError):
    pass


@dataclass
class LoadedImage:
    rgb: torch.Tensor  # CHW in [0, 1]: 3 channels, or 1 for grayscale
    alpha: torch.Tensor | None  # 1HW in [0, 1]
    is_gray: bool
    bit_depth: int
    mode: str
    path: Path | None = None
    format: str | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None  # orientation already applied and reset to 1
    text: dict[str, str] | None = None  # PNG tEXt/iTXt/zTXt chunks

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[-1], self.rgb.shape[-2]


def _to_tensor(arr: np.ndarray, maxval: float) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr).astype(np.float32) / maxval)
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1)


def _metadata(im: Image.Image) -> tuple[bytes | None, dict[str, str] | None]:
    """(EXIF with orientation reset to 1, PNG text chunks) of an opened image."""
    # a TIFF's "EXIF" is its own layout tags (strips, sizes): not metadata to carry over
    exif = im.getexif() if im.format != "TIFF" else Image.Exif()
    if ExifTags.Base.Orientation in exif:
        exif[ExifTags.Base.Orientation] = 1  # the pixels are turned upright on reading
    text = {k: v for k, v in getattr(im, "text", {}).items() if isinstance(v, str)} or None
    return (exif.tobytes() if len(exif) else None), text


def _rawmode(im: Image.Image) -> str | None:
    """How the file stores its pixels (e.g. "RGB", "RGB;16B", "L;2"), while ``im`` is not loaded yet."""
    tile = getattr(im, "tile", None)
    if not tile:
        return None
    raw = tile[0][3]
    return raw if isinstance(raw, str) else raw[0]


def loaded_from_pil(im: Image.Image, path: Path | None = None, rawmode: str | None = None) -> LoadedImage:
    """Normalise any PIL mode to (rgb or gray, alpha, bit depth). ``rawmode``: how the file stores
    its pixels (``im.tile``'s, read before ``load()`` empties it; None: read it here)."""
    img = _loaded_pixels(im, path, rawmode or _rawmode(im))
    img.exif, img.text = _metadata(im)
    return img


def _loaded_pixels(im: Image.Image, path: Path | None, rawmode: str | None = None) -> LoadedImage:
    mode, fmt, icc = im.mode, im.format, im.info.get("icc_profile")
    im = ImageOps.exif_transpose(im)
    if im.mode == "P" or im.mode == "PA":
        im = im.convert("RGBA" if ("transparency" in im.info or im.mode == "PA") else "RGB")
    if im.mode == "1":
        im = im.convert("L")
    if im.mode in ("RGBa", "La"):  # premultiplied alpha
        im = im.convert("RGBA" if im.mode == "RGBa" else "LA")
    key = im.info.get("transparency")
    # a PNG colour key (tRNS): pixels of that colour are transparent. Only for 8-bit files: Pillow reads
    # 16-bit and 1/2/4-bit ones as 8-bit but keeps the key in the file's units
    if isinstance(key, (int, tuple)) and im.mode in ("RGB", "L") and rawmode == im.mode:
        arr = np.asarray(im)
        hit = np.all(arr == np.asarray(key, dtype=arr.dtype), -1) if im.mode == "RGB" else arr == key
        if hit.any():
            alpha = np.where(hit, 0, 255).astype(np.uint8)
            im = Image.fromarray(np.dstack([arr, alpha]) if im.mode == "RGB" else np.stack([arr, alpha], -1),
                                 "RGBA" if im.mode == "RGB" else "LA")
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im).astype(np.float64)
        return LoadedImage(_to_tensor(np.clip(arr, 0, 65535), 65535.0), None, True, 16, mode, path, fmt, icc)
    if im.mode == "F":
        arr = np.asarray(im).astype(np.float64)
        hi = 255.0 if arr.max() > 1.0 else 1.0
        return LoadedImage(_to_tensor(np.clip(arr, 0, hi), hi), None, True, 8, mode, path, fmt, icc)
    if im.mode == "LA":
        arr = np.asarray(im)
        return LoadedImage(_to_tensor(arr[..., 0], 255.0), _to_tensor(arr[..., 1], 255.0), True, 8, mode, path, fmt, icc)
    if im.mode == "L":
        return LoadedImage(_to_tensor(np.asarray(im), 255.0), None, True, 8, mode, path, fmt, icc)
    if im.mode == "RGBA":
        arr = np.asarray(im)
        return LoadedImage(_to_tensor(arr[..., :3], 255.0), _to_tensor(arr[..., 3], 255.0), False, 8, mode, path, fmt, icc)
    if im.mode != "RGB":  # CMYK, YCbCr, LAB, HSV, RGBX, ...
        icc = None if im.mode == "CMYK" else icc  # a CMYK profile does not describe the RGB result
        im = im.convert("RGB")
    return LoadedImage(_to_tensor(np.asarray(im), 255.0), None, False, 8, mode, path, fmt, icc)


def check_input(path: Path) -> None:
    """The reasons a path cannot be an input image that need no decoding."""
    if not path.exists():
        raise ImageReadError(f"{path}: input file not found")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")


def read_image(path: str | Path, *, max_pixels: int | None = None, min_size: int = 2) -> LoadedImage:
    path = Path(path)
    max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
    check_input(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        if isinstance(e, UnidentifiedImageError):
            raise ImageReadError(f"{path}: not an image Pillow can read (unknown or corrupt format)") from e
        raise ImageReadError(f"{path}: too large to decode safely ({e}); raise the limit with --max-pixels") from e
    except OSError as e:
        raise ImageReadError(f"{path}: cannot open ({e})") from e
    with im:
        w, h = im.size
        if w * h > max_pixels:  # checked before any pixel data is decoded
            raise ImageReadError(f"{path}: {w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,} "
                                 "(decompression-bomb guard); raise it with --max-pixels if the file is trusted")
        if min(w, h) < min_size:
            raise ImageReadError(f"{path}: {w}x{h} is too small to upscale (needs at least {min_size}px a side)")
        try:
            im.seek(0)  # GIF/APNG/TIFF: the first frame
            rawmode = _rawmode(im)   # load() empties the tile list
            im.load()
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageReadError(f"{path}: truncated or corrupt image data ({e})") from e
        return loaded_from_pil(im, path, rawmode)


def to_model_rgb(img: LoadedImage) -> torch.Tensor:
    """3HW in [0, 1] for the model (gray repeated to 3 channels)."""
    return img.rgb.expand(3, -1, -1).contiguous() if img.is_gray else img.rgb


def _quant(t: torch.Tensor, maxval: int, dtype) -> np.ndarray:
    return np.round(t.clamp(0, 1).numpy() * maxval).astype(dtype)


def from_model_rgb(rgb: torch.Tensor, like: LoadedImage, alpha: torch.Tensor | None = None) -> Image.Image:
    """Back to the input's kind: gray -> L (BT.601 luma) or I;16, alpha re-attached.
    16-bit colour comes back as 8-bit RGB (Pillow cannot write 16-bit RGB PNG)."""
    if rgb.ndim == 4:
        rgb = rgb[0]
    rgb = rgb.detach().float().cpu()
    if like.is_gray:
        y = (rgb * torch.tensor(LUMA).view(3, 1, 1)).sum(0) if rgb.shape[0] == 3 else rgb[0]
        if like.bit_depth == 16:
            return Image.fromarray(_quant(y, 65535, np.uint16))  # mode I;16
        gray = _quant(y, 255, np.uint8)
        if alpha is not None:
            return Image.fromarray(np.stack([gray, _quant(alpha[0], 255, np.uint8)], -1), "LA")
        return Image.fromarray(gray, "L")
    arr = _quant(rgb.permute(1, 2, 0), 255, np.uint8)
    if alpha is not None:
        return Image.fromarray(np.concatenate([arr, _quant(alpha[0], 255, np.uint8)[..., None]], -1), "RGBA")
    return Image.fromarray(arr, "RGB")


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name the same file or folder (links and relative paths resolved)."""
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def check_destination(path: Path, *, overwrite: bool = False, inputs: Iterable = ()) -> None:
    """Refuse to write over an input, or over an existing file unless ``overwrite``."""
    for src in inputs:
        if same_file(Path(src), path):
            raise OutputIsInputError(f"{path}: is one of the inputs; refusing to write over it "
                                     "(choose another output or --suffix)")
    if path.exists() and not overwrite:
        raise OutputExistsError(f"{path}: exists; pass --overwrite to replace it")


def _exif_for(img: Image.Image, exif: bytes) -> Image.Exif:
    """The input's EXIF with the pixel dimensions of the upscaled image."""
    e = Image.Exif()
    e.load(exif)
    sub = e.get_ifd(ExifTags.IFD.Exif)
    for tag, v in ((ExifTags.Base.ExifImageWidth, img.width), (ExifTags.Base.ExifImageHeight, img.height)):
        if tag in sub:
            sub[tag] = v
    return e


def write_image(img: Image.Image, path: str | Path, *, overwrite: bool = False, inputs: Iterable = (),
                icc_profile: bytes | None = None, exif: bytes | None = None, text: dict | None = None,
                quality: int = 95) -> Path:
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in WRITE_FORMATS:
        raise ImageWriteError(f"{path}: cannot write '{ext or '(no extension)'}' files; use one of "
                              f"{', '.join(sorted(WRITE_FORMATS))}")
    check_destination(path, overwrite=overwrite, inputs=inputs)
    fmt = WRITE_FORMATS[ext]
    if fmt in NO_ALPHA_FORMATS and img.mode in ("RGBA", "LA"):
        raise ImageWriteError(f"{path}: {fmt} cannot store the alpha channel of this image; write .png or .webp")
    if fmt not in SIXTEEN_BIT_FORMATS and img.mode == "I;16":
        img = Image.fromarray((np.asarray(img, dtype=np.float64) / 257).round().astype(np.uint8), "L")
    kwargs = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    if icc_profile and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kwargs["icc_profile"] = icc_profile
    if exif and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        kwargs["exif"] = _exif_for(img, exif)
    if text and fmt == "PNG":
        info = PngImagePlugin.PngInfo()
        for k, v in text.items():
            info.add_itxt(k, v)
        kwargs["pnginfo"] = info
    try:
        atomic_write(path, lambda tmp: img.save(tmp, format=fmt, **kwargs), suffix=ext)
    except (OSError, ValueError) as e:  # the reason only: the temporary file's name means nothing to users
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ImageWriteError(f"{path}: could not write ({reason})") from e
    return path


def list_input_tree(paths: Iterable[str | Path], recursive: bool = False,
                    exclude: str | Path | None = None, exts: Iterable[str] = READ_EXTS) -> list[tuple[Path, Path]]:
    """``(file, subfolder)`` for each input: folders expand to their image files (sorted; with
    ``recursive`` those of every subfolder too, other files skipped without a word), each with its
    folder relative to the folder given (``Path()`` at the top), so an output can mirror the tree.
    Explicit paths are kept as given, even missing ones, so a batch reports them as failures
    instead of silently skipping them. Files under ``exclude`` (e.g. the output folder, when it
    lies inside an input folder) are left out. ``exts``: the file name extensions a folder is read
    for (lower case)."""
    skip = Path(exclude).resolve() if exclude is not None else None
    exts = set(exts)
    out: list[tuple[Path, Path]] = []
    for p in map(Path, paths):
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            found = sorted(f for f in it if f.is_file() and f.suffix.lower() in exts
                           and not (skip is not None and f.resolve().is_relative_to(skip)))
            out += [(f, f.parent.relative_to(p)) for f in found]
        else:
            out.append((p, Path()))
    return out


def list_inputs(paths: Iterable[str | Path], recursive: bool = False) -> list[Path]:
    """The files of ``list_input_tree``."""
    return [f for f, _ in list_input_tree(paths, recursive)]


def output_is_folder(out: str | Path, n_inputs: int) -> bool:
    """Whether ``-o out`` is a folder: several inputs, an existing folder, a name without an
    extension, or one written with a trailing separator (test the string as typed: ``Path`` drops it)."""
    seps = tuple(s for s in (os.sep, os.altsep) if s)
    return n_inputs > 1 or Path(out).is_dir() or str(out).endswith(seps) or Path(out).suffix == ""


def output_path_for(src: Path, out: str | Path, n_inputs: int, suffix: str = "", ext: str | None = None,
                    subfolder: str | Path = "") -> Path:
    """Where ``src``'s result goes: ``out`` itself for one input written to a file name, else
    ``out/subfolder/<stem><suffix><ext>`` (``ext``: the input's, .png where it cannot be written)."""
    folder_mode = output_is_folder(out, n_inputs)
    src, out = Path(src), Path(out)
    if not folder_mode:
        return out
    if ext is None:
        ext = src.suffix.lower()
        if ext not in WRITE_FORMATS:
            ext = ".png"  # e.g. .gif: write the upscaled first frame losslessly
    return out / subfolder / f"{src.stem}{suffix}{ext}"


@dataclass
class BatchReport:
    ok: list
    failed: list

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def summary(self) -> str:
        """Every failure, one line each; a header line when there was more than one item."""
        if len(self.ok) + len(self.failed) == 1:
            item, reason = self.failed[0]
            return reason if reason.startswith(f"{item}: ") else f"{item}: {reason}"
        lines = [f"{len(self.failed)} of {len(self.ok) + len(self.failed)} failed:"]
        # a reason that already starts with the file's name is not prefixed with it again
        lines += [f"  {reason}" if reason.startswith(f"{item}: ") else f"  {item}: {reason}"
                  for item, reason in self.failed]
        return "\n".join(lines)


def run_batch(items: list, fn: Callable, *, progress: bool = True) -> BatchReport:
    report = BatchReport([], [])
    for item in tqdm(items, desc="images", disable=not progress or len(items) < 2):
        try:
            report.ok.append((item, fn(item)))
        except (UpstepError, OSError, ValueError) as e:
            report.failed.append((item, str(e)))
        except Exception as e:  # noqa: BLE001 - a batch goes on; the reason is reported
            report.failed.append((item, f"{type(e).__name__}: {e}"))
    return report
