"""Start a local web app: upscale an image in the browser, compare before/after, download.

``upstep serve [--host 127.0.0.1] [--port 7860] [--model FOLDER ...] [--token [TOKEN]]``: a
Starlette app (``app.py``) and one static page (``index.html``: plain HTML/JS/CSS, no CDN, no
analytics; the Content-Security-Policy forbids any request off the server). Every shipped model is
offered, plus the model folders given with ``--model``.

The queue (``service.py``) holds: at most ``--max-jobs`` jobs queued or running, decoding to at
most ``--max-queue-mb``; past that an upload is answered 503 with ``Retry-After`` and the page
says so. Queued jobs keep their upload compressed and are decoded when their turn comes, so memory
stays bounded. Uploads get the CLI's checks (``--max-upload-mb`` read as the body streams in, then
``upstep.io.read_image`` with the decompression-bomb guard ``--max-pixels``). Queued and running
jobs are never dropped; finished results are kept ``--keep-minutes`` after they finish, and only
the ``--keep-results`` most recent. Listening on an address other than loopback needs
``--token``: every API call must then carry it, and the page gets it from the address printed once
at start.

API: ``GET /api/models`` (models and limits); ``POST /api/jobs?model=&name=`` with the raw file as
body (-> ``{"id"}``, or ``{"error"}`` with 400/413, 503 + Retry-After when the queue is full, 401
without the token); ``GET /api/jobs/<id>`` (state, tiles done/total, jobs ahead, error; 410 once
the result is dropped); ``GET /api/jobs/<id>/input.png`` and ``/result.png``.
"""
from __future__ import annotations

import errno
import ipaddress
import os
import secrets

from upstep.errors import UpstepError
from upstep.web.app import create_app
from upstep.web.service import Limits, Service

__all__ = ["Limits", "Service", "create_app", "is_loopback"]
GENERATE = object()  # --token without a value: a random one


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost: may resolve to anything


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
    d = Limits()
    p.add_argument("--max-jobs", type=int, default=d.max_jobs,
                   help=f"jobs queued or running at most; more are answered 503 + Retry-After (default {d.max_jobs})")
    p.add_argument("--max-queue-mb", type=float, default=d.max_queue_bytes / 2**20,
                   help="decoded size of the queued and running images at most, counted 16 bytes a pixel "
                        f"(default {d.max_queue_bytes / 2**20:g})")
    p.add_argument("--keep-results", type=int, default=d.keep_results,
                   help=f"finished results kept: the most recent N (default {d.keep_results}) ...")
    p.add_argument("--keep-minutes", type=float, default=d.keep_seconds / 60,
                   help=f"... each for this long after it finishes (default {d.keep_seconds / 60:g}); "
                        "queued and running jobs are never dropped")
    p.add_argument("--token", nargs="?", const=GENERATE, default=None, metavar="TOKEN",
                   help="require this access token on every API call (without a value: a random one); "
                        "required with a --host other than loopback. The address to open, with the token, "
                        "is printed once at start")


def check_port_free(host: str, port: int) -> None:
    """A one-line error, before the models load and the address is printed, when ``host:port`` cannot
    be listened on (another server has it, or the address is not this machine's)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise UpstepError(f"--host {host}: not an address this machine can listen on ({e.strerror})") from None
    family, _, _, _, addr = infos[0]
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    with socket.socket(family, socket.SOCK_STREAM) as s:
        if os.name != "nt":   # as uvicorn binds; on Windows SO_REUSEADDR would let a busy port pass
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(addr)
        except OSError as e:
            what = {errno.EADDRINUSE: "another program is using the port: pick another with --port",
                    errno.EACCES: "ports below 1024 need administrator rights: pick another with --port",
                    errno.EADDRNOTAVAIL: "the address is not one of this machine's: check --host"}
            raise UpstepError(f"cannot listen on {where} ({e.strerror}); "
                              f"{what.get(e.errno, 'check --host and --port')}") from None


def run_serve(args) -> int:
    host, token = args.host, args.token
    if token is None and not is_loopback(host):
        raise UpstepError(f"--host {host} lets other machines reach the app: add --token (a random one is "
                          "made and printed) or --token TOKEN, or listen on 127.0.0.1")
    if token is GENERATE:
        token = secrets.token_urlsafe(18)
    if token is not None and not token.strip():
        raise UpstepError("--token is empty; give a token or pass --token alone for a random one")
    try:
        import uvicorn
    except ImportError as e:
        raise UpstepError("upstep serve needs Starlette and uvicorn: pip install 'upstep[serve]'") from e
    limits = Limits(max_jobs=args.max_jobs, max_queue_bytes=int(args.max_queue_mb * 2**20),
                    max_upload_bytes=int(args.max_upload_mb * 2**20), max_pixels=args.max_pixels,
                    keep_results=args.keep_results, keep_seconds=args.keep_minutes * 60)
    check_port_free(host, args.port)
    service = Service(args.model, device=args.device, dtype=args.dtype, tile=args.tile, overlap=args.overlap,
                      limits=limits)
    url = f"http://{f'[{host}]' if ':' in host else host}:{args.port}/" + (f"?token={token}" if token else "")
    print(f"upstep serve: {url} (models: {', '.join(service.models)}; at most {limits.max_jobs} jobs queued; "
          f"{limits.retention()}); Ctrl+C to stop", flush=True)
    uvicorn.run(create_app(service, token), host=host, port=args.port, log_level="warning")
    return 0
