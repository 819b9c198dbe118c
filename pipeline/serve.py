"""`vcap serve`: one loaded captioner behind a local web service (Starlette on uvicorn).

The captioner and its backbone load once; one thread owns them and drains a queue of requests, captioning
what has arrived together, up to `videos_per_batch` videos a batch. Uploads stream to a temp folder under a
size limit and are deleted after; a path a request names must stay inside the operator's --allow-dir.
Every refusal is one line of JSON, {"error": "..."}, and the server keeps serving.
"""
from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import ipaddress
import json
import logging
import math
import queue
import tempfile
import threading
from collections import defaultdict, deque
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import AsyncIterator

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Route

from vcap.errors import VcapError, library_text
from vcap.extract.sampler import VIDEO_EXTENSIONS
from vcap.pipeline.caption import VideoCaptioner
from vcap.pipeline.config import MIN_EVERY, ServeConfig
from vcap.pipeline.subtitles import spans_json

log = logging.getLogger(__name__)
Result = tuple["str | None", "str | None"]  # (caption, None) or (None, error)


# ---- the one worker that owns the model ------------------------------------------------------------------

@dataclass
class _Job:
    paths: list[Path]
    every: float | None = None  # timed captions: windows of this many seconds
    explain: Path | None = None  # a folder for the frames/attention PNG of each video
    done: concurrent.futures.Future = field(default_factory=concurrent.futures.Future)


class CaptionWorker:
    """A thread that owns the captioner: requests queue here, and each batch takes every job waiting, up to
    `videos_per_batch` videos, so concurrent requests share forward passes instead of loading more models."""

    def __init__(self, captioner: VideoCaptioner):
        self.captioner = captioner
        self.jobs: queue.Queue[_Job | None] = queue.Queue()
        self.batches = self.videos = 0
        self._thread = threading.Thread(target=self._run, name="vcap-captioner", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.jobs.put(None)
        self._thread.join()

    def submit(self, paths: list[Path], every: float | None = None,
               explain: Path | None = None) -> concurrent.futures.Future:
        """A future of [(caption, error)] in the order of `paths`; with `every`, each caption is the video's
        [(start, end, caption)] windows, as `vcap caption --every` gives them."""
        job = _Job(paths, every, explain)
        self.jobs.put(job)
        return job.done

    def _run(self) -> None:
        limit = self.captioner.config.videos_per_batch
        while (job := self.jobs.get()) is not None:
            batch: list[_Job] = []
            timed: list[_Job] = []  # windows of one video are batched among themselves
            (timed if job.every or job.explain else batch).append(job)
            while sum(len(j.paths) for j in batch) < limit:
                try:
                    more = self.jobs.get_nowait()
                except queue.Empty:
                    break
                if more is None:  # stop after this batch
                    self.jobs.put(None)
                    break
                (timed if more.every or more.explain else batch).append(more)
            if batch:
                self._caption(batch)
            for job in timed:
                self._caption_windows(job) if job.every else self._caption([job], job.explain)

    def _caption_windows(self, job: _Job) -> None:
        results: list[Result] = []
        for path in job.paths:
            try:
                results.append((self.captioner.caption_windows(path, job.every), None))
            except VcapError as exc:
                results.append((None, str(exc)))
            except Exception as exc:  # a bug on one odd file fails that video, not the server
                log.exception("timed captions of %s failed", path)
                results.append((None, f"{path}: cannot caption it ({type(exc).__name__})"))
        self.batches += 1
        self.videos += len(job.paths)
        job.done.set_result(results)

    def _caption(self, batch: list[_Job], explain: Path | None = None) -> None:
        paths = [p for job in batch for p in job.paths]
        slots: dict[Path, deque[int]] = defaultdict(deque)  # the same file may come in several requests
        for i, path in enumerate(paths):
            slots[path].append(i)
        results: list[Result] = [(None, "not captioned")] * len(paths)
        try:
            for path, caption, error in self.captioner.caption(paths, explain):
                results[slots[path].popleft()] = (caption, error)
        except Exception as exc:  # a bug, or a file the extractor refuses whole: fail these requests, not the server
            if not isinstance(exc, VcapError):
                log.exception("captioning a batch failed")
            for job in batch:
                job.done.set_exception(exc)
            return
        self.batches += 1
        self.videos += len(paths)
        start = 0
        for job in batch:
            job.done.set_result(results[start:start + len(job.paths)])
            start += len(job.paths)


# ---- reading a request -----------------------------------------------------------------------------------

async def _body(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The request body in chunks; past `limit` bytes it is a 413, whether or not a Content-Length said so."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"request of {int(declared) / 2**20:.1f} MB is over this server's "
                                 f"--max-upload-mb {limit // 2**20}")
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise HTTPException(413, f"request is over this server's --max-upload-mb {limit // 2**20}")
        yield chunk


def _display_name(filename: bytes) -> str:
    """The name a browser sent, without its folders or unprintable characters: shown, never used as a path."""
    name = filename.decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in name if c.isprintable())[:200] or "upload"


async def receive_uploads(request: Request, folder: Path, limit: int) -> list[tuple[str, Path]]:
    """Stream each file of a multipart body into its own file in `folder`: [(name sent, path on disk)]."""
    _, params = parse_options_header(request.headers.get("content-type", ""))
    if not params.get(b"boundary"):
        raise HTTPException(400, "multipart body without a boundary")
    uploads: list[tuple[str, Path]] = []
    part: dict = {}

    def on_part_begin():
        part.clear()
        part.update(headers={}, field=b"", value=b"", out=None)

    def on_header_field(data, start, end):
        part["field"] += data[start:end]

    def on_header_value(data, start, end):
        part["value"] += data[start:end]

    def on_header_end():
        part["headers"][part["field"].lower()] = part["value"]
        part["field"] = part["value"] = b""

    def on_headers_finished():
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        if b"filename" in disposition:  # a file; other form fields are ignored
            name = _display_name(disposition[b"filename"])
            suffix = Path(name).suffix.lower()
            path = folder / f"{len(uploads)}{suffix if suffix in VIDEO_EXTENSIONS else ''}"
            part["out"] = open(path, "wb")
            uploads.append((name, path))

    def on_part_data(data, start, end):
        if part["out"] is not None:
            part["out"].write(data[start:end])

    def on_part_end():
        if part["out"] is not None:
            part["out"].close()
            part["out"] = None

    parser = MultipartParser(params[b"boundary"], {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data, "on_part_end": on_part_end})
    try:
        async for chunk in _body(request, limit):
            parser.write(chunk)
        parser.finalize()
    except ValueError as exc:  # python-multipart's MultipartParseError
        raise HTTPException(400, f"malformed multipart body ({library_text(exc)})") from None
    finally:
        if part.get("out") is not None:
            part["out"].close()
    return uploads


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


async def requested_paths(request: Request, allow_dir: str | None, limit: int) -> list[tuple[str, Path]]:
    """JSON {"paths": [...]}: [(path as given, resolved path)], each checked against --allow-dir."""
    if allow_dir is None:
        raise HTTPException(403, "this server reads no paths (it was started without --allow-dir); upload "
                                 "the videos as multipart/form-data instead")
    body = b"".join([chunk async for chunk in _body(request, limit)])
    try:
        paths = json.loads(body).get("paths")
    except (ValueError, AttributeError) as exc:
        raise HTTPException(400, f"expected a JSON object {{\"paths\": [...]}} ({library_text(exc)})") from None
    if not isinstance(paths, list):
        raise HTTPException(400, "expected a JSON object {\"paths\": [...]} with a list of file names")
    root = Path(allow_dir).resolve()
    return [(str(p), allowed_path(root, p)) for p in paths]


# ---- the app ---------------------------------------------------------------------------------------------

def _every(request: Request) -> float | None:
    """?every=SECONDS asks for timed captions, as `vcap caption --every`."""
    text = request.query_params.get("every")
    if text is None:
        return None
    try:
        every = float(text)
    except ValueError:
        every = float("nan")
    if not (math.isfinite(every) and every >= MIN_EVERY):
        raise HTTPException(400, f"every={text}: expected a number of seconds >= {MIN_EVERY}")
    return every


def create_app(config: ServeConfig, captioner: VideoCaptioner | None = None) -> Starlette:
    """The ASGI app; `captioner` loads from `config` when not given. It captions from startup to shutdown."""
    captioner = captioner or VideoCaptioner(config)
    worker = CaptionWorker(captioner)
    limit = config.max_upload_mb * 2**20

    async def caption(request: Request) -> JSONResponse:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        with tempfile.TemporaryDirectory(prefix="vcap-serve-") as folder:
            if kind == "multipart/form-data":
                videos = await receive_uploads(request, Path(folder), limit)
            elif kind == "application/json":
                videos = await requested_paths(request, config.allow_dir, limit)
            else:
                raise HTTPException(415, "send videos as multipart/form-data, or JSON {\"paths\": [...]} of "
                                         "files under --allow-dir")
            if not videos:
                raise HTTPException(400, "no video in the request")
            every = _every(request)
            explain = Path(folder) / "explain" if request.query_params.get("explain") in ("1", "true") else None
            try:
                results = await asyncio.wrap_future(worker.submit([path for _, path in videos], every, explain))
            except VcapError as exc:
                raise HTTPException(422, str(exc)) from None
            answers = []  # inside the with: the explain pictures are in its folder
            for (name, path), (text, error) in zip(videos, results):
                if error is not None:
                    answers.append({"video": name, "error": error.replace(str(path), name)})
                elif every is None:
                    answers.append({"video": name, "caption": text})
                    picture = explain / f"{path.name}.png" if explain else None
                    if picture is not None and picture.is_file():
                        encoded = base64.b64encode(picture.read_bytes()).decode()
                        answers[-1]["explain"] = f"data:image/png;base64,{encoded}"
                else:
                    answers.append({"video": name, "windows": spans_json(text)})
        if all("error" in a for a in answers):
            raise HTTPException(422, "; ".join(a["error"] for a in answers))
        return JSONResponse({"videos": answers})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok", "queued": worker.jobs.qsize(), "batches": worker.batches,
                             "videos": worker.videos})

    async def info(request: Request) -> JSONResponse:
        return JSONResponse(describe(captioner, config))

    async def page(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

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
                    exception_handlers={HTTPException: refused, Exception: failed}, lifespan=lifespan)
    app.state.worker = worker
    return app


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


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vcap</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { font: 16px/1.5 system-ui, sans-serif; max-width: 44rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.4rem; margin-bottom: .2rem; }
#drop { display: block; border: 2px dashed #888; border-radius: 10px; padding: 2.5rem 1rem; text-align: center; cursor: pointer; }
#drop.over { border-color: #2a6ad8; background: #eef4ff; }
#status { min-height: 1.5rem; margin: 1rem 0; }
#status[data-state=busy]::before { content: ""; display: inline-block; width: .9rem; height: .9rem;
  margin-right: .5rem; border: 2px solid #2a6ad8; border-right-color: transparent; border-radius: 50%;
  vertical-align: -2px; animation: spin .8s linear infinite; }
#status[data-state=error] { color: #b00020; }
@keyframes spin { to { transform: rotate(360deg); } }
#results { list-style: none; padding: 0; }
#results li { padding: .6rem .8rem; border-left: 4px solid #2a6ad8; background: #f5f7fa; margin-bottom: .5rem; }
#results .name { display: block; font-size: .85rem; color: #666; }
#results .caption { font-size: 1.15rem; }
#results img { display: block; max-width: 100%; margin-top: .5rem; }
#results .error { color: #b00020; }
footer { font-size: .8rem; color: #777; margin-top: 2rem; }
</style></head>
<body>
<h1>vcap</h1>
<p>Caption a video: drop it here, or pick one.</p>
<label id="drop">Drop a video here, or click to choose one
  <input id="file" type="file" accept="video/*" multiple hidden></label>
<div id="status" data-state="idle"></div>
<ul id="results"></ul>
<footer id="info"></footer>
<script>
const drop = document.getElementById("drop"), input = document.getElementById("file");
const status = document.getElementById("status"), results = document.getElementById("results");
function state(name, text) { status.dataset.state = name; status.textContent = text; }
function show(videos) {
  results.replaceChildren(...videos.map(v => {
    const li = document.createElement("li"), name = document.createElement("span"), text = document.createElement("span");
    name.className = "name"; name.textContent = v.video;
    text.className = v.error ? "caption error" : "caption"; text.textContent = v.error || v.caption;
    li.append(name, text);
    if (v.explain) {  // the frames the model saw and its attention per word
      const img = document.createElement("img");
      img.src = v.explain; img.alt = "frames and attention"; li.append(img);
    }
    return li;
  }));
}
function send(files) {
  if (!files.length) return;
  const form = new FormData();
  for (const f of files) form.append("video", f, f.name);
  const xhr = new XMLHttpRequest();
  xhr.open("POST", "caption?explain=1"); xhr.responseType = "json";
  xhr.upload.onprogress = e => { if (e.lengthComputable) state("busy", `Uploading ${Math.round(100 * e.loaded / e.total)}%`); };
  xhr.upload.onload = () => state("busy", "Captioning\\u2026");
  xhr.onload = () => {
    const body = xhr.response || {};
    if (xhr.status === 200) { show(body.videos); state("done", body.videos.length > 1 ? `${body.videos.length} videos` : ""); }
    else { results.replaceChildren(); state("error", body.error || `HTTP ${xhr.status}`); }
  };
  xhr.onerror = () => state("error", "The server cannot be reached.");
  state("busy", "Uploading\\u2026"); xhr.send(form);
}
input.addEventListener("change", () => { send(input.files); input.value = ""; });
drop.addEventListener("dragover", e => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", e => { e.preventDefault(); drop.classList.remove("over"); send(e.dataTransfer.files); });
fetch("info").then(r => r.json()).then(i => {
  document.getElementById("info").textContent =
    `${i.captioner} captioner, ${i.backbone} features, vocabulary ${i.vocabulary}, on ${i.device}; beam ${i.decode.beam}`;
}).catch(() => {});
</script>
</body></html>
"""
