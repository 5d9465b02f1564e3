"""How long the metrics take on a 100-image set: BSD100 x4, bicubic output vs HR, each metric
timed over the whole set (images at their native 481x321 / 321x481 size).

    python benchmarks/metric_speed.py        # writes docs/results/metric_speed.{json,md}
"""
from __future__ import annotations

import time
from pathlib import Path

import torch

from upstep.evaluate.report import md_table, provenance, provenance_md, write_json
from upstep.evaluate.sets import open_set
from upstep.metrics import available_metrics, measure
from upstep.peers import BicubicPeer

OUT = Path(__file__).resolve().parents[1] / "docs" / "results"


def main() -> None:
    bset = open_set("bsd100")
    pairs = []
    for item in bset.items:
        lr, hr = bset.load(item, 4)
        pairs.append((BicubicPeer().upscale(lr, 4), hr))
    names, missing = available_metrics()
    timings = {}
    for name in names:
        t0 = time.perf_counter()
        for sr, hr in pairs:
            measure(sr, hr, [name], crop_border=4)
        timings[name] = time.perf_counter() - t0
    result = {"set": "bsd100", "images": len(pairs), "seconds_per_set": timings,
              "total_seconds": sum(timings.values()), "torch_threads": torch.get_num_threads(),
              "unavailable": missing, **provenance()}
    write_json(OUT / "metric_speed.json", result)
    rows = [[n, s, s / len(pairs)] for n, s in timings.items()] + [["all", result["total_seconds"],
                                                                      result["total_seconds"] / len(pairs)]]
    md = "\n".join([f"# Metric speed on BSD100 ({len(pairs)} images, x4, CPU)", "", provenance_md(result), "",
                    md_table(["metric", "seconds for the set", "seconds per image"], rows), ""])
    (OUT / "metric_speed.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
