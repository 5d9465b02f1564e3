"""Soak test of ``upstep serve`` (not a test: minutes, the shipped default-x4 on CPU): does the
queue hold, is any accepted job lost, and does the server's memory stay bounded?

    python benchmarks/serve_load.py [--n 240] [--clients 24] [--burst 30]
    # writes docs/results/serve_load/{results.json,results.md}

A real ``upstep serve`` on localhost with its default limits except ``--max-upload-mb 2``
(8 jobs queued or running, 2048 MB decoded; results kept 10 min, the 16 most recent). Two phases:

1. burst: ``--burst`` uploads of a 256x256 noise PNG sent at once, no retry (the issue's "30 uploads
   at once", at a size this CPU processes in seconds): how many are accepted, how many answered 503;
2. soak: ``--n`` uploads, one in six bad (corrupt, truncated, decompression bomb, over the upload
   limit, empty), the rest valid images of 48-160 px in RGB, L and RGBA, sent by ``--clients``
   concurrent clients that wait ``Retry-After`` on a 503 and send again; each client polls its job
   until it ends and fetches the result.

Counted: every request's answer, accepted jobs, 503s, 400/413s, jobs that ended in error, lost jobs
(an accepted id answering 404 or 410 before its result was fetched: must be 0), results fetched
with the right size; the server's resident memory (VmRSS sampled every 0.1 s, VmHWM at the end)
against its value after a warm-up job.
"""
from __future__ import annotations

import argparse
import functools
import io
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from upstep.evaluate.report import md_table, provenance, provenance_md, write_json
from upstep.web.testing import call, memory_mb, reset_peak_memory, start_server, stop_server, wait_job

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results" / "serve_load"
MAX_UPLOAD_MB = 2
SERVER_ARGS = ("--device", "cpu", "--model", "default-x4", "--max-upload-mb", str(MAX_UPLOAD_MB))


def png(size, mode="RGB", seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format="PNG")
    return buf.getvalue()


@functools.lru_cache(maxsize=None)
def bad_upload(kind: str) -> bytes:
    good = png((64, 48))
    if kind == "corrupt":
        return b"garbage" * 50
    if kind == "truncated":
        return good[: len(good) // 2]
    if kind == "bomb":
        buf = io.BytesIO()
        Image.new("L", (8200, 8000)).save(buf, format="PNG")  # 65.6 M pixels > the default 64 M, 64 KB
        return buf.getvalue()
    if kind == "too_big":
        return np.random.default_rng(0).bytes(MAX_UPLOAD_MB * 2**20 + 1000)
    return b""  # empty


BAD = ("corrupt", "truncated", "bomb", "too_big", "empty")


def workload(n: int) -> list[tuple[str, bytes, tuple | None]]:
    """(name, body, expected output size or None for a bad upload), shuffled with a fixed seed."""
    rng = np.random.default_rng(0)
    items = []
    for i in range(n):
        if i % 6 == 5:
            kind = BAD[(i // 6) % len(BAD)]
            items.append((f"bad_{kind}_{i}.png", bad_upload(kind), None))
        else:
            w, h = (int(v) for v in rng.integers(48, 161, 2))
            mode = ("RGB", "L", "RGBA")[i % 3]
            items.append((f"img{i}.png", png((w, h), mode, seed=i), (4 * w, 4 * h)))
    rng.shuffle(items)
    return items


class Tally:
    def __init__(self):
        self.lock = threading.Lock()
        self.counts: dict[str, int] = {}

    def add(self, key: str, k: int = 1) -> None:
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + k


def post(url: str, name: str, body: bytes):
    headers: dict = {}
    q = urllib.parse.urlencode({"name": name, "model": "default-x4"})
    try:
        status, answer = call(f"{url}/api/jobs?{q}", body, headers=headers)
    except OSError as e:  # no answer at all
        return None, str(e), 0
    return status, answer, int(headers.get("retry-after") or 0)


def follow(url: str, job_id: str, want: tuple | None, tally: Tally) -> None:
    """Poll an accepted job to its end and fetch its result."""
    try:
        st = wait_job(url, job_id, timeout=600)
    except AssertionError:
        tally.add("lost")
        return
    if st["state"] != "done":
        tally.add("jobs_failed")
        return
    status, data = call(f"{url}/api/jobs/{job_id}/result.png")
    if status != 200:
        tally.add("lost")
    elif Image.open(io.BytesIO(data)).size == want:
        tally.add("results_fetched")
    else:
        tally.add("results_wrong_size")


def client(url: str, item, tally: Tally, retry: bool) -> None:
    name, body, want = item
    while True:
        status, answer, retry_after = post(url, name, body)
        tally.add(f"http_{status}" if status else "no_answer")
        if status == 503 and retry:
            time.sleep(retry_after)
            continue
        break
    if status == 200:
        tally.add("accepted")
        follow(url, answer["id"], want, tally)


def sample_memory(pid: int, stop: threading.Event, rss: list) -> None:
    while not stop.is_set():
        try:
            rss.append(memory_mb(pid)["rss"])
        except OSError:
            return
        stop.wait(0.1)


def run_phase(url: str, items, clients: int, retry: bool) -> tuple[dict, float]:
    tally = Tally()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda it: client(url, it, tally, retry), items))
    return dict(sorted(tally.counts.items())), time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=240, help="uploads in the soak phase")
    ap.add_argument("--clients", type=int, default=24, help="concurrent clients in the soak phase")
    ap.add_argument("--burst", type=int, default=30, help="256x256 uploads sent at once in the burst phase")
    args = ap.parse_args()

    proc, url = start_server(*SERVER_ARGS)
    try:
        st = wait_job(url, post(url, "warm.png", png((160, 160)))[1]["id"], timeout=300)  # model loaded
        assert st["state"] == "done", st
        warm = memory_mb(proc.pid)  # peak: with one job's working memory
        base = warm["rss"]
        reset_peak_memory(proc.pid)
        stop, rss = threading.Event(), []
        sampler = threading.Thread(target=sample_memory, args=(proc.pid, stop, rss), daemon=True)
        sampler.start()

        burst_items = [(f"burst{i}.png", png((256, 256), seed=1000 + i), (1024, 1024)) for i in range(args.burst)]
        burst, burst_s = run_phase(url, burst_items, len(burst_items), retry=False)
        soak, soak_s = run_phase(url, workload(args.n), args.clients, retry=True)
        stop.set()
        sampler.join()
        mem = memory_mb(proc.pid)
    finally:
        stop_server(proc)

    n_bad = sum(1 for i in range(args.n) if i % 6 == 5)
    burst_upload_mb = sum(len(b) for _, b, _ in burst_items) / 2**20
    result = {**provenance(),
              "server": "upstep serve " + " ".join(SERVER_ARGS),
              "limits": {"max_jobs": 8, "max_queue_mb": 2048, "max_upload_mb": MAX_UPLOAD_MB,
                         "keep_results": 16, "keep_minutes": 10},
              "burst": {"uploads": args.burst, "size": "256x256 RGB noise PNG",
                        "upload_mb_total": round(burst_upload_mb, 1),
                        "decoded_mb_if_all_held": round(args.burst * 256 * 256 * 16 / 2**20, 1),
                        "seconds": round(burst_s, 1), **burst},
              "soak": {"uploads": args.n, "valid": args.n - n_bad, "bad": n_bad, "clients": args.clients,
                       "retry_on_503": True, "seconds": round(soak_s, 1), **soak},
              "lost_jobs": burst.get("lost", 0) + soak.get("lost", 0),
              "memory_mb": {"after_warm_up": round(base, 1), "warm_up_peak": round(warm["peak"], 1),
                            "peak": round(mem["peak"], 1),
                            "peak_growth": round(mem["peak"] - base, 1), "end": round(mem["rss"], 1),
                            "samples": len(rss), "sampled_max": round(max(rss, default=0), 1),
                            # VmRSS at each tenth of the run: a bound shows as a plateau
                            "by_tenth": [round(rss[min(len(rss) - 1, k * len(rss) // 10)], 1) for k in range(11)]
                            if rss else []}}
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(OUT / "results.json", result)

    def row(phase, r):
        return [phase, r["uploads"], r.get("accepted", 0), r.get("http_503", 0),
                r.get("http_400", 0) + r.get("http_413", 0), r.get("no_answer", 0), r.get("jobs_failed", 0),
                r.get("lost", 0), r.get("results_fetched", 0), r["seconds"]]

    m = result["memory_mb"]
    md = "\n".join([
        "# upstep serve under load (soak)", "", provenance_md(result), "",
        f"Server: `{result['server']}` (default limits otherwise: at most 8 jobs queued or running, "
        "2048 MB decoded; finished results kept 10 min, the 16 most recent). Burst: uploads sent at once, "
        "no retry. Soak: clients wait Retry-After on a 503 and send again; one upload in six is bad.", "",
        md_table(["phase", "uploads", "accepted", "503 answers", "400/413", "no answer", "jobs failed",
                  "lost jobs", "results fetched", "seconds"],
                 [row("burst", result["burst"]), row("soak", result["soak"])]), "",
        f"Lost jobs (an accepted id answering 404/410 before its result was fetched): **{result['lost_jobs']}**.", "",
        f"Server resident memory (the worker hands freed memory back after each job): {m['after_warm_up']:.0f} MB "
        f"after a warm-up job on a 160x160 image (peak during it {m['warm_up_peak']:.0f} MB); during the load: "
        f"peak {m['peak']:.0f} MB (VmHWM), {m['end']:.0f} MB at the end; at each tenth of the run (VmRSS): "
        f"{', '.join(f'{v:.0f}' for v in m['by_tenth'])} MB. The burst's "
        f"{args.burst} images would decode to {result['burst']['decoded_mb_if_all_held']:.0f} MB if all were held "
        "(16 bytes a pixel); queued jobs hold their compressed upload instead.", ""])
    (OUT / "results.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
