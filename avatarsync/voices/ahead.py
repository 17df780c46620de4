"""Speech made ahead, in a child process, while the parent imports torch and loads the models.

    ahead = SpeechAhead.start(text, lang, voice, rate, pitch)   # before `import torch`
    ...                                                          # import torch, load the bundle
    syn = ahead.take(text, lang, voice, rate, pitch)            # the Synthesis, or None

``avatarsync speak --text`` starts one first thing: the voice (about 1 s for a sentence: importing
onnxruntime, a seeded Piper session, the synthesis) then runs on the second core instead of after the
2 s of importing torch. A thread would not do: importing torch holds the GIL, so the two take turns.

Best effort by design: where ``os.fork`` is missing (not Linux), the child failed, or the request
differs from the one started, ``take`` gives None and the caller synthesizes as usual, so every
error is reported by the normal path. The child is a fresh process running the same
:func:`avatarsync.voices.synthesize`, so its audio is the audio the parent would make (Piper runs each
synthesis on a new seeded session)."""

from __future__ import annotations

import os
import pickle
import sys
from dataclasses import dataclass


def _key(text: str, lang: str, voice: str | None, rate: int, pitch: int) -> tuple | None:
    from ..phonemes.lang import normalize_lang

    try:
        return (text, normalize_lang(lang), voice, int(rate), int(pitch))
    except Exception:  # noqa: BLE001 - an unknown language: the normal path reports it
        return None


@dataclass
class SpeechAhead:
    """A synthesis running in a forked child; ``take`` collects it once."""

    key: tuple | None
    pid: int = 0
    fd: int = -1

    @classmethod
    def start(cls, text: str, lang: str = "en", voice: str | None = None, rate: int = 160,
              pitch: int = 50) -> "SpeechAhead":
        """Fork a child that speaks ``text`` (nothing is started where fork is unavailable or the
        language is unknown). Call it before any thread exists and before torch is imported."""
        key = _key(text, lang, voice, rate, pitch)
        if key is None or not sys.platform.startswith("linux") or not hasattr(os, "fork") or "torch" in sys.modules:
            return cls(None)  # forking after torch started its thread pools is not safe, and gains nothing
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: speak, send the result, leave without Python's teardown
            os.close(read_end)
            _run_child(write_end, key)
        os.close(write_end)
        return cls(key, pid, read_end)

    def take(self, text: str, lang: str, voice: str | None, rate: int, pitch: int):
        """The child's :class:`~avatarsync.phonemes.espeak.Synthesis` when it spoke this request, else None."""
        if self.fd < 0:
            return None
        chunks = []
        try:
            while chunk := os.read(self.fd, 1 << 20):
                chunks.append(chunk)
        finally:
            os.close(self.fd)
            self.fd = -1
            os.waitpid(self.pid, 0)
        if self.key != _key(text, lang, voice, rate, pitch) or not chunks:
            return None
        status, synthesis = pickle.loads(b"".join(chunks))
        return synthesis if status == "ok" else None


def _run_child(write_end: int, key: tuple) -> None:
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) > 1:  # keep off the core the parent imports torch on (its import runs on one core)
        os.sched_setaffinity(0, cpus[-1:])
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        from . import synthesize

        text, lang, voice, rate, pitch = key
        payload = pickle.dumps(("ok", synthesize(text, lang, voice=voice, rate=rate, pitch=pitch)))
    except BaseException:  # noqa: BLE001 - the parent synthesizes again and reports the error
        payload = pickle.dumps(("failed", None))
    try:
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(payload)
    except BaseException:  # noqa: BLE001 - the parent went away
        pass
    os._exit(0)
