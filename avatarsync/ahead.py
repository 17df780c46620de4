"""Work done ahead, in a forked child, while the parent imports torch and loads the models.

    ahead = WorkAhead.start(SpeechRequest(text, lang, voice, rate, pitch), portrait="me.jpg")  # before torch
    ...                                                  # import torch, load the bundle
    syn = ahead.speech(text, lang, voice, rate, pitch)   # the Synthesis, or None
    face = ahead.face("me.jpg", "mediapipe")             # the portrait's FaceLandmarks, or None

``avatarsync speak`` starts one first thing. Importing torch takes about 2 s on one core and holds
the GIL (a thread would only take turns with it), so the other core is free: the child speaks the
text (about 1 s: importing onnxruntime, a seeded Piper session, the synthesis) and finds the face
in the portrait (about 0.8 s: mediapipe's import and its face mesh), neither of which needs torch.

Best effort by design: where ``os.fork`` is missing (not Linux), torch is already imported, the child
failed, or a request differs from the one started (another text, another file, the file changed),
the answer is None and the caller does the work itself, so every error is reported by the normal
path. The child is a fresh process running the same functions the parent would (Piper runs each
synthesis on a new seeded session, the detector is made from its name), so its results are the
parent's own (tested)."""

from __future__ import annotations

import os
import pickle
import sys
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class SpeechRequest:
    """What to speak: the arguments of :func:`avatarsync.voices.synthesize`."""

    text: str
    lang: str = "en"
    voice: str | None = None
    rate: int = 160
    pitch: int = 50

    def key(self) -> tuple | None:
        """A comparable form, None when the language is unknown (the normal path reports it)."""
        from .phonemes.lang import normalize_lang

        try:
            return (self.text, normalize_lang(self.lang), self.voice, int(self.rate), int(self.pitch))
        except Exception:  # noqa: BLE001 - an unknown language or a bad number: not started
            return None


def _file_key(path: str | Path, detector: object) -> tuple | None:
    """(absolute path, size, mtime, detector name) of a portrait; None for a missing file or a
    detector object (only one made from its name can be made again in the child)."""
    if not isinstance(detector, str):
        return None
    try:
        st = os.stat(path)
        return (str(Path(path).resolve()), st.st_size, st.st_mtime_ns, detector)
    except OSError:
        return None


@dataclass
class WorkAhead:
    """Results of a forked child, collected once, on the first question asked."""

    speech_key: tuple | None = None
    face_key: tuple | None = None
    pid: int = 0
    fd: int = -1
    _results: dict = field(default_factory=dict)

    @classmethod
    def start(cls, speech: SpeechRequest | None = None, portrait: str | Path | None = None,
              detector: str = "mediapipe") -> "WorkAhead":
        """Fork a child that speaks ``speech`` and finds the face in the ``portrait`` file (nothing is
        started where fork is unavailable, torch is loaded, or there is nothing to do). Call it before
        any thread exists and before torch is imported."""
        speech_key = speech.key() if speech is not None else None
        face_key = _file_key(portrait, detector) if portrait is not None else None
        if (speech_key is None and face_key is None) or not sys.platform.startswith("linux") \
                or not hasattr(os, "fork") or "torch" in sys.modules:
            return cls()  # forking after torch started its thread pools is not safe, and gains nothing
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: do the work, send the results, leave without Python's teardown
            os.close(read_end)
            _run_child(write_end, speech if speech_key else None, face_key)
        os.close(write_end)
        return cls(speech_key, face_key, pid, read_end)

    def speech(self, text: str, lang: str, voice: str | None, rate: int, pitch: int):
        """The child's :class:`~avatarsync.phonemes.espeak.Synthesis` when it spoke this request, else None."""
        if self.speech_key is None or self.speech_key != SpeechRequest(text, lang, voice, rate, pitch).key():
            return None
        return self._result("speech")

    def face(self, portrait: str | Path, detector: object):
        """The child's :class:`~avatarsync.faces.landmarks.FaceLandmarks` of this portrait file (the
        image with even sides), when it found one in this very file with this detector, else None."""
        if self.face_key is None or self.face_key != _file_key(portrait, detector):
            return None
        return self._result("face")

    def _result(self, name: str):
        if self.fd >= 0:
            chunks = []
            try:
                while chunk := os.read(self.fd, 1 << 20):
                    chunks.append(chunk)
            finally:
                os.close(self.fd)
                self.fd = -1
                os.waitpid(self.pid, 0)
            try:
                self._results = pickle.loads(b"".join(chunks)) if chunks else {}
            except Exception:  # noqa: BLE001 - a truncated payload: do the work again
                self._results = {}
        return self._results.get(name)


def _run_child(write_end: int, speech: SpeechRequest | None, face_key: tuple | None) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:  # keep off the core the parent imports torch on (its import runs on one core)
        os.sched_setaffinity(0, cpus[-1:])
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    results: dict = {}
    if speech is not None:
        try:
            from .voices import synthesize

            results["speech"] = synthesize(speech.text, speech.lang, voice=speech.voice, rate=speech.rate,
                                           pitch=speech.pitch)
        except BaseException:  # noqa: BLE001 - the parent speaks again and reports the error
            pass
    if face_key is not None:
        try:
            from .faces.detect import find_face
            from .io.images import even_sides, read_image

            path, _, _, detector = face_key
            results["face"] = find_face(even_sides(read_image(path)), detector)
        except BaseException:  # noqa: BLE001 - no face, an unreadable file: the parent reports it
            pass
    try:
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(pickle.dumps(results))
    except BaseException:  # noqa: BLE001 - the parent went away
        pass
    os._exit(0)
