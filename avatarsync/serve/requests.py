"""Request options (the same as ``speak``'s), decoded in memory and checked against the limits.

A request carries text or a recording (base64 in JSON, a file part in multipart, or the id of an
earlier ``POST /v1/uploads``), an optional portrait or video to dub the same way (neither: the
bundle's avatar) and the ``speak`` options. Nothing a client sends becomes a path: uploads stay in
memory as bytes, and a recording or video is written only to a private temporary file
(``private_file``) named by the server.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ..errors import AudioError, FaceError, InputError
from ..options import option_fields
from .config import Limits


class LimitError(InputError):
    """A request over one of the server's limits (HTTP 413)."""


class MalformedRequest(InputError):
    """A request that is not valid JSON/multipart or has unknown or mistyped fields (HTTP 400)."""


class _Uploads(BaseModel):
    """The request fields that carry data (the rest are ``speak``'s options)."""

    model_config = ConfigDict(extra="forbid")

    audio: str | None = Field(None, description="speech recording, base64 (WAV/FLAC/OGG); multipart: a file part")
    audio_id: str | None = Field(None, description="id of a recording sent earlier to POST /v1/uploads")
    portrait: str | None = Field(None, description="portrait photo, base64 JPEG/PNG; multipart: a file part; "
                                                   "none: the bundle's avatar")
    portrait_id: str | None = Field(None, description="id of a portrait sent earlier to POST /v1/uploads")
    video: str | None = Field(None, description="a video of one face to dub instead of a portrait, base64 (MP4, "
                                                "MOV, WebM, ...; its head motion kept, looped forward and back to the "
                                                "speech's length, only the mouth moved); multipart: a file part")
    video_id: str | None = Field(None, description="id of a video sent earlier to POST /v1/uploads")
    # streaming only
    jpeg_quality: int | None = Field(None, ge=10, le=100, description="quality of streamed JPEG frames")
    mp4: bool = Field(False, description="WS /v1/stream: also keep an MP4 (GET /v1/videos/{id}.mp4)")


# What to say and how: the uploads above plus the options of ``avatarsync speak``, taken from the one
# description of them (avatarsync/options.py), so the CLI, the Python API and the server agree.
SpeakRequest = create_model(
    "SpeakRequest", __base__=_Uploads, __doc__="What to say and how: the options of ``avatarsync speak``.",
    **{name: (tp, Field(default, description=meta["help"].replace("--", "")))
       for name, tp, default, meta in option_fields("server")})


@dataclass
class Prepared:
    """A checked request: options plus decoded inputs (all in memory)."""

    options: SpeakRequest
    image: np.ndarray | None  # RGB uint8, None: the bundle's avatar
    audio: bytes | None  # the recording's bytes
    audio_seconds: float = 0.0
    video: bytes | None = None  # the video to dub's bytes


def parse_options(data: object) -> SpeakRequest:
    if not isinstance(data, dict):
        raise MalformedRequest("the request must be a JSON object of speak options",
                               'send e.g. {"text": "Hello."} (see /docs)')
    try:
        return SpeakRequest.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "request"
        raise MalformedRequest(f"bad field {where}: {first.get('msg', 'invalid')}",
                               "see the request schema at /docs") from None


def b64(data: str, what: str, limits: Limits) -> bytes:
    """Decode base64 (a ``data:...;base64,`` prefix allowed), refusing what decodes over the upload limit."""
    if "," in data[:100] and data.startswith("data:"):
        data = data.split(",", 1)[1]
    if len(data) * 3 // 4 > limits.upload_bytes + 3:
        raise too_big(what, len(data) * 3 // 4, limits)
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise MalformedRequest(f"the {what} is not valid base64", f"send the {what} file's bytes base64-encoded") from None


def too_big(what: str, size: int, limits: Limits) -> LimitError:
    return LimitError(f"the {what} is {size / 2 ** 20:.1f} MiB, over this server's limit of "
                      f"{limits.upload_bytes / 2 ** 20:.1f} MiB", f"send a smaller {what}")


def decode_image(data: bytes, limits: Limits) -> np.ndarray:
    """RGB uint8 from JPEG/PNG bytes; the pixel count is read from the header before decoding."""
    import cv2
    from PIL import Image, UnidentifiedImageError

    if len(data) > limits.upload_bytes:
        raise too_big("portrait", len(data), limits)
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        raise FaceError("cannot read the portrait: not a valid image file", "use a JPEG or PNG photo") from None
    if w * h > limits.image_pixels:
        raise LimitError(f"the portrait is {w}x{h} = {w * h / 1e6:.1f} megapixels, over this server's limit of "
                         f"{limits.image_pixels / 1e6:.1f}", "send a smaller photo (the face matters, not the size)")
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise FaceError("cannot read the portrait: not a valid image file", "use a JPEG or PNG photo")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def audio_seconds(data: bytes, limits: Limits) -> float:
    """The recording's duration, read from its header (the audio is not decoded here)."""
    import soundfile as sf

    if len(data) > limits.upload_bytes:
        raise too_big("audio", len(data), limits)
    try:
        info = sf.info(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - libsndfile raises its own types for anything unreadable
        raise AudioError("cannot read the audio upload", "send a WAV, FLAC or OGG recording") from None
    seconds = info.frames / max(info.samplerate, 1)
    if seconds > limits.audio_seconds:
        raise LimitError(f"the recording is {seconds:.1f} s long, over this server's limit of "
                         f"{limits.audio_seconds:.0f} s", "cut it into shorter pieces")
    if seconds <= 0:
        raise AudioError("the audio upload has no samples", "send a recording of speech")
    return seconds


def check_video(data: bytes, limits: Limits) -> None:
    """Refuse a video to dub that is unreadable, too long or too large a frame, from its header (its
    frames are decoded by the worker)."""
    import av

    if len(data) > limits.upload_bytes:
        raise too_big("video", len(data), limits)
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise InputError("the video upload has no video stream", "send a video of one face (MP4, MOV, WebM)")
            stream = container.streams.video[0]
            w, h = stream.codec_context.width, stream.codec_context.height
            if stream.duration is not None and stream.time_base is not None:
                seconds = float(stream.duration * stream.time_base)
            else:
                seconds = (container.duration or 0) / 1e6
    except (av.error.FFmpegError, OSError, ValueError):
        raise InputError("cannot read the video upload", "send a video file ffmpeg reads (MP4, MOV, WebM, ...)") from None
    if w * h > limits.video_pixels:
        raise LimitError(f"the video is {w}x{h}, over this server's limit of {limits.video_pixels / 1e6:.2f} "
                         "megapixels a frame", "send a smaller video (720p is plenty for a face)")
    if seconds > limits.video_seconds:
        raise LimitError(f"the video is {seconds:.1f} s long, over this server's limit of "
                         f"{limits.video_seconds:.0f} s", "send a shorter clip: it is looped to the speech's length")


def prepare(options: SpeakRequest, limits: Limits, files: dict[str, bytes] | None = None,
            uploads=None) -> Prepared:
    """Decode and check a request: exactly one of text/audio, sizes within ``limits``.

    ``files``: multipart file parts by field name ("portrait", "audio", "video"); ``uploads``: a mapping of
    upload ids to bytes (``POST /v1/uploads``)."""
    files = files or {}

    def source(kind: str) -> bytes | None:
        given = [x for x in (files.get(kind), getattr(options, kind), getattr(options, f"{kind}_id"))
                 if x is not None]
        if len(given) > 1:
            raise MalformedRequest(f"give the {kind} once: as a file, as base64 or as an upload id",
                                   f"drop one of {kind} / {kind}_id")
        if files.get(kind) is not None:
            return files[kind]
        if getattr(options, kind) is not None:
            return b64(getattr(options, kind), kind, limits)
        ref = getattr(options, f"{kind}_id")
        if ref is None:
            return None
        found = uploads.get(ref) if uploads is not None else None
        if found is None:
            raise InputError(f"no upload with id {ref!r} (or it expired)", "POST the file to /v1/uploads again")
        return found

    for name, value in (("text", options.text), ("transcript", options.transcript)):
        if value is not None and len(value) > limits.text_chars:
            raise LimitError(f"the {name} is {len(value)} characters, over this server's limit of "
                             f"{limits.text_chars}", "split it into several requests")
    audio = source("audio")
    if (options.text is None) == (audio is None):
        raise InputError("give exactly one of text or audio", 'send "text": "..." or an audio upload')
    if options.text is not None and not options.text.strip():
        raise InputError("the text is empty", "give a sentence to speak")
    seconds = audio_seconds(audio, limits) if audio is not None else 0.0
    portrait, video = source("portrait"), source("video")
    if portrait is not None and video is not None:
        raise InputError("give a portrait image or a video to dub, not both", "drop the portrait or the video")
    image = decode_image(portrait, limits) if portrait is not None else None
    if video is not None:
        check_video(video, limits)
    return Prepared(options, image, audio, seconds, video)


@contextmanager
def private_file(data: bytes, folder: str, suffix: str = ".bin") -> Iterator[str]:
    """``data`` in a temporary file only this process can read (mode 0600, a name the server makes),
    removed afterwards."""
    fd, path = tempfile.mkstemp(suffix=suffix, dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
