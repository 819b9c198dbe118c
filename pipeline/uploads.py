"""Reading a request's body for `vcap serve`: streamed under a size limit, and multipart uploads written
file by file to a folder, so a large video never sits in memory and a request past a limit stops early."""
from __future__ import annotations

from pathlib import Path
from typing import AsyncIterator

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException
from starlette.requests import Request

from vcap.errors import library_text
from vcap.extract.sampler import VIDEO_EXTENSIONS


async def read_body(request: Request, limit: int) -> AsyncIterator[bytes]:
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


def display_name(filename: bytes) -> str:
    """The name a browser sent, without its folders or unprintable characters: shown, never used as a path."""
    name = filename.decode("utf-8", "replace").replace("\\", "/").rsplit("/", 1)[-1]
    return "".join(c for c in name if c.isprintable())[:200] or "upload"


def too_many(count: int, max_files: int) -> HTTPException:
    return HTTPException(413, f"{count} videos in one request; this server takes at most --max-files {max_files}")


async def receive_uploads(request: Request, folder: Path, limit: int, max_files: int) -> list[tuple[str, Path]]:
    """Stream each file of a multipart body into its own file in `folder`: [(name sent, path on disk)].
    Files on disk are numbered (0.mp4, 1.avi), so two uploads of one name never meet."""
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
            if len(uploads) == max_files:
                raise too_many(len(uploads) + 1, max_files)
            name = display_name(disposition[b"filename"])
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
        async for chunk in read_body(request, limit):
            parser.write(chunk)
        parser.finalize()
    except ValueError as exc:  # python-multipart's MultipartParseError
        raise HTTPException(400, f"malformed multipart body ({library_text(exc)})") from None
    finally:
        if part.get("out") is not None:
            part["out"].close()
    return uploads
