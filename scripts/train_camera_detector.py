"""Train the camera-like-LR detector of ``--strength auto`` (``upstep.camera_detect``) on the
training pool and write it as safetensors + JSON.

    python scripts/train_camera_detector.py --out runs/camera_detector_jpeg \
        --positive '{"camera_blur": 0.5, "camera_jpeg": 0.5}'          # the shipped one (12 min on 2 shared cores)

Data: 3 random 256² crops from each of the first 700 training-pool images (shuffled with --seed)
whose sides are 256 px or more (657 of them in ../shared/data), each degraded x4 once as the
camera-like class (positive; default ``upstep.camera_detect.POSITIVE``, camera_blur half of it
saved as JPEG; ``--positive camera_blur`` made the first detector, runs/camera_detector) and once
as the Real-ESRGAN / bicubic mixture (negative). No dev or benchmark image is read. The log of the run
(loss every 500 steps, the held-apart accuracy) goes into config.json and log.jsonl.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    from upstep.camera_detect import NEGATIVE, POSITIVE, save_detector, train_detector, training_crops
    from upstep.degrade import check_pipeline
    from upstep.evaluate.report import provenance
    from upstep.io import list_inputs
    from upstep.paths import data_root

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output folder (config.json, model.safetensors, log.jsonl)")
    ap.add_argument("--train-dir", default=None, help="HR photos (default: the data root's train/)")
    ap.add_argument("--images", type=int, default=700)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--positive", default=None,
                    help="the camera-like class: a degradation name or a JSON mixture, e.g. "
                         "'{\"camera_blur\": 0.5, \"camera_jpeg\": 0.5}' (default: upstep.camera_detect.POSITIVE)")
    a = ap.parse_args(argv)
    try:                          # before the images are read
        positive = POSITIVE if a.positive is None else json.loads(a.positive) if a.positive.startswith("{") else a.positive
        check_pipeline(positive)
    except ValueError as e:       # json.JSONDecodeError is a ValueError too
        ap.error(f"--positive {a.positive!r}: {e}")
    root = Path(a.train_dir) if a.train_dir else data_root() / "train"
    t0 = time.time()
    hr = training_crops(list_inputs([root], recursive=True), a.images, 3, 256, a.seed)
    log = []
    det, result = train_detector(hr, steps=a.steps, seed=a.seed, log=log.append, positive=positive)
    prov = provenance(["python", "scripts/train_camera_detector.py", *(argv if argv is not None else sys.argv[1:])])
    info = {**{k: prov[k] for k in ("command", "date")}, "train_dir": str(root), "crops": int(len(hr)),
            "steps": a.steps, "seed": a.seed, "positive": positive, "negative": NEGATIVE, **result,
            "elapsed_s": round(time.time() - t0, 1)}
    save_detector(det, a.out, info)
    (Path(a.out) / "log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in log))
    print(json.dumps(info, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
