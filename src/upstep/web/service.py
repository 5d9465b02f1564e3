"""The job queue behind ``upstep serve``: admission, one worker thread, retention.

Admission, in this order (every refusal is one line that names the uploaded file):

1. room: fewer than ``max_jobs`` jobs queued or running, else ``QueueFull`` (HTTP 503 with
   ``Retry-After``) before the body is read;
2. the body: at most ``max_upload_bytes`` (413), counted as it streams in; all requests together
   hold at most ``max_jobs * max_upload_bytes`` of bodies being received, else ``QueueFull``;
3. the CLI's checks: ``upstep.io.read_image`` (decompression-bomb guard on the header before any
   pixel is decoded, truncated, corrupt, empty, too small), one upload at a time;
4. room again, in jobs and in decoded bytes, checked and taken in one step: the queued and
   running jobs together decode to at most ``max_queue_bytes``, counting ``BYTES_PER_PIXEL`` a
   pixel (float32 RGBA: what the worker holds while it runs a job).

A queued job holds its upload as received (compressed); the worker decodes it when it takes the
job, so resident memory is bounded whatever the request pattern, by roughly
``2 * max_jobs * max_upload_bytes`` (bodies being received + queued uploads) + one decode for the
checks + the running job (its input and output, at most ``max_pixels`` times the scale squared)
+ the finished results kept (their PNGs).

Retention: queued and running jobs are never dropped. A finished job (done or error) is kept for
``keep_seconds`` after it finishes, and only the ``keep_results`` most recently finished:
whichever ends first. A dropped job's id answers "gone" with the rule, not "no such job".
"""
from __future__ import annotations

import io
import json
import math
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

from upstep.errors import UpstepError

BYTES_PER_PIXEL = 16  # float32 x 4 channels: a decoded job, as the worker holds it
REMEMBER_DROPPED = 1024  # ids of dropped jobs remembered, to answer "gone" rather than "no such job"


class QueueFull(UpstepError):
    """No room now: HTTP 503; ``retry_after`` in seconds."""

    def __init__(self, msg: str, retry_after: int):
        super().__init__(msg)
        self.retry_after = retry_after


class UploadRefused(UpstepError):
    """An upload that can never be accepted as it is (HTTP ``status``, 400 unless said)."""

    def __init__(self, msg: str, status: int = 400):
        super().__init__(msg)
        self.status = status


@dataclass(frozen=True)
class Limits:
    max_jobs: int = 8  # queued + running
    max_queue_bytes: int = 2 * 2**30  # decoded size of the queued + running jobs
    max_upload_bytes: int = 50 * 2**20
    max_pixels: int | None = None  # None: upstep.io's default (the CLI's)
    keep_results: int = 16  # finished jobs kept, the most recent ...
    keep_seconds: float = 600.0  # ... and for this long after they finish

    def __post_init__(self):
        for name, option in (("max_jobs", "--max-jobs"), ("max_queue_bytes", "--max-queue-mb"),
                             ("max_upload_bytes", "--max-upload-mb"), ("keep_results", "--keep-results"),
                             ("keep_seconds", "--keep-minutes")):
            if getattr(self, name) <= 0:
                raise UpstepError(f"{option} must be positive")

    def retention(self) -> str:
        return (f"finished results are kept {_minutes(self.keep_seconds)} after they finish, "
                f"and only the {self.keep_results} most recent")

    def public(self) -> dict:
        return {"max_jobs": self.max_jobs, "max_queue_bytes": self.max_queue_bytes,
                "max_upload_bytes": self.max_upload_bytes, "keep_results": self.keep_results,
                "keep_seconds": self.keep_seconds, "retention": self.retention()}


def _size(n: float) -> str:
    return f"{n / 1024:.0f} KB" if n < 2**20 else f"{n / 2**20:.0f} MB"


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 60 else f"{seconds:g} s"


@dataclass(frozen=True)
class Size:
    """What the user asks for besides the model: an output ``scale`` (1..8) or ``width`` and/or
    ``height`` (``upstep.api.plan_size``; none: x4), and a ``strength`` (0..1, ``upstep.strength``)."""

    scale: float | None = None
    width: int | None = None
    height: int | None = None
    strength: float | None = None

    @classmethod
    def from_query(cls, q) -> "Size":
        """From the API's query parameters; a one-line error for a value that is not a number."""
        from upstep.strength import check_strength

        def number(key, kind):
            v = (q.get(key) or "").strip()
            try:
                return kind(v) if v else None
            except ValueError:
                raise UploadRefused(f"{key} must be a number, got {v!r}") from None

        raw = (q.get("strength") or "").strip()
        strength = None if raw.lower() == "auto" else number("strength", float)   # auto: the model's default
        if strength is not None:
            try:
                strength = check_strength(strength)
            except UpstepError as e:
                raise UploadRefused(str(e)) from e
        return cls(number("scale", float), number("width", int), number("height", int), strength)


@dataclass
class Job:
    name: str
    model: str
    upload: bytes  # as received; dropped once decoded
    decoded_bytes: int
    size: tuple
    options: dict = field(default_factory=dict)  # passed to the upscaler
    state: str = "queued"  # queued | running | done | error
    done: int = 0
    total: int = 0
    error: str | None = None
    seconds: float | None = None
    input_png: bytes = b""
    result_png: bytes = b""
    out_size: tuple = ()
    strength_used: float | None = None  # what it ran at ("auto" resolved; None: not run yet)
    created: float = field(default_factory=time.time)
    finished: float | None = None

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")

    def status(self, limits: Limits, ahead: int) -> dict:
        st = {"state": self.state, "done": self.done, "total": self.total, "error": self.error,
              "seconds": self.seconds, "model": self.model, "size": self.size, "out_size": self.out_size,
              "options": self.options, "strength_used": self.strength_used, "download_name": f"{Path(self.name).stem or 'image'}_upscaled.png"}
        if self.state == "queued":
            st["ahead"] = ahead
        if self.finished is not None:
            st["kept_for_seconds"] = max(0, round(self.finished + limits.keep_seconds - time.time()))
            st["retention"] = limits.retention()
        return st


def _png(im) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _model_scale(folder: Path) -> int:
    try:
        return int(json.loads((folder / "config.json").read_text())["scale"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UpstepError(f"{folder}: not a model folder (config.json with a 'scale' is missing or broken)") from e


class Service:
    """Models on offer, the bounded job queue with its one worker thread, and the finished jobs."""

    def __init__(self, extra_models=(), *, device="auto", dtype="float32", tile=128, overlap=16,
                 limits: Limits | None = None):
        from upstep.api import available_models, resolve_model
        from upstep.io import DEFAULT_MAX_PIXELS
        from upstep.strength import auto_strength_rule, fidelity_weights_path

        self.models = {}
        for name in [*available_models(), *map(str, extra_models)]:
            folder = resolve_model(name)
            self.models[name] = {"id": name, "label": name, "scale": _model_scale(folder), "folder": folder,
                                 "strength": fidelity_weights_path(folder) is not None,
                                 "auto_strength": auto_strength_rule(folder) is not None}
        if not self.models:
            raise UpstepError("no model to serve: none is shipped and no --model folder was given")
        self.load_kw = {"device": device, "dtype": dtype, "tile": tile, "overlap": overlap}
        limits = limits or Limits()
        if limits.max_pixels is None:
            limits = replace(limits, max_pixels=DEFAULT_MAX_PIXELS)
        self.limits = limits
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.dropped: OrderedDict[str, None] = OrderedDict()
        self.receiving = 0  # bytes of request bodies being received
        self.seconds_per_job = 2.0  # running mean, for Retry-After
        self.loaded: dict = {}
        self.lock = threading.Lock()
        self.checking = threading.Semaphore(1)  # one upload decoded at a time for the checks
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upstep-job")

    # -- what the page and the API show ------------------------------------------------------
    def model_list(self) -> list[dict]:
        return [{k: m[k] for k in ("id", "label", "scale", "strength", "auto_strength")} for m in self.models.values()]

    def job_status(self, job_id: str) -> dict | None:
        """The job's status; None if unknown; ``{"gone": rule}`` if it was dropped."""
        with self.lock:
            self._prune()
            job = self.jobs.get(job_id)
            if job is None:
                return {"gone": self.limits.retention()} if job_id in self.dropped else None
            ahead = sum(j.active for j in self.jobs.values() if j.created < job.created) if job.state == "queued" else 0
            return job.status(self.limits, ahead)

    def job_image(self, job_id: str, which: str) -> bytes:
        job = self.jobs.get(job_id)
        if job is None or which not in ("input", "result"):   # the two documented names only
            return b""
        return job.input_png if which == "input" else job.result_png

    # -- admission -------------------------------------------------------------------------------
    def _busy(self, why: str) -> QueueFull:
        retry = max(1, math.ceil(self.seconds_per_job))  # until the running job is expected to end
        return QueueFull(f"the server is busy: {why}; try again in {retry} s", retry)

    def _check_room(self, decoded_bytes: int = 0) -> None:
        lim = self.limits
        active = [j for j in self.jobs.values() if j.active]
        if len(active) >= lim.max_jobs:
            raise self._busy(f"{len(active)} jobs are queued or running, the most it holds "
                             "(upstep serve --max-jobs)")
        queued = sum(j.decoded_bytes for j in active)
        if queued + decoded_bytes > lim.max_queue_bytes:
            raise self._busy(f"the queued images decode to {_size(queued)} and this one to {_size(decoded_bytes)}, "
                             f"over the queue's {_size(lim.max_queue_bytes)} (upstep serve --max-queue-mb)")

    def check_room(self) -> None:
        """Raise ``QueueFull`` if no job can be queued now (before reading an upload)."""
        with self.lock:
            self._check_room()

    def take_receiving(self, n: int) -> None:
        """Count ``n`` more body bytes in memory; ``QueueFull`` past ``max_jobs`` uploads' worth."""
        with self.lock:
            budget = self.limits.max_jobs * self.limits.max_upload_bytes
            if self.receiving + n > budget:
                raise self._busy(f"uploads being received fill the {_size(budget)} set aside for them")
            self.receiving += n

    def release_receiving(self, n: int) -> None:
        with self.lock:
            self.receiving -= n

    def read_upload(self, data: bytes, name: str):
        """Decode an upload with the CLI's checks; errors name the uploaded file, not a temp path."""
        from upstep.io import read_image

        safe = Path(name).name or "upload"
        with tempfile.TemporaryDirectory(prefix="upstep-upload-") as tmp:
            path = Path(tmp) / safe
            path.write_bytes(data)
            try:
                return read_image(path, max_pixels=self.limits.max_pixels)
            except UpstepError as e:
                raise UpstepError(str(e).replace(str(path), safe).replace("--max-pixels", "upstep serve --max-pixels")) from e

    def plan(self, name: str, size: tuple[int, int], model: str, size_asked: Size) -> tuple[str, dict]:
        """(model, options for ``upscale_loaded``) for an input of ``size``: the output size asked
        (``upstep.api.plan_size``); model "auto" (or empty): the smallest scale offered at or above
        the factor, its shipped ``default-x<s>`` where offered; a model chosen and no size asked: its
        own scale. Strength 1 is the model itself."""
        from upstep.api import plan_size

        auto = model in ("", "auto")
        scales = sorted({m["scale"] for m in self.models.values()}) if auto else [self.models[model]["scale"]]
        scale = size_asked.scale
        if scale is None and size_asked.width is None and size_asked.height is None and not auto:
            scale = scales[0]  # a model chosen, no size asked: its own scale
        try:
            plan = plan_size(size, scale, size_asked.width, size_asked.height, model_scales=tuple(scales))
        except UpstepError as e:
            raise UploadRefused(f"{name}: {e}") from e
        if auto:
            fits = [m for m, info in self.models.items() if info["scale"] == plan.model_scale]
            model = plan.model if plan.model in fits else fits[0]
        strength = size_asked.strength
        if strength is not None and strength < 1 and not self.models[model]["strength"]:
            raise UploadRefused(f"model {model} has no strength control (it ships no fidelity end); "
                                "leave the strength at 1 or choose a model that has one")
        return model, {"out_size": plan.size, "strength": strength}   # None: the model's default (auto for default-x4)

    def submit(self, data: bytes, name: str, model: str, asked: Size | None = None) -> str:
        """Check an upload and queue it; returns the job id. ``UpstepError`` for a bad upload,
        ``QueueFull`` when there is no room (in jobs or decoded bytes)."""
        name = Path(name).name or "upload"
        if model not in self.models and model not in ("", "auto"):
            raise UploadRefused(f"unknown model {model!r}; choose auto or one of {', '.join(self.models)}")
        with self.checking:
            size = self.read_upload(data, name).size  # every CLI check; the pixels are not kept
        model, options = self.plan(name, size, model, asked or Size())
        decoded = size[0] * size[1] * BYTES_PER_PIXEL
        if decoded > self.limits.max_queue_bytes:
            raise UploadRefused(f"{name}: {size[0]}x{size[1]} decodes to {_size(decoded)}, more than the "
                                f"queue holds ({_size(self.limits.max_queue_bytes)}); start the server with a "
                                "larger --max-queue-mb, or use the CLI (upstep upscale)", 413)
        job = Job(name=name, model=model, upload=data, decoded_bytes=decoded, size=size, options=options)
        job_id = uuid.uuid4().hex
        with self.lock:
            self._check_room(decoded)
            self.jobs[job_id] = job
            self._prune()
        self.pool.submit(self._run, job)
        return job_id

    # -- the worker and retention ----------------------------------------------------------------
    def _upscaler(self, name: str):
        from upstep.api import load

        if name not in self.loaded:
            self.loaded.clear()  # one model in memory at a time
            self.loaded[name] = load(self.models[name]["folder"], **self.load_kw)
        return self.loaded[name]

    def _run(self, job: Job) -> None:
        from upstep.hardware import trim_freed_memory
        from upstep.io import from_model_rgb

        def report(done: int, total: int) -> None:
            job.done, job.total = done, total

        t0 = time.perf_counter()
        with self.lock:
            job.state = "running"
        try:
            img = self.read_upload(job.upload, job.name)
            job.upload = b""
            job.input_png = _png(from_model_rgb(img.rgb, img, img.alpha))
            up = self._upscaler(job.model)
            t1 = time.perf_counter()  # the upscale itself, not loading the model
            out = up.upscale_loaded(img, progress=report, **job.options)
            del img
            job.result_png, job.out_size = _png(out), out.size
            job.strength_used = 1.0 if up.last_strength is None else up.last_strength
            job.seconds = round(time.perf_counter() - t1, 2)
            state = "done"
        except Exception as e:  # noqa: BLE001 - shown to the user in the page
            job.error = f"{job.name}: {e}" if isinstance(e, UpstepError) else f"{job.name}: {type(e).__name__}: {e}"
            state = "error"
        with self.lock:
            job.upload, job.state, job.finished = b"", state, time.time()
            self.seconds_per_job = 0.8 * self.seconds_per_job + 0.2 * (time.perf_counter() - t0)
            self._prune()
        trim_freed_memory()  # the job's buffers go back to the system, not kept for the next one

    def _prune(self) -> None:
        """Drop finished jobs past ``keep_seconds`` or beyond the ``keep_results`` most recent;
        never a queued or running one. Called with the lock held."""
        finished = sorted((j.finished, i) for i, j in self.jobs.items() if j.finished is not None)
        too_old = time.time() - self.limits.keep_seconds
        surplus = len(finished) - self.limits.keep_results
        for k, (when, job_id) in enumerate(finished):
            if k < surplus or when < too_old:
                del self.jobs[job_id]
                self.dropped[job_id] = None
        while len(self.dropped) > REMEMBER_DROPPED:
            self.dropped.popitem(last=False)
