"""Start a local web app: upscale an image in the browser, compare before/after, download.

``upstep serve [--host 127.0.0.1] [--port 7860] [--model FOLDER ...]``: a Starlette app and one
static page (``index.html``: plain HTML/JS/CSS, no CDN, no analytics; the Content-Security-Policy
forbids any request off the server). Every shipped model is offered, plus the model folders given
with ``--model``.

Uploads go through the CLI's checks: a byte limit (``--max-upload-mb``) read as the body streams
in, then ``upstep.io.read_image`` with the same decompression-bomb guard (``--max-pixels``).
Jobs run one at a time in a worker thread; the page polls ``/api/jobs/<id>`` for tile progress.

API: ``GET /api/models``; ``POST /api/jobs?model=&name=`` with the raw file as body
(-> ``{"id"}`` or ``{"error"}`` with 400/413); ``GET /api/jobs/<id>`` (state, tiles done/total,
error); ``GET /api/jobs/<id>/input.png`` and ``/result.png``.
"""
from __future__ import annotations

import io
import json
import os
import tempfile
import threading
import time
import uuid
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from upstep.errors import UpstepError

STATIC = Path(__file__).parent
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self' 'unsafe-inline'; connect-src 'self'")
KEEP_JOBS = 8  # finished results kept in memory for display and download


@dataclass
class Job:
    name: str
    model: str
    state: str = "queued"  # queued | running | done | error
    done: int = 0
    total: int = 0
    error: str | None = None
    seconds: float | None = None
    input_png: bytes = b""
    result_png: bytes = b""
    size: tuple = ()
    out_size: tuple = ()
    created: float = field(default_factory=time.time)

    def status(self) -> dict:
        return {"state": self.state, "done": self.done, "total": self.total, "error": self.error,
                "seconds": self.seconds, "model": self.model, "size": self.size, "out_size": self.out_size,
                "download_name": f"{Path(self.name).stem or 'image'}_upscaled.png"}


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
    """Models on offer, a one-thread job queue, and the finished jobs (the last ``KEEP_JOBS``)."""

    def __init__(self, extra_models=(), *, device="auto", dtype="float32", tile=128, overlap=16,
                 max_pixels=None, max_upload_bytes=50 * 2**20):
        from upstep.api import available_models, resolve_model
        from upstep.io import DEFAULT_MAX_PIXELS

        self.models = {}
        for name in [*available_models(), *map(str, extra_models)]:
            folder = resolve_model(name)
            self.models[name] = {"id": name, "label": name, "scale": _model_scale(folder), "folder": folder}
        if not self.models:
            raise UpstepError("no model to serve: none is shipped and no --model folder was given")
        self.load_kw = {"device": device, "dtype": dtype, "tile": tile, "overlap": overlap}
        self.max_pixels = DEFAULT_MAX_PIXELS if max_pixels is None else max_pixels
        self.max_upload_bytes = max_upload_bytes
        self.jobs: OrderedDict[str, Job] = OrderedDict()
        self.loaded: dict = {}
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="upstep-job")

    def model_list(self) -> list[dict]:
        return [{k: m[k] for k in ("id", "label", "scale")} for m in self.models.values()]

    def _upscaler(self, name: str):
        from upstep.api import load

        if name not in self.loaded:
            self.loaded.clear()  # one model in memory at a time
            self.loaded[name] = load(self.models[name]["folder"], **self.load_kw)
        return self.loaded[name]

    def read_upload(self, data: bytes, name: str):
        """Decode an upload with the CLI's checks; errors name the uploaded file, not a temp path."""
        from upstep.io import read_image

        safe = Path(name).name or "upload"
        with tempfile.TemporaryDirectory(prefix="upstep-upload-") as tmp:
            path = Path(tmp) / safe
            path.write_bytes(data)
            try:
                return read_image(path, max_pixels=self.max_pixels)
            except UpstepError as e:
                raise UpstepError(str(e).replace(str(path), safe).replace("--max-pixels", "upstep serve --max-pixels")) from e

    def submit(self, data: bytes, name: str, model: str) -> str:
        from upstep.io import from_model_rgb

        if model not in self.models:
            raise UpstepError(f"unknown model {model!r}; choose one of {', '.join(self.models)}")
        img = self.read_upload(data, name)
        job = Job(name=Path(name).name, model=model, size=img.size)
        job.input_png = _png(from_model_rgb(img.rgb, img, img.alpha))
        job_id = uuid.uuid4().hex
        with self.lock:
            self.jobs[job_id] = job
            while len(self.jobs) > KEEP_JOBS:
                self.jobs.popitem(last=False)
        self.pool.submit(self._run, job, img)
        return job_id

    def _run(self, job: Job, img) -> None:
        def report(done: int, total: int) -> None:
            job.done, job.total = done, total

        job.state = "running"
        try:
            up = self._upscaler(job.model)
            t0 = time.perf_counter()  # the upscale itself, not loading the model
            out = up.upscale_loaded(img, progress=report)
            job.result_png, job.out_size = _png(out), out.size
            job.seconds = round(time.perf_counter() - t0, 2)
            job.state = "done"
        except Exception as e:  # noqa: BLE001 - shown to the user in the page
            job.error = f"{job.name}: {e}" if isinstance(e, UpstepError) else f"{job.name}: {type(e).__name__}: {e}"
            job.state = "error"


def create_app(service: Service):
    """The Starlette app around ``service``."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    page = (STATIC / "index.html").read_text(encoding="utf-8")
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}

    def error(msg: str, code: int = 400) -> JSONResponse:
        return JSONResponse({"error": msg}, status_code=code)

    async def index(request: Request):
        return HTMLResponse(page, headers=headers)

    async def models(request: Request):
        return JSONResponse({"models": service.model_list(), "max_upload_bytes": service.max_upload_bytes,
                             "max_pixels": service.max_pixels})

    async def create_job(request: Request):
        name = Path(request.query_params.get("name") or "upload").name
        limit = service.max_upload_bytes
        too_big = error(f"{name}: larger than the upload limit of {limit / 2**20:.0f} MB "
                        "(start the server with a larger --max-upload-mb if the file is trusted)", 413)
        if int(request.headers.get("content-length") or 0) > limit:
            return too_big
        chunks, size = [], 0
        async for chunk in request.stream():  # counted as it arrives: a lying header changes nothing
            size += len(chunk)
            if size > limit:
                return too_big
            chunks.append(chunk)
        if size == 0:
            return error(f"{name}: empty upload (0 bytes); choose an image file")
        try:
            job_id = await run_in_threadpool(service.submit, b"".join(chunks), name,
                                             request.query_params.get("model", ""))
        except UpstepError as e:
            return error(str(e))
        return JSONResponse({"id": job_id})

    def _job(request: Request):
        return service.jobs.get(request.path_params["job"])

    async def job_status(request: Request):
        job = _job(request)
        return JSONResponse(job.status()) if job else error("no such job (finished jobs are kept for a while)", 404)

    async def job_image(request: Request):
        job = _job(request)
        data = job and (job.input_png if request.path_params["which"] == "input" else job.result_png)
        if not data:
            return error("no such image", 404)
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    return Starlette(routes=[
        Route("/", index),
        Route("/api/models", models),
        Route("/api/jobs", create_job, methods=["POST"]),
        Route("/api/jobs/{job}", job_status),
        Route("/api/jobs/{job}/{which:str}.png", job_image),
    ])


def add_serve_arguments(p) -> None:
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--model", action="append", default=[], metavar="FOLDER",
                   help="also offer this model folder (repeatable); every shipped model is offered")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--tile", type=int, default=128, help="LR tile size in pixels (memory bound)")
    p.add_argument("--overlap", type=int, default=16, help="LR overlap between tiles in pixels")
    p.add_argument("--max-pixels", type=int, default=None, help="refuse larger images (decompression-bomb guard)")
    p.add_argument("--max-upload-mb", type=float, default=50.0, help="refuse larger uploads (default 50)")


def run_serve(args) -> int:
    try:
        import uvicorn
    except ImportError as e:
        raise UpstepError("upstep serve needs Starlette and uvicorn: pip install 'upstep[serve]'") from e
    service = Service(args.model, device=args.device, dtype=args.dtype, tile=args.tile, overlap=args.overlap,
                      max_pixels=args.max_pixels, max_upload_bytes=int(args.max_upload_mb * 2**20))
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"warning: listening on {args.host}: anyone who can reach this machine can use the app")
    print(f"upstep serve: http://{'[::1]' if args.host == '::1' else args.host}:{args.port}/ "
          f"(models: {', '.join(service.models)}); Ctrl+C to stop", flush=True)
    uvicorn.run(create_app(service), host=args.host, port=args.port, log_level="warning")
    return 0
