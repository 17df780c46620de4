"""Writing MP4 (H.264 + AAC) from frames and a speech track, atomically."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from ..errors import InputError


def check_writable(path: str | Path) -> Path:
    """Raise InputError unless ``path`` can be created as a file (checked before long work starts)."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.exists():
        raise InputError(f"cannot write {path}: folder {parent} does not exist", "create the folder or choose another output path")
    if not os.access(parent, os.W_OK):
        raise InputError(f"cannot write {path}: folder {parent} is not writable", "choose an output path you can write to")
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder", "give a file name such as out.mp4")
    return path


@contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; move it into place only on success.

    On any exception the temporary file is removed, so no partial output is left.
    """
    path = check_writable(path)
    parent = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix or ".tmp", dir=parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_mp4(
    path: str | Path,
    frames: Iterable[np.ndarray] | np.ndarray,
    fps: float,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    crf: int = 18,
) -> Path:
    """Encode RGB uint8 frames (H, W, 3) to H.264 (yuv420p) with optional mono AAC audio.

    Frame sizes must be even (H.264 with 4:2:0 chroma). The file appears at
    ``path`` only when encoding finished.
    """
    import av

    with atomic_output(path) as tmp:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            vstream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            vstream.pix_fmt = "yuv420p"
            vstream.options = {"crf": str(crf), "preset": "veryfast"}
            astream = None
            if audio is not None:
                astream = container.add_stream("aac", rate=int(sample_rate))
                astream.layout = "mono"
            first = True
            for frame in frames:
                frame = np.ascontiguousarray(frame)
                if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                    raise InputError(f"video frames must be (H, W, 3) uint8, got {frame.shape} {frame.dtype}")
                if first:
                    h, w = frame.shape[:2]
                    if h % 2 or w % 2:
                        raise InputError(f"frame size {w}x{h} must be even for H.264", "resize to an even size")
                    vstream.width, vstream.height = w, h
                    first = False
                for packet in vstream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            if first:
                raise InputError("no frames to write", "the video would be empty")
            for packet in vstream.encode():
                container.mux(packet)
            if astream is not None:
                _mux_audio(container, astream, audio, int(sample_rate))
    return Path(path)


def _mux_audio(container, astream, audio: np.ndarray, sample_rate: int) -> None:
    import av

    samples = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
    chunk = 1024
    pts = 0
    for start in range(0, len(samples), chunk):
        block = samples[start : start + chunk]
        aframe = av.AudioFrame.from_ndarray(block[None, :], format="flt", layout="mono")
        aframe.sample_rate = sample_rate
        aframe.pts = pts
        pts += len(block)
        for packet in astream.encode(aframe):
            container.mux(packet)
    for packet in astream.encode():
        container.mux(packet)


def probe_mp4(path: str | Path) -> dict:
    """Codec names, frame count, durations (seconds) of an MP4's video and audio streams."""
    import av

    info: dict = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            if stream.type == "video":
                n = sum(1 for _ in container.decode(stream))
                info["video_codec"] = stream.codec_context.name
                info["video_frames"] = n
                info["fps"] = float(stream.average_rate) if stream.average_rate else None
                info["video_duration"] = n / info["fps"] if info["fps"] else None
                info["width"], info["height"] = stream.codec_context.width, stream.codec_context.height
        container.seek(0)
        for stream in container.streams:
            if stream.type == "audio":
                info["audio_codec"] = stream.codec_context.name
                info["audio_duration"] = float(stream.duration * stream.time_base) if stream.duration else None
                info["sample_rate"] = stream.codec_context.sample_rate
    return info


def read_video_frames(path: str | Path, fps: float | None = None) -> tuple[np.ndarray, float]:
    """All frames of a video as (N, H, W, 3) uint8 RGB, and the file's own frame rate.

    With ``fps`` the frames are resampled to that rate by their timestamps (nearest frame), so any
    video ffmpeg reads (mpg, mp4, mov, webm, mkv; constant or variable rate) comes out at ``fps``."""
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            rate = float(stream.average_rate or 25)
            frames, times = [], []
            for f in container.decode(stream):
                frames.append(f.to_ndarray(format="rgb24"))
                times.append(f.time)
    except (av.error.FFmpegError, IndexError, OSError, ValueError) as e:
        raise InputError(f"cannot read video {path}: {e}", "check that the file is a readable video") from None
    if not frames:
        raise InputError(f"video {path} has no frames", "check that the file is a readable video")
    video = np.stack(frames)
    if fps is None:
        return video, rate
    t = np.array([i / rate if v is None else float(v) for i, v in enumerate(times)])
    t -= t[0]
    n = max(1, int(round(len(video) * fps / rate)))
    want = np.arange(n) / fps
    idx = np.clip(np.searchsorted(t, want + 0.5 / rate), 1, len(t)) - 1  # last frame shown at each time
    return video[idx], rate
