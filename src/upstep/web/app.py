"""The HTTP side of ``upstep serve``: the page, the JSON API, the access token.

With a token, every ``/api/`` call must carry it: header ``Authorization: Bearer TOKEN`` (or
``X-Upstep-Token: TOKEN``), or ``?token=TOKEN`` in the URL (what ``<img src>`` and the download
link use); without it the answer is 401. The page itself holds nothing and is served without it;
it reads the token from its own address (``/?token=...``, printed once by the server).
"""
from __future__ import annotations

import hmac
from pathlib import Path

from upstep.errors import UpstepError
from upstep.web.service import QueueFull, Service, Size, UploadRefused

STATIC = Path(__file__).parent
CSP = ("default-src 'self'; img-src 'self' blob: data:; style-src 'self' 'unsafe-inline'; "
       "script-src 'self' 'unsafe-inline'; connect-src 'self'")
NO_TOKEN = ("this server needs its access token: open the address `upstep serve` printed when it started "
            "(it ends in /?token=...)")


def _given_token(request) -> str:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-upstep-token") or request.query_params.get("token") or ""


def create_app(service: Service, token: str | None = None):
    """The Starlette app around ``service``; with ``token``, every API call needs it."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    page = (STATIC / "index.html").read_text(encoding="utf-8")
    headers = {"Content-Security-Policy": CSP, "Cache-Control": "no-store"}

    def error(msg: str, code: int = 400, **extra) -> JSONResponse:
        return JSONResponse({"error": msg}, status_code=code, **extra)

    def busy(e: QueueFull) -> JSONResponse:
        return error(str(e), 503, headers={"Retry-After": str(e.retry_after)})

    def api(handler):
        """Refuse a call without the token (when the server has one)."""
        async def checked(request: Request):
            if token and not hmac.compare_digest(_given_token(request).encode(), token.encode()):
                return error(NO_TOKEN, 401)
            return await handler(request)
        return checked

    async def index(request: Request):
        return HTMLResponse(page, headers=headers)

    async def models(request: Request):
        lim = service.limits
        return JSONResponse({"models": service.model_list(), "max_upload_bytes": lim.max_upload_bytes,
                             "max_pixels": lim.max_pixels, "limits": lim.public()})

    def too_big(name: str) -> str:
        return (f"{name}: larger than the upload limit of {service.limits.max_upload_bytes / 2**20:g} MB "
                "(start the server with a larger --max-upload-mb if the file is trusted)")

    async def read_body(request: Request, name: str, held: list, refusal: UpstepError | None = None) -> bytes:
        """The upload, counted in the service's budget for bodies in memory as it arrives (a lying
        Content-Length changes nothing; ``held[0]``: bytes counted). A refusal (``QueueFull``, or
        413 past the upload limit, or ``refusal`` given) is raised once the rest of the body has
        been read and dropped, so the client gets the answer instead of a reset connection."""
        limit = service.limits.max_upload_bytes
        chunks, seen = [], 0
        try:
            if refusal is None:
                service.check_room()  # before keeping a byte of the body
        except QueueFull as e:
            refusal = e
        async for chunk in request.stream():
            seen += len(chunk)
            if refusal is None and seen > limit:
                refusal = UploadRefused(too_big(name), 413)
            if refusal is None:
                try:
                    service.take_receiving(len(chunk))
                except QueueFull as e:
                    refusal = e
                else:
                    held[0] += len(chunk)
                    chunks.append(chunk)
            if refusal is not None:
                chunks.clear()
                if seen > limit:
                    break
        if refusal is not None:
            raise refusal
        if seen == 0:
            raise UploadRefused(f"{name}: empty upload (0 bytes); choose an image file")
        return b"".join(chunks)

    async def create_job(request: Request):
        name = Path(request.query_params.get("name") or "upload").name
        held = [0]
        try:
            try:
                asked, refused = Size.from_query(request.query_params), None
            except UploadRefused as e:
                asked, refused = None, e
            if int(request.headers.get("content-length") or 0) > service.limits.max_upload_bytes:
                refused = UploadRefused(too_big(name), 413)
            data = await read_body(request, name, held, refused)
            job_id = await run_in_threadpool(service.submit, data, name, request.query_params.get("model", ""), asked)
        except QueueFull as e:
            return busy(e)
        except UploadRefused as e:
            return error(str(e), e.status)
        except UpstepError as e:
            return error(str(e))
        finally:
            service.release_receiving(held[0])
        return JSONResponse({"id": job_id})

    async def job_status(request: Request):
        st = service.job_status(request.path_params["job"])
        if st is None:
            return error("no such job", 404)
        if "gone" in st:
            return error(f"this job's result is gone: {st['gone']}", 410)
        return JSONResponse(st)

    async def job_image(request: Request):
        data = service.job_image(request.path_params["job"], request.path_params["which"])
        if not data:
            return error("no such image", 404)
        return Response(data, media_type="image/png", headers={"Cache-Control": "no-store"})

    return Starlette(routes=[
        Route("/", index),
        Route("/api/models", api(models)),
        Route("/api/jobs", api(create_job), methods=["POST"]),
        Route("/api/jobs/{job}", api(job_status)),
        Route("/api/jobs/{job}/{which:str}.png", api(job_image)),
    ])
