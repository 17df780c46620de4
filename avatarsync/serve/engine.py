"""Jobs, a bounded queue and a pool of worker threads, each with its own loaded Pipeline.

A job is a prepared request plus a sink: a file job writes an MP4 in the server's private folder
(named by the job's id, which the server makes), a stream job hands each event to a callback (the
WebSocket). ``submit`` refuses with :class:`QueueFull` when ``queue_size`` jobs already wait.
Cancelling sets the job's event; the worker checks it before each phrase and frame. A request that
fails marks its job failed; the worker goes on with the next one.
"""

from __future__ import annotations

import logging
import queue
import shutil
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import AvatarSyncError
from .config import ServeConfig

log = logging.getLogger("avatarsync.serve")

QUEUED, RUNNING, DONE, FAILED, CANCELLED = "queued", "running", "done", "failed", "cancelled"
FINISHED = (DONE, FAILED, CANCELLED)


class QueueFull(Exception):
    pass


@dataclass
class Job:
    prepared: object  # requests.Prepared
    kind: str = "file"  # "file" (an MP4) or "stream" (events to ``sink``)
    sink: Callable[[object], None] | None = None
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    status: str = QUEUED
    progress: float = 0.0
    frames: int = 0
    fps: float = 25.0
    error: dict | None = None
    path: Path | None = None
    created: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def public(self) -> dict:
        out = {"id": self.id, "kind": self.kind, "status": self.status, "progress": round(self.progress, 3),
               "frames": self.frames, "seconds": round(self.frames / self.fps, 3) if self.fps else 0.0,
               "created": self.created}
        if self.started:
            out["started"] = self.started
        if self.finished:
            out["finished"] = self.finished
            out["compute_seconds"] = round(self.finished - (self.started or self.finished), 3)
        if self.error:
            out.update(self.error)
        if self.status == DONE and self.path is not None:
            out["video"] = f"/v1/videos/{self.id}.mp4"
        return out


def error_body(e: BaseException) -> dict:
    if isinstance(e, AvatarSyncError):
        return {"error": e.problem, "hint": e.hint}
    return {"error": f"internal error: {type(e).__name__}: {e}",
            "hint": "the request failed on the server; try again or report it with the request"}


def warm(pipe) -> None:
    """Load what a first request would otherwise wait for: the voice, the face detector, the models'
    first passes (errors ignored: a bundle without some part simply skips it)."""
    import numpy as np

    for step in (lambda: pipe.phonemes("Hello.", None, None, "en"),
                 lambda: pipe.crop(pipe.avatar()[0]),
                 lambda: pipe.mouth_shapes(pipe.phonemes("Hi.", None, None, "en")[0], 10) if pipe.mouth else None,
                 lambda: pipe.speak(text="Hi.", out=None, render="tokens"),
                 lambda: __import__("avatarsync.faces.detect", fromlist=["find_face"]).find_face(
                     np.full((64, 64, 3), 128, np.uint8), pipe.detector),
                 lambda: __import__("avatarsync.voices", fromlist=["prepare"]).prepare("en")):
        try:
            step()
        except Exception:  # noqa: BLE001 - warming is best effort
            pass


def keep_detector(pipe) -> None:
    """Give the worker's Pipeline one landmark detector object, reused for every portrait: a detector
    named by a string is made anew for each image (mediapipe's graph set up again, and its memory, about
    28 MB a portrait here, never returned)."""
    if isinstance(pipe.detector, str):
        from ..faces.detect import get_detector

        pipe.detector = get_detector(pipe.detector)


def _trim_heap() -> None:
    """Give the frames' freed memory back to the system (glibc keeps it per thread otherwise, and a
    long-running server's resident size creeps up); a no-op elsewhere."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Engine:
    """Worker threads over a bounded queue. ``load()`` makes one Pipeline per worker."""

    def __init__(self, config: ServeConfig, load: Callable[[], object] | None = None) -> None:
        self.config = config
        self._load = load or self._default_load
        self._queue: queue.Queue[Job | None] = queue.Queue(maxsize=max(config.queue_size, 1))
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._ready = threading.Barrier(max(config.workers, 1) + 1)
        self._load_errors: list[BaseException] = []
        self._load_lock = threading.Lock()
        self.workdir: Path | None = None
        self.fps = 25.0
        self.running = 0

    def _default_load(self):
        from ..pipeline import Pipeline

        # every model now, under the load lock: no request pays for loading, and no worker imports
        # transformers while another does
        return Pipeline.from_pretrained(self.config.checkpoint, device=self.config.device).load_models()

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="avatarsync-serve-"))  # mode 0700
        for i in range(max(self.config.workers, 1)):
            t = threading.Thread(target=self._worker, name=f"avatarsync-worker-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        self._ready.wait()
        if self._load_errors:
            self.stop()
            raise self._load_errors[0]

    def stop(self) -> None:
        with self._lock:
            for job in self._jobs.values():
                job.cancel.set()
        for _ in self._threads:
            try:
                self._queue.put(None, timeout=5)
            except queue.Full:
                pass
        for t in self._threads:
            t.join(timeout=30)
        self._threads = []
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    # -- jobs ---------------------------------------------------------------------------------
    def submit(self, job: Job) -> Job:
        self._prune()
        job.fps = self.fps
        with self._lock:
            try:
                self._queue.put_nowait(job)
            except queue.Full:
                raise QueueFull() from None
            self._jobs[job.id] = job
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def cancel(self, job_id: str) -> Job | None:
        job = self.get(job_id)
        if job is not None and job.status not in FINISHED:
            job.cancel.set()
        return job

    def stats(self) -> dict:
        with self._lock:
            by = {}
            for j in self._jobs.values():
                by[j.status] = by.get(j.status, 0) + 1
        return {"workers": len(self._threads), "queued": self._queue.qsize(), "queue_size": self._queue.maxsize,
                "running": self.running, "jobs": by}

    def _prune(self) -> None:
        now = time.time()
        with self._lock:
            done = sorted((j for j in self._jobs.values() if j.status in FINISHED), key=lambda j: j.finished or 0)
            drop = [j for j in done if now - (j.finished or now) > self.config.job_ttl_s]
            extra = len(done) - len(drop) - self.config.keep_jobs
            if extra > 0:
                drop += [j for j in done if j not in drop][:extra]
            for j in drop:
                self._jobs.pop(j.id, None)
                if j.path is not None:
                    j.path.unlink(missing_ok=True)

    def _worker(self) -> None:
        try:
            with self._load_lock:  # one at a time: lazy imports (transformers) are not thread-safe
                pipe = self._load()
                keep_detector(pipe)
                self.fps = float(pipe.info.fps)
                if self.config.warmup:
                    warm(pipe)
        except BaseException as e:  # noqa: BLE001 - reported by start()
            self._load_errors.append(e)
            self._ready.wait()
            return
        self._ready.wait()
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(1, thread_name_prefix="avatarsync-voice") as voice:  # one per worker, reused
            while True:
                job = self._queue.get()
                if job is None:
                    close = getattr(pipe.detector, "close", None)
                    if callable(close):
                        close()
                    return
                try:
                    self._run(pipe, job, voice)
                except BaseException:  # noqa: BLE001 - a worker never dies of one request
                    log.error("job %s: %s", job.id, traceback.format_exc())
                finally:
                    _trim_heap()

    def _run(self, pipe, job: Job, voice=None) -> None:
        from .stream import Audio, Cancelled, End, Frame, Mp4Writer, Phrase, Start, generate

        if job.cancel.is_set():
            self._finish(job, CANCELLED)
            return
        job.status, job.started = RUNNING, time.time()
        with self._lock:
            self.running += 1
        writer = None
        keep_mp4 = job.kind == "file" or bool(getattr(job.prepared.options, "mp4", False))
        try:
            n_pieces, done_frames, piece_frames, piece = 1, 0, 1, 0
            for ev in generate(pipe, job.prepared, self.workdir, job.cancel, voice):
                if isinstance(ev, Start):
                    n_pieces = max(ev.phrases, 1)
                    if keep_mp4:
                        writer = Mp4Writer(self.workdir / f"{job.id}.mp4", ev.fps)
                elif isinstance(ev, Phrase):
                    piece, piece_frames, done_frames = ev.index, max(ev.frames, 1), ev.start_frame
                elif isinstance(ev, Audio) and writer is not None:
                    writer.audio(ev.samples, ev.sample_rate)
                elif isinstance(ev, Frame):
                    if writer is not None:
                        writer.frame(ev.image)
                    job.frames = ev.index + 1
                    job.progress = min((piece + (ev.index + 1 - done_frames) / piece_frames) / n_pieces, 0.999)
                if isinstance(ev, End) and writer is not None:
                    job.path = writer.close()
                    writer = None
                if job.sink is not None:
                    job.sink(ev)
            job.progress = 1.0
            self._finish(job, DONE)
        except Cancelled:
            self._finish(job, CANCELLED, {"error": "cancelled", "hint": "the client cancelled or went away"})
        except BaseException as e:  # noqa: BLE001 - the job fails, the server stays
            if not isinstance(e, AvatarSyncError):
                log.error("job %s failed: %s", job.id, traceback.format_exc())
            self._finish(job, FAILED, error_body(e))
        finally:
            with self._lock:
                self.running -= 1
            if writer is not None:
                writer.abort()
            job.prepared = None  # the uploads go with the request
            job.sink = None

    def _finish(self, job: Job, status: str, error: dict | None = None) -> None:
        job.status, job.error, job.finished = status, error, time.time()
        if job.sink is not None and status != DONE:
            try:
                job.sink(("finished", status, error))
            except Exception:  # noqa: BLE001 - the client is gone
                pass
        job.done.set()
