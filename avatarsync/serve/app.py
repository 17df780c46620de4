"""The ASGI app: HTTP jobs, the WebSocket stream and the page (OpenAPI docs at ``/docs``).

Errors are JSON ``{error, hint}`` (the CLI's messages): 400 a malformed request, 404 an unknown job,
413 a request over a limit, 422 input the pipeline cannot use (no face, unreadable audio, ...),
429 (with Retry-After) when the queue is full, 500 a failure on the server (the server stays up).
"""

from __future__ import annotations

import asyncio
import json
import logging
import struct
from collections import OrderedDict
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AvatarSyncError, BackendUnavailable, CheckpointError, InputError
from .config import ServeConfig
from .engine import CANCELLED, DONE, FINISHED, Engine, Job, QueueFull, error_body
from .requests import LimitError, MalformedRequest, SpeakRequest, parse_options, prepare, too_big

log = logging.getLogger("avatarsync.serve")
STATIC = Path(__file__).parent / "static"
# binary WebSocket messages: kind (u8), index (u32: frame index; audio: its first frame), time (f64 s),
# extra (u32: frame: phrase index; audio: sample rate), then the payload (JPEG; PCM s16le mono)
HEADER = struct.Struct("<BIdI")
FRAME, AUDIO = 1, 2


def status_of(e: BaseException) -> int:
    if isinstance(e, LimitError):
        return 413
    if isinstance(e, MalformedRequest):
        return 400
    if isinstance(e, (InputError, CheckpointError, BackendUnavailable)):
        return 422
    return 500


def _json_error(status: int, problem: str, hint: str = "", headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": problem, "hint": hint}, status_code=status, headers=headers)


class Uploads:
    """Recent uploads (bytes, in memory), the oldest dropped past ``keep``."""

    def __init__(self, keep: int) -> None:
        self.keep, self._items = keep, OrderedDict()

    def add(self, data: bytes) -> str:
        import uuid

        key = uuid.uuid4().hex
        self._items[key] = data
        while len(self._items) > self.keep:
            self._items.popitem(last=False)
        return key

    def get(self, key: str) -> bytes | None:
        return self._items.get(key) if isinstance(key, str) else None


async def _read_body(request: Request, cap: int) -> bytes:
    size = request.headers.get("content-length")
    if size and size.isdigit() and int(size) > cap:
        raise LimitError(f"the request body is {int(size) / 2 ** 20:.1f} MiB, over this server's limit of "
                         f"{cap / 2 ** 20:.1f} MiB", "send smaller files")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > cap:
            raise LimitError(f"the request body is over this server's limit of {cap / 2 ** 20:.1f} MiB",
                             "send smaller files")
    return bytes(buf)


async def _form(request: Request, body: bytes, limits, allowed=("portrait", "audio", "video")) -> tuple[dict, dict[str, bytes]]:
    """Multipart fields and files, parsed from the body already read (and bounded)."""
    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    again = Request(request.scope, replay)
    try:
        form = await again.form(max_files=4, max_fields=64, max_part_size=limits.body_bytes)
    except Exception as e:  # noqa: BLE001 - python-multipart's own errors
        raise MalformedRequest(f"cannot parse the multipart form: {e}", "send multipart/form-data fields") from None
    fields, files = {}, {}
    try:
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                data = await value.read()
                if len(data) > limits.upload_bytes:
                    raise too_big(key, len(data), limits)
                if data:
                    files[key] = data
            elif value != "":
                fields[key] = value
    finally:
        await form.close()
    unknown = set(files) - set(allowed)
    if unknown:
        raise MalformedRequest(f"unknown file field(s): {', '.join(sorted(unknown))}",
                               f"send only {' and/or '.join(repr(a) for a in allowed)}")
    return fields, files


def create_app(config: ServeConfig | None = None, load=None) -> FastAPI:
    """The app; ``load``: a callable making one Pipeline (default: ``Pipeline.from_pretrained``
    of ``config.checkpoint``), called once per worker when the app starts."""
    config = config or ServeConfig()
    limits = config.limits

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        engine = Engine(config, load)
        await asyncio.to_thread(engine.start)
        app.state.engine = engine
        app.state.uploads = Uploads(config.uploads_kept)
        try:
            yield
        finally:
            await asyncio.to_thread(engine.stop)

    app = FastAPI(title="avatarsync", version=_version(), lifespan=lifespan,
                  description="Portrait + text or speech -> lip-synced talking-head video: jobs (MP4) and a "
                              "WebSocket stream of JPEG frames and PCM audio. Errors are `{error, hint}`.")

    @app.exception_handler(AvatarSyncError)
    async def _avatar_error(request, e: AvatarSyncError):
        return _json_error(status_of(e), e.problem, e.hint)

    @app.exception_handler(RequestValidationError)
    async def _validation(request, e: RequestValidationError):
        first = (e.errors() or [{}])[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        return _json_error(400, f"bad field {where}: {first.get('msg', 'invalid')}", "see the schema at /docs")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request, e: StarletteHTTPException):
        hint = {404: "see /docs for the endpoints", 405: "see /docs for the methods"}.get(e.status_code, "")
        return _json_error(e.status_code, str(e.detail), hint, getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request, e: Exception):
        log.exception("request failed")
        return JSONResponse(error_body(e), status_code=500)

    def engine(request_or_ws) -> Engine:
        return request_or_ws.app.state.engine

    def find(request: Request, job_id: str) -> Job:
        job = engine(request).get(job_id)
        if job is None:
            raise StarletteHTTPException(404, f"no job {job_id!r} (unknown, or finished long ago)")
        return job

    def queue_full() -> JSONResponse:
        return _json_error(429, "the server is busy: its queue is full",
                           f"try again in {config.retry_after_s} s", {"Retry-After": str(config.retry_after_s)})

    # -- pages and info ---------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/v1/health", summary="Workers, queue and job counts")
    async def health(request: Request):
        return engine(request).stats()

    @app.get("/v1/limits", summary="This server's request limits")
    async def get_limits():
        return {"upload_bytes": limits.upload_bytes, "image_pixels": limits.image_pixels,
                "text_chars": limits.text_chars, "audio_seconds": limits.audio_seconds,
                "video_seconds": limits.video_seconds, "video_pixels": limits.video_pixels,
                "queue_size": config.queue_size, "workers": config.workers}

    # -- uploads -----------------------------------------------------------------------------
    @app.post("/v1/uploads", summary="Keep a portrait, recording or video for later requests (portrait_id / audio_id / video_id)",
              openapi_extra={"requestBody": {"content": {"multipart/form-data": {"schema": {
                  "type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}}}}})
    async def upload(request: Request):
        body = await _read_body(request, limits.body_bytes)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise MalformedRequest("send the file as multipart/form-data in a field named 'file'",
                                   "curl -F file=@photo.jpg .../v1/uploads")
        fields, files = await _form(request, body, limits, allowed=("file",))
        data = files.get("file")
        if not data:
            raise MalformedRequest("no 'file' in the upload", "curl -F file=@photo.jpg .../v1/uploads")
        return {"id": request.app.state.uploads.add(data), "bytes": len(data)}

    # -- jobs --------------------------------------------------------------------------------
    schema = SpeakRequest.model_json_schema()
    form_schema = {"type": "object", "properties": {
        **{k: v for k, v in schema["properties"].items() if k not in ("audio", "portrait", "video")},
        **{k: {"type": "string", "format": "binary"} for k in ("audio", "portrait", "video")}}}

    @app.post("/v1/videos", status_code=202, summary="Start a video job (JSON or multipart) -> its id",
              openapi_extra={"requestBody": {"required": True, "content": {
                  "application/json": {"schema": schema}, "multipart/form-data": {"schema": form_schema}}}})
    async def create_video(request: Request):
        body = await _read_body(request, limits.body_bytes)
        ctype = request.headers.get("content-type", "")
        files = {}
        if ctype.startswith("multipart/form-data"):
            fields, files = await _form(request, body, limits)
        else:
            try:
                fields = json.loads(body or b"null")
            except (ValueError, UnicodeDecodeError):
                raise MalformedRequest("the request body is not valid JSON",
                                       'send JSON like {"text": "Hello."} or multipart/form-data') from None
        options = parse_options(fields)
        prepared = await asyncio.to_thread(prepare, options, limits, files, request.app.state.uploads)
        try:
            job = engine(request).submit(Job(prepared, kind="file"))
        except QueueFull:
            return queue_full()
        return JSONResponse(job.public(), status_code=202, headers={"Location": f"/v1/videos/{job.id}"})

    @app.get("/v1/videos/{job_id}.mp4", summary="The finished video (H.264 + AAC)",
             response_class=FileResponse, responses={409: {"description": "not finished"}})
    async def video_file(request: Request, job_id: str):
        job = find(request, job_id)
        if job.status != DONE or job.path is None or not job.path.is_file():
            msg = {CANCELLED: "was cancelled", "failed": "failed"}.get(job.status, f"is {job.status}")
            return _json_error(409 if job.status not in FINISHED else 410, f"the job {msg}; it has no video",
                               "poll GET /v1/videos/{id} until status is done" if job.status not in FINISHED
                               else (job.error or {}).get("error", ""))
        return FileResponse(job.path, media_type="video/mp4", filename=f"avatarsync-{job.id[:8]}.mp4")

    @app.get("/v1/videos/{job_id}", summary="A job's status and progress")
    async def video_status(request: Request, job_id: str):
        return find(request, job_id).public()

    @app.delete("/v1/videos/{job_id}", summary="Cancel a job")
    async def cancel_video(request: Request, job_id: str):
        find(request, job_id)
        return engine(request).cancel(job_id).public()

    # -- the stream --------------------------------------------------------------------------
    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket):
        await ws.accept()
        loop = asyncio.get_running_loop()
        try:
            first = await ws.receive_text()
        except WebSocketDisconnect:
            return
        except Exception:  # noqa: BLE001 - binary first message, etc.
            await _ws_error(ws, MalformedRequest("send the request as one JSON text message", "see docs/serve.md"))
            return
        try:
            try:
                data = json.loads(first)
            except ValueError:
                raise MalformedRequest("the request is not valid JSON", 'send e.g. {"text": "Hello."}') from None
            if len(first) > limits.body_bytes:
                raise LimitError("the request message is over this server's size limit", "send smaller files")
            options = parse_options(data)
            prepared = await asyncio.to_thread(prepare, options, limits, None, ws.app.state.uploads)
        except AvatarSyncError as e:
            await _ws_error(ws, e)
            return
        quality = options.jpeg_quality or config.jpeg_quality
        events: asyncio.Queue = asyncio.Queue()

        def sink(ev) -> None:  # in the worker thread: encode there, hand over to the event loop
            loop.call_soon_threadsafe(events.put_nowait, _encode(ev, quality, engine(ws).fps))

        try:
            job = engine(ws).submit(Job(prepared, kind="stream", sink=sink))
        except QueueFull:
            await ws.send_json({"type": "error", "status": 429, "error": "the server is busy: its queue is full",
                                "hint": f"try again in {config.retry_after_s} s", "retry_after": config.retry_after_s})
            await ws.close(code=1013)
            return
        await ws.send_json({"type": "queued", "id": job.id})

        async def watch_client():
            try:
                while True:
                    msg = await ws.receive()
                    if msg["type"] == "websocket.disconnect":
                        return
                    if msg.get("text") and '"cancel"' in msg["text"]:
                        return
            except Exception:  # noqa: BLE001 - any receive failure means the client is gone
                return

        watcher = asyncio.create_task(watch_client())
        try:
            while True:
                getter = asyncio.create_task(events.get())
                done, _ = await asyncio.wait({getter, watcher}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    job.cancel.set()
                    return
                msg = getter.result()
                if isinstance(msg, bytes):
                    await ws.send_bytes(msg)
                elif msg is not None:
                    if msg.get("type") == "end":
                        msg["id"] = job.id
                        if job.path is not None:
                            msg["video"] = f"/v1/videos/{job.id}.mp4"
                    if msg.get("type") == "start":
                        msg["id"] = job.id
                    await ws.send_json(msg)
                    if msg.get("type") in ("end", "error", "cancelled"):
                        await ws.close()
                        return
        except Exception:  # noqa: BLE001 - the client went away mid-send
            job.cancel.set()
        finally:
            watcher.cancel()
            if job.status not in FINISHED:
                job.cancel.set()

    async def _ws_error(ws: WebSocket, e: AvatarSyncError) -> None:
        try:
            await ws.send_json({"type": "error", "status": status_of(e), "error": e.problem, "hint": e.hint})
            await ws.close(code=1008)
        except Exception:  # noqa: BLE001 - already gone
            pass

    return app


def _encode(ev, quality: int, fps: float):
    """A stream event as a WebSocket message: bytes (frame, audio) or a JSON-able dict."""
    import numpy as np

    from .stream import Audio, End, Frame, Phrase, Start

    if isinstance(ev, Frame):
        import cv2

        ok, jpg = cv2.imencode(".jpg", np.ascontiguousarray(ev.image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        return HEADER.pack(FRAME, ev.index, ev.index / fps, ev.phrase) + jpg.tobytes()
    if isinstance(ev, Audio):
        pcm = (np.clip(ev.samples, -1, 1) * 32767).astype("<i2").tobytes()
        return HEADER.pack(AUDIO, ev.start_frame, ev.start_frame / fps, ev.sample_rate) + pcm
    if isinstance(ev, Start):
        return {"type": "start", "width": ev.width, "height": ev.height, "fps": ev.fps, "render": ev.render,
                "phrases": ev.phrases}
    if isinstance(ev, Phrase):
        return {"type": "phrase", "index": ev.index, "text": ev.text, "start_frame": ev.start_frame,
                "frames": ev.frames}
    if isinstance(ev, End):
        return {"type": "end", "frames": ev.frames, "seconds": ev.frames / ev.fps}
    if isinstance(ev, tuple) and ev and ev[0] == "finished":
        _, status, error = ev
        body = dict(error or {})
        if status == CANCELLED:
            return {"type": "cancelled", **body}
        return {"type": "error", "status": 500 if body.get("error", "").startswith("internal") else 422, **body}
    return None


def _version() -> str:
    from .. import __version__

    return __version__


def run(config: ServeConfig, host: str = "127.0.0.1", port: int = 8000, log_level: str = "info") -> None:
    """Serve until interrupted (one process; ``config.workers`` worker threads, one Pipeline each)."""
    import uvicorn

    uvicorn.run(create_app(config), host=host, port=port, log_level=log_level, ws_max_size=config.limits.body_bytes)
