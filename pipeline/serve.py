"""`vcap serve`: one loaded captioner behind a local web service (Starlette on uvicorn).

The captioner and its backbone load once; one thread owns them and captions the waiting requests in rounds
of up to `videos_per_batch` videos shared fairly among them (worker.py), so a short request never waits for a
long one. Uploads stream to a temp folder under a size limit and are deleted after (uploads.py); a path a
request names must stay inside the operator's --allow-dir. Every refusal is one line of JSON, {"error": "..."},
and the server keeps serving; a client that goes away is one line in the log. The page at / is static/index.html.
"""
from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import logging
import math
import tempfile
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from vcap.errors import VcapError, library_text
from vcap.pipeline.caption import VideoCaptioner
from vcap.pipeline.config import MAX_EVERY, MIN_EVERY, SHOTS, ServeConfig
from vcap.pipeline.results import VideoResult
from vcap.pipeline.uploads import read_body, receive_uploads, too_many
from vcap.pipeline.worker import CaptionWorker
from vcap.pipeline.writers import entry

log = logging.getLogger(__name__)
PAGE = Path(__file__).parent / "static" / "index.html"


# ---- reading a request -----------------------------------------------------------------------------------

def allowed_path(root: Path, given: object) -> Path:
    """The file a request names, only if it stays inside `root` once `..` and symlinks are resolved
    (an absolute path is taken as it is, so it must point inside too)."""
    if not isinstance(given, str) or not given:
        raise HTTPException(400, f"paths: expected file names as strings, got {given!r}")
    try:
        resolved = (root / given).resolve()
    except (OSError, ValueError) as exc:  # a NUL byte, a symlink loop
        raise HTTPException(400, f"{given!r}: not a usable path ({library_text(exc)})") from None
    if not resolved.is_relative_to(root):
        raise HTTPException(403, f"{given}: outside the folder this server may read (--allow-dir)")
    return resolved


async def requested_paths(request: Request, allow_dir: str | None, limit: int,
                          max_files: int) -> list[tuple[str, Path]]:
    """JSON {"paths": [...]}: [(path as given, resolved path)], each checked against --allow-dir."""
    if allow_dir is None:
        raise HTTPException(403, "this server reads no paths (it was started without --allow-dir); upload "
                                 "the videos as multipart/form-data instead")
    body = b"".join([chunk async for chunk in read_body(request, limit)])
    try:
        paths = json.loads(body).get("paths")
    except (ValueError, AttributeError) as exc:
        raise HTTPException(400, f"expected a JSON object {{\"paths\": [...]}} ({library_text(exc)})") from None
    if not isinstance(paths, list):
        raise HTTPException(400, "expected a JSON object {\"paths\": [...]} with a list of file names")
    if len(paths) > max_files:
        raise too_many(len(paths), max_files)
    root = Path(allow_dir).resolve()
    return [(str(p), allowed_path(root, p)) for p in paths]


# ---- the app ---------------------------------------------------------------------------------------------

def _every(request: Request) -> float | None:
    """?every=SECONDS asks for timed captions, as `vcap caption --every`."""
    text = request.query_params.get("every")
    if text is None:
        return None
    if text == SHOTS:
        return text
    try:
        every = float(text)
    except ValueError:
        every = float("nan")
    if not (math.isfinite(every) and MIN_EVERY <= every <= MAX_EVERY):
        raise HTTPException(400, f"every={text}: expected a number of seconds from {MIN_EVERY:g} to {MAX_EVERY:g}, "
                                 f"or {SHOTS}")
    return every


def create_app(config: ServeConfig, captioner: VideoCaptioner | None = None) -> Starlette:
    """The ASGI app; `captioner` loads from `config` when not given. It captions from startup to shutdown."""
    captioner = captioner or VideoCaptioner(config)
    worker = CaptionWorker(captioner)
    limit = config.max_upload_mb * 2**20
    page_html = PAGE.read_text(encoding="utf-8")

    async def caption(request: Request) -> JSONResponse:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        with tempfile.TemporaryDirectory(prefix="vcap-serve-") as folder:
            if kind == "multipart/form-data":
                videos = await receive_uploads(request, Path(folder), limit, config.max_files)
            elif kind == "application/json":
                videos = await requested_paths(request, config.allow_dir, limit, config.max_files)
            else:
                raise HTTPException(415, "send videos as multipart/form-data, or JSON {\"paths\": [...]} of "
                                         "files under --allow-dir")
            if not videos:
                raise HTTPException(400, "no video in the request")
            every = _every(request)
            explain = Path(folder) / "explain" if request.query_params.get("explain") in ("1", "true") else None
            try:
                results = await asyncio.wrap_future(worker.submit([path for _, path in videos],
                                                                  [name for name, _ in videos], every, explain))
            except VcapError as exc:
                raise HTTPException(422, str(exc)) from None
            answers = [answer(result) for result in results]  # inside the with: pictures are in its folder
        if all("error" in a for a in answers):
            raise HTTPException(422, "; ".join(a["error"] for a in answers))
        return JSONResponse({"videos": answers})

    async def health(request: Request) -> JSONResponse:
        """Counts and seconds per stage since startup: two readings' difference splits the requests between
        them into decoding, backbone and captioner; the rest of their latency is HTTP, uploads and queueing."""
        return JSONResponse({"status": "ok", "queued": worker.jobs.qsize(), "requests": worker.requests,
                             "batches": worker.batches, "videos": worker.videos,
                             "seconds": {k: round(v, 6) for k, v in asdict(captioner.times).items()}})

    async def info(request: Request) -> JSONResponse:
        return JSONResponse(describe(captioner, config))

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(page_html)

    async def disconnected(request: Request, exc: ClientDisconnect) -> Response:
        log.warning("client %s went away before its request was read; nothing was captioned for it",
                    request.client.host if request.client else "?")
        return Response(status_code=400)  # sent nowhere: the client is gone

    async def refused(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    async def failed(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": f"internal error ({library_text(exc)}); see the server's log"}, 500)

    @asynccontextmanager
    async def lifespan(app):
        worker.start()
        yield
        await asyncio.to_thread(worker.stop)

    app = Starlette(routes=[Route("/", page), Route("/caption", caption, methods=["POST"]),
                            Route("/health", health), Route("/info", info)],
                    exception_handlers={HTTPException: refused, ClientDisconnect: disconnected, Exception: failed},
                    lifespan=lifespan)
    app.state.worker = worker
    return app


def data_url(picture: Path) -> str:
    return f"data:image/png;base64,{base64.b64encode(picture.read_bytes()).decode()}"


def answer(result: VideoResult) -> dict:
    """A video in the answer: the json writer's entry, its pictures inlined (a whole video's as one data URL,
    a timed video's one per window with the window's times)."""
    found = entry(result)
    if result.explain and result.spans is None:
        found["explain"] = data_url(result.explain[0].path)
    elif result.explain:
        found["explain"] = [{"start": round(p.start, 3), "end": round(p.end, 3), "picture": data_url(p.path)}
                            for p in result.explain]
    return found


def describe(captioner: VideoCaptioner, config: ServeConfig) -> dict:
    """What GET /info says: which model, how its features are made, where it runs, how it decodes."""
    features = captioner.extractor.config
    decode = asdict(config.decode)
    decode["max_words"] = config.decode.max_words or captioner.info["max_words"]
    return {"model": str(config.model), "captioner": captioner.info["model"], "backbone": features.backbone,
            "weights": features.weights, "frames": features.frames, "size": features.size,
            "vocabulary": len(captioner.vocab), "device": str(captioner.device),
            "precision": captioner.extractor.precision, "decode": decode,
            "videos_per_batch": config.videos_per_batch, "max_upload_mb": config.max_upload_mb,
            "max_files": config.max_files,
            "allow_dir": config.allow_dir}


def exposure_warning(config: ServeConfig) -> str | None:
    """A line for the operator when the server listens beyond this machine: it has no authentication."""
    try:
        loopback = config.host == "localhost" or ipaddress.ip_address(config.host).is_loopback
    except ValueError:  # a host name
        loopback = False
    if loopback:
        return None
    return (f"warning: listening on {config.host}, not only on this machine: anyone who can reach it can "
            f"caption videos{' and read the videos under ' + config.allow_dir if config.allow_dir else ''} "
            f"(there is no authentication)")


def serve(config: ServeConfig) -> None:
    """`vcap serve`: load the model, then serve until interrupted."""
    import uvicorn

    app = create_app(config)
    uvicorn.run(app, host=config.host, port=config.port, log_level="info")
