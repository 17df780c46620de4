"""Phrase-by-phrase generation: frames and audio as they are made, for streaming and for jobs.

Text is split at sentence and clause punctuation and each phrase is spoken and animated in turn, so
the first frames exist after the first phrase, and memory holds one phrase at a time. A recording is
aligned once (its transcript may span it), then animated piece by piece, cut in its pauses.

Joins do not jump: a photo (the "warp" render) has no head motion, and each spoken phrase's mouth
shapes are eased to the portrait's own rest shape over its first and last ``EASE`` frames, so every
phrase starts and ends on the portrait itself; a recording's shapes are predicted for the whole track
at once, and its cuts lie in pauses. The keyframe chain ("tokens", the bundle's avatar) eases each
phrase's first frames from the last frame sent.

Every event carries its time: frame ``i`` shows at ``i / fps`` seconds, an audio chunk starts at its
first frame's time and lasts exactly its frames' length.
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import AvatarSyncError, CheckpointError, InputError

EASE = 3  # frames over which a phrase's mouth leaves and returns to rest
MAX_PHRASE_CHARS = 160
MIN_PIECE_SECONDS = 1.0  # a recording is cut only in pauses at least this far apart
PAUSE_SECONDS = 0.15  # silences at least this long are places to cut a recording
_BREAK = re.compile(r"(?<=[.!?;:,\u3002\uff01\uff1f\uff1b\uff1a\uff0c\u3001])\s*|\n+")


class Cancelled(Exception):
    """The client went away or cancelled the job."""


@dataclass
class Start:
    width: int
    height: int
    fps: float
    render: str
    phrases: int  # how many pieces will follow (text: phrases; audio: pieces cut at pauses)


@dataclass
class Phrase:
    index: int
    text: str
    start_frame: int
    frames: int


@dataclass
class Audio:
    start_frame: int
    samples: np.ndarray  # float32 mono
    sample_rate: int


@dataclass
class Frame:
    index: int
    phrase: int
    image: np.ndarray  # RGB uint8


@dataclass
class End:
    frames: int
    fps: float


def split_phrases(text: str, max_chars: int = MAX_PHRASE_CHARS) -> list[str]:
    """Text cut after sentence/clause punctuation (Latin and CJK) and at line breaks; pieces without a
    letter join their neighbour; pieces over ``max_chars`` are cut again at spaces."""
    pieces = [p.strip() for p in _BREAK.split(text) if p and p.strip()]
    merged: list[str] = []
    for p in pieces:
        if merged and not any(ch.isalnum() for ch in p):
            merged[-1] += p
        elif merged and not any(ch.isalnum() for ch in merged[-1]):
            merged[-1] += " " + p
        else:
            merged.append(p)
    out: list[str] = []
    for p in merged:
        while len(p) > max_chars:
            cut = p.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            out.append(p[:cut].strip())
            p = p[cut:].strip()
        if p:
            out.append(p)
    return out


def pause_cuts(track, min_piece: float = MIN_PIECE_SECONDS, pause: float = PAUSE_SECONDS) -> list[float]:
    """Times (s) inside the track's silences of at least ``pause`` seconds, at least ``min_piece`` apart,
    where a recording can be cut."""
    from ..phonemes.track import SILENCE

    cuts, last = [], 0.0
    for u in track.units:
        if u.symbol == SILENCE and u.end - u.start >= pause and 0 < u.start and u.end < track.duration:
            t = 0.5 * (u.start + u.end)
            if t - last >= min_piece and track.duration - t >= min_piece:
                cuts.append(t)
                last = t
    return cuts


def ease(shapes: np.ndarray, rest: np.ndarray, n: int = EASE) -> np.ndarray:
    """Shapes weighted towards ``rest`` at both ends: exactly rest on the first and last frame."""
    k = np.arange(len(shapes))
    w = np.clip(np.minimum(k, len(shapes) - 1 - k) / max(n, 1), 0.0, 1.0)[:, None]
    return rest[None] + w * (shapes - rest[None])


def _resolve_render(pipe, image, render: str | None, crop_only: bool, video: bool = False) -> str:
    from ..pipeline import RENDERS

    if video:  # as ``Pipeline.speak``: a video is dubbed by the mouth-motion model, whatever the render
        if pipe.mouth is None:
            raise CheckpointError(f"the bundle {pipe.folder.name} has no mouth-motion model (mouth/), so it "
                                  "cannot dub a video", "use a bundle made with `avatarsync bundle --mouth DIR`")
        if crop_only:
            raise InputError("crop_only writes the keyframe chain's face crop; a dubbed video has none",
                             "drop crop_only, or send a portrait instead of the video")
        return "dub"
    how = pipe.info.render if render is None else render
    if how not in RENDERS:
        raise InputError(f"unknown render {how!r}", f"use one of {', '.join(RENDERS)}")
    if how == "warp" and pipe.mouth is None:
        raise CheckpointError(f"the bundle {pipe.folder.name} has no mouth-motion model (mouth/), so it cannot warp",
                              "use render tokens, or a bundle made with `avatarsync bundle --mouth DIR`")
    if how == "warp" and image is None:
        raise InputError("the warp render moves a photo's own mouth; the bundle's avatar has no face mesh",
                         "send a portrait, or use render tokens (or auto)")
    if how == "auto":
        how = "warp" if (pipe.mouth is not None and image is not None and not crop_only) else "tokens"
    return how


class _Tokens:
    """The keyframe chain of ``Pipeline.speak`` (render "tokens") for one phrase's track at a time."""

    def __init__(self, pipe, image, opts) -> None:
        from ..pipeline import PASTE_REGIONS

        self.pipe, self.opts = pipe, opts
        self.region = pipe.info.paste_region if opts.paste_region is None else opts.paste_region
        if self.region not in PASTE_REGIONS:
            raise InputError(f"unknown paste region {self.region!r}", f"use one of {', '.join(PASTE_REGIONS)}")
        self.portrait, self.aligned = pipe.crop(image)
        self.reference = pipe.reference(self.aligned.crop)
        self.paste = None
        if not opts.crop_only:
            from ..faces.align import PasteBack

            self.paste = (PasteBack(self.portrait, self.aligned) if self.region == "face" else
                          PasteBack(self.portrait, self.aligned, mask="mouth", face_scale=pipe.info.face_scale,
                                    match_colour=True))
        self.shape = self.aligned.crop.shape if opts.crop_only else self.portrait.shape

    def frames(self, track, n_frames: int) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        from ..pipeline import _positive_units

        pipe, o = self.pipe, self.opts
        keyed = _positive_units(track)
        if not keyed.units:
            rest = self.aligned.crop if o.crop_only else self.portrait
            return np.repeat(rest[None], n_frames, axis=0)
        with torch.no_grad():
            vectors = pipe.keyframe_latents(self.aligned.crop, keyed, seed=o.seed, temperature=o.temperature,
                                            top_k=o.top_k, guidance=o.guidance, keyframe_decode=o.keyframe_decode)
            if pipe.pixel_factor:
                latents = F.pixel_unshuffle(pipe.decode_keyframes(vectors, self.reference), pipe.pixel_factor)
            else:
                latents = vectors
            crops = pipe.decode(pipe.interpolate(latents, keyed, track.duration), self.reference)
        crops = crops[:n_frames]
        if self.paste is None:
            return crops
        return np.stack([self.paste(c) for c in crops])


def generate(pipe, prepared, workdir: str | Path, cancel: threading.Event | None = None,
             voice_pool=None) -> Iterator[object]:
    """Events ``Start, (Phrase, Audio, Frame*)*, End`` for a :class:`~.requests.Prepared` request.

    ``cancel`` is checked before each phrase and each frame (raises :class:`Cancelled`); ``workdir``:
    a private folder for the recording's temporary file; ``voice_pool``: a one-thread executor that speaks
    the next phrase meanwhile (None: one made for this call)."""
    import torch

    from ..interpolation.schedule import n_output_frames
    from .requests import private_file

    o = prepared.options
    cancel = cancel or threading.Event()

    def check() -> None:
        if cancel.is_set():
            raise Cancelled()

    fps = pipe.info.fps
    video = prepared.video
    how = _resolve_render(pipe, prepared.image, o.render, o.crop_only, video is not None)
    if prepared.audio is not None:  # aligned once: the transcript may span the whole recording
        with private_file(prepared.audio, str(workdir), ".audio") as path:
            track, samples, sr = pipe.phonemes(None, path, o.transcript, o.lang, aligner=o.aligner)
        cuts = [0.0] + pause_cuts(track) + [track.duration]
        pieces = [(None, a, b) for a, b in zip(cuts, cuts[1:])]
    else:
        phrases = split_phrases(o.text)
        if not phrases:
            raise InputError(f"the text {o.text!r} has nothing to speak", "give words, not only punctuation")
        pieces = [(p, None, None) for p in phrases]
    check()
    torch.manual_seed(o.seed)
    from concurrent.futures import ThreadPoolExecutor

    def speak_piece(k: int):
        return pipe.phonemes(pieces[k][0], None, None, o.lang, voice=o.voice, rate=o.rate, pitch=o.pitch)

    from ..voices import prepare as prepare_voice

    # the next phrase is spoken while this one is animated (the first while the face is found); after each,
    # the voice prepares for the next (a Piper voice's seeded session), so no phrase waits for that
    with contextlib.ExitStack() as stack:
        voice = voice_pool or stack.enter_context(ThreadPoolExecutor(1, thread_name_prefix="avatarsync-voice"))

        def speak_ahead(k: int):
            spoken = voice.submit(speak_piece, k)
            voice.submit(prepare_voice, o.lang, o.voice)
            return spoken

        ahead = speak_ahead(0) if prepared.audio is None else None
        early = False
        if how == "warp":
            warp = pipe._photo_warp(prepared.image)
            rest = np.array([warp.gap0, 0.0])
            shape = warp.image.shape
            full_shapes = None
            if prepared.audio is not None:
                full_shapes = ease(pipe.mouth_shapes(track, n_output_frames(track.duration, fps)), rest)
        elif how == "dub":  # the whole video tracked once; frame i of the output shows source frame index[i]
            from ..mouth.dub import VideoDub, pingpong

            with private_file(video, str(workdir), ".video") as path:
                dub = VideoDub(*pipe.video_faces(path), pipe.interior, o.dub_mouth)
            shape = dub.frames.shape[1:]
            full_shapes = None
            if prepared.audio is not None:
                full_shapes = pipe.mouth_shapes(track, n_output_frames(track.duration, fps))
        else:
            tokens = _Tokens(pipe, prepared.image, o)
            shape = tokens.shape
        yield Start(int(shape[1]), int(shape[0]), fps, how, len(pieces))
        if how == "warp":  # every piece starts at rest, so the first frame is the portrait itself: send it now
            yield Frame(0, 0, warp.render(rest))
            early = True

        frame, last = 0, None
        for k, (text, a, b) in enumerate(pieces):
            check()
            if text is not None:
                ptrack, psamples, psr = ahead.result()
                ahead = speak_ahead(k + 1) if k + 1 < len(pieces) else None
                n = n_output_frames(ptrack.duration, fps)
            else:
                f0, f1 = int(round(a * fps)), int(round(b * fps))
                n = f1 - f0
                if n <= 0:
                    continue
                ptrack = track.slice(f0 / fps, f1 / fps)
                psr = sr
                psamples = samples[int(round(f0 * sr / fps)):int(round(f1 * sr / fps))]
            check()
            yield Phrase(k, text or "", frame, n)
            m = int(round(n * psr / fps))
            psamples = np.pad(psamples, (0, max(0, m - len(psamples))))[:m]
            yield Audio(frame, psamples.astype(np.float32), int(psr))
            if how == "dub":
                shapes = full_shapes[f0:f1] if full_shapes is not None else pipe.mouth_shapes(ptrack, n)
                index = pingpong(len(dub), frame + n)[frame:]  # the head moves on across phrases
                from threadpoolctl import threadpool_limits

                with threadpool_limits(limits=1, user_api="blas"):
                    for i, s in enumerate(shapes):
                        check()
                        yield Frame(frame + i, k, dub.render(int(index[i]), s))
            elif how == "warp":
                if full_shapes is not None:
                    shapes = full_shapes[f0:f1]
                else:
                    shapes = ease(pipe.mouth_shapes(ptrack, n), rest)
                from threadpoolctl import threadpool_limits

                with threadpool_limits(limits=1, user_api="blas"):
                    for i, s in enumerate(shapes):
                        check()
                        if early and frame + i == 0:
                            continue  # sent already (the same pixels: the shapes start at rest)
                        yield Frame(frame + i, k, warp.render(s))
            else:
                frames = tokens.frames(ptrack, n)
                if len(frames) < n:  # never short of the audio
                    frames = np.concatenate([frames, np.repeat(frames[-1:], n - len(frames), axis=0)])
                if last is not None:
                    for i in range(min(EASE, n)):
                        w = (i + 1) / (EASE + 1)
                        frames[i] = np.clip((1 - w) * last + w * frames[i] + 0.5, 0, 255).astype(np.uint8)
                for i, f in enumerate(frames):
                    check()
                    yield Frame(frame + i, k, f)
                last = frames[-1].astype(np.float32)
            frame += n
        if ahead is not None:
            ahead.cancel()
            if not ahead.cancelled():
                ahead.exception()  # let a phrase being spoken finish before the pool is reused
    if frame == 0:
        raise InputError("nothing to animate: the speech has no length", "give a longer text or recording")
    yield End(frame, fps)


class Mp4Writer:
    """H.264 + AAC written as frames and audio chunks arrive (memory stays flat); the file appears at
    ``path`` only once ``close()`` finished (``abort()`` removes it)."""

    def __init__(self, path: str | Path, fps: float, crf: int = 20) -> None:
        self.path = Path(path)
        self.tmp = self.path.with_suffix(".part")
        self.fps, self.crf = fps, crf
        self.container = None
        self.v = self.a = None
        self._pending = np.zeros(0, np.float32)
        self._apts = 0
        self.sample_rate = None
        self._audio: list[np.ndarray] = []
        self._frames: list[np.ndarray] = []
        self.expect_audio = True

    def _open(self, w: int, h: int) -> None:
        from fractions import Fraction

        import av

        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        self.v = self.container.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
        self.v.pix_fmt = "yuv420p"
        self.v.options = {"crf": str(self.crf), "preset": "veryfast"}
        self.v.width, self.v.height = w - w % 2, h - h % 2
        if self.sample_rate:
            self.a = self.container.add_stream("aac", rate=int(self.sample_rate))
            self.a.layout = "mono"

    def audio(self, samples: np.ndarray, sample_rate: int) -> None:
        if self.container is None:  # the streams are made with the first frame
            self.sample_rate = self.sample_rate or sample_rate
            self._audio.append(samples)
            if self._frames:
                pending, self._frames = self._frames, []
                for f in pending:
                    self.frame(f)
            return
        self._encode_audio(samples)

    def _encode_audio(self, samples: np.ndarray, flush: bool = False) -> None:
        import av

        if self.a is None:
            return
        buf = np.concatenate([self._pending, np.clip(np.asarray(samples, np.float32).ravel(), -1, 1)])
        step = 1024
        n = len(buf) if flush else len(buf) - len(buf) % step
        for s in range(0, n, step):
            block = np.ascontiguousarray(buf[s:min(s + step, n)])
            fr = av.AudioFrame.from_ndarray(block[None], format="flt", layout="mono")
            fr.sample_rate, fr.pts = int(self.sample_rate), self._apts
            self._apts += len(block)
            for p in self.a.encode(fr):
                self.container.mux(p)
        self._pending = buf[n:]

    def frame(self, image: np.ndarray) -> None:
        import av

        if self.container is None and self.sample_rate is None and self.expect_audio:
            self._frames.append(image)  # the streams are made once the audio's rate is known
            return
        if self.container is None:
            self._open(image.shape[1], image.shape[0])
            for chunk in self._audio:
                self._encode_audio(chunk)
            self._audio = []
            pending, self._frames = self._frames, []
            for f in pending:
                self.frame(f)
        h, w = self.v.height, self.v.width
        for p in self.v.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image[:h, :w]), format="rgb24")):
            self.container.mux(p)

    def close(self) -> Path:
        if self._frames:
            self.expect_audio = False
            pending, self._frames = self._frames, []
            for f in pending:
                self.frame(f)
        if self.container is None:
            raise InputError("no frames to write", "the video would be empty")
        for p in self.v.encode():
            self.container.mux(p)
        self._encode_audio(np.zeros(0, np.float32), flush=True)
        if self.a is not None:
            for p in self.a.encode():
                self.container.mux(p)
        self.container.close()
        self.container = None
        self.tmp.replace(self.path)
        return self.path

    def abort(self) -> None:
        try:
            if self.container is not None:
                self.container.close()
        except Exception:  # noqa: BLE001 - a half-written file is removed either way
            pass
        self.container = None
        self.tmp.unlink(missing_ok=True)


__all__ = ["Audio", "Cancelled", "End", "Frame", "Mp4Writer", "Phrase", "Start", "AvatarSyncError", "generate",
           "pause_cuts", "split_phrases"]
