"""Pack the training pool small enough to travel to a GPU machine (the device tool carries 64 MiB).

    python scripts/pack_train_pool.py OUT [--size 192] [--quality 90]

Every image of ``$UPSTEP_DATA/train`` (or ../shared/data/train) with a short side of at least 128 px
gives one crop of at most SIZE x SIZE at a position seeded by the CRC-32 of its relative path,
saved as JPEG at QUALITY under OUT/train/<set>/<name>.jpg (names kept, so the validation split,
which hashes names, is the same). scripts/train_real_gpu.sh trained on this pack (192 px, q90:
1405 crops, 18 MB) with UPSTEP_DATA=OUT.
"""
import argparse
import io
import random
import zlib
from pathlib import Path

from PIL import Image, ImageOps

from upstep.paths import data_root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--size", type=int, default=192)
    ap.add_argument("--quality", type=int, default=90)
    a = ap.parse_args()
    root = data_root() / "train"
    total = n = 0
    for p in sorted(root.rglob("*")):
        if not p.is_file():
            continue
        try:
            with Image.open(p) as im:
                im = ImageOps.exif_transpose(im).convert("RGB")
        except OSError:
            continue
        w, h = im.size
        if min(w, h) < 128:
            continue
        rnd = random.Random(zlib.crc32(str(p.relative_to(root)).encode()))
        cw, ch = min(a.size, w), min(a.size, h)
        x, y = rnd.randint(0, w - cw), rnd.randint(0, h - ch)
        buf = io.BytesIO()
        im.crop((x, y, x + cw, y + ch)).save(buf, "JPEG", quality=a.quality)
        dest = Path(a.out) / "train" / p.relative_to(root).parent / (p.stem + ".jpg")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(buf.getvalue())
        total += buf.tell()
        n += 1
    print(f"{n} crops, {total / 2**20:.1f} MiB in {a.out}/train")


if __name__ == "__main__":
    main()
