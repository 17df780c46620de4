"""Server settings and request limits (all configurable: ``avatarsync serve --help``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; larger requests are refused with 413 and ``{error, hint}``."""

    upload_bytes: int = 16 * 2 ** 20  # one uploaded file (portrait, audio or video), after base64 decoding
    image_pixels: int = 12_000_000  # width * height of a portrait
    text_chars: int = 2000  # text (and transcript) length in characters
    audio_seconds: float = 120.0  # an uploaded recording's duration
    video_seconds: float = 20.0  # a video to dub (it is looped to the speech's length, so a short clip will do)
    video_pixels: int = 1280 * 720  # width * height of a video's frames (its decoded frames are held in memory)

    @property
    def body_bytes(self) -> int:
        """The largest request body read: two uploads as base64 plus room for the options."""
        return 3 * self.upload_bytes + 2 ** 20


@dataclass(frozen=True)
class ServeConfig:
    checkpoint: str | None = None  # bundle folder (None: the one shipped in the package)
    device: str = "auto"
    workers: int = 1  # worker threads, each with its own Pipeline
    queue_size: int = 8  # requests waiting for a worker; more are refused with 429
    retry_after_s: int = 5  # the Retry-After of a 429
    keep_jobs: int = 64  # finished jobs (and their MP4s) kept; the oldest go first
    job_ttl_s: float = 3600.0  # finished jobs older than this are dropped with their files
    uploads_kept: int = 32  # portraits/recordings uploaded for later requests (POST /v1/uploads), in memory
    warmup: bool = True  # each worker runs a tiny request at start-up (loads the voice and the face detector)
    jpeg_quality: int = 80  # default quality of streamed frames
    limits: Limits = field(default_factory=Limits)
