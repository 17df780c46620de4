"""Speech with exact phoneme timings: libespeak-ng (from espeakng-loader) through ctypes.

One synthesis call gives the waveform and a phoneme event (IPA name, sample
index) for every phoneme, so the track's timings are those of the audio by
construction. The C library keeps hidden static state between utterances (its pitch
flutter phase, wave phase), so two calls with the same text would differ by
a few samples. To make synthesis deterministic, every call loads a fresh copy
of the library, initialises it, synthesizes and unloads it again (about 2 ms).
Nothing is loaded at import; a module-level lock serialises calls.
"""

from __future__ import annotations

import _ctypes
import ctypes
import threading
from bisect import bisect_right
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailable, InputError
from .lang import normalize_lang
from .timeline import RawPhone, assemble_track
from .track import PhonemeTrack

DEFAULT_VOICES = {"en": "en-us", "zh": "cmn-latn-pinyin", "fr": "fr"}
# language-code spellings whose espeak voice file has another name
VOICE_ALIASES = {"en-gb": "en", "en-uk": "en", "en_gb": "en", "zh": "cmn-latn-pinyin", "zh-cn": "cmn-latn-pinyin",
                 "fr-fr": "fr"}
LEAD_IN = 0.1  # seconds: every utterance starts with at least this much silence
RATE_RANGE = (80, 450)
PITCH_RANGE = (0, 100)

# espeak_ng constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_INIT_DONT_EXIT = 0x8000
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_POS_CHARACTER = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))


@dataclass
class Synthesis:
    """Synthesized speech and its phoneme track (``track.duration == len(audio) / sample_rate``)."""

    audio: np.ndarray
    sample_rate: int
    track: PhonemeTrack
    voice: str = ""  # the voice that spoke, "backend:name" (avatarsync.voices)


class _Engine:
    """The loaded C library, its callback and the buffers one synthesis fills."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise BackendUnavailable("espeakng-loader is not installed", "pip install espeakng-loader") from e
        lib_path = espeakng_loader.get_library_path()
        data_dir = Path(espeakng_loader.get_data_path())
        try:
            lib = ctypes.CDLL(lib_path)
        except OSError as e:
            raise BackendUnavailable(f"cannot load libespeak-ng from {lib_path}: {e}", "reinstall espeakng-loader") from e
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
            ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        options = _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT
        sr = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_dir.parent).encode(), options)
        if sr <= 0:
            raise BackendUnavailable(f"espeak-ng failed to initialise with data at {data_dir}", "reinstall espeakng-loader")
        self.lib = lib
        self.sample_rate = int(sr)
        self._chunks: list[np.ndarray] = []
        self._events: list[tuple[str, int, int]] = []
        self._callback = _SYNTH_CALLBACK(self._on_audio)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None

    def close(self) -> None:
        """Free espeak's state and unload the library, so the next load starts clean."""
        self.lib.espeak_Terminate()
        handle = self.lib._handle
        unload = getattr(_ctypes, "dlclose", None) or getattr(_ctypes, "FreeLibrary")
        unload(handle)

    def _on_audio(self, wav, n: int, events) -> int:
        if n > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "ignore")
                self._events.append((name, int(ev.text_position), int(ev.sample)))
            i += 1
        return 0

    def set_voice(self, voice: str) -> None:
        if voice != self._voice:
            if self.lib.espeak_SetVoiceByName(voice.encode()) != 0:
                self._voice = None
                raise InputError(
                    f"unknown espeak-ng voice {voice!r}",
                    "use a language voice such as 'en-us', 'en-gb' or 'cmn-latn-pinyin', "
                    "optionally with a variant: 'en-us+f3', or just '+m3'",
                )
            self._voice = voice

    def run(self, text: str, voice: str, rate: int, pitch: int) -> tuple[np.ndarray, list[tuple[str, int, int]]]:
        """Synthesize ``text``; returns int16 samples and (ipa, text_position, sample) per phoneme."""
        self.set_voice(voice)
        self.lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
        self._chunks, self._events = [], []
        data = text.encode("utf-8")
        buf = ctypes.create_string_buffer(data)
        err = self.lib.espeak_Synth(buf, len(data) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8 | _ENDPAUSE, None, None)
        if err != 0:
            raise BackendUnavailable(f"espeak-ng synthesis failed (error {err})", "check the text and voice options")
        audio = np.concatenate(self._chunks) if self._chunks else np.zeros(0, np.int16)
        events = self._events
        self._chunks, self._events = [], []
        return audio, events


_LOCK = threading.Lock()


def _synth_locked(text: str, voice: str, rate: int, pitch: int) -> tuple[np.ndarray, list[tuple[str, int, int]], int]:
    """Load a fresh engine, synthesize, unload; returns samples, phoneme events, sample rate."""
    with _LOCK:
        eng = _Engine()
        try:
            samples, events = eng.run(text, voice, rate, pitch)
            return samples, events, eng.sample_rate
        finally:
            eng.close()


def resolve_voice(lang: str, voice: str | None) -> str:
    """The espeak voice name for a language and an optional voice/variant (``"+f3"``)."""
    base = DEFAULT_VOICES[lang]
    if not voice:
        return base
    voice = voice.strip()
    if voice.startswith("+"):
        return base + voice
    name, plus, variant = voice.partition("+")
    return VOICE_ALIASES.get(name.lower(), name) + plus + variant


def _check_options(rate: int, pitch: int) -> None:
    if not RATE_RANGE[0] <= int(rate) <= RATE_RANGE[1]:
        raise InputError(f"speech rate {rate} is out of range", f"use {RATE_RANGE[0]}..{RATE_RANGE[1]} words per minute")
    if not PITCH_RANGE[0] <= int(pitch) <= PITCH_RANGE[1]:
        raise InputError(f"pitch {pitch} is out of range", f"use {PITCH_RANGE[0]}..{PITCH_RANGE[1]}")


def _prepare(text: str, lang: str) -> tuple[str, list[str], list[int]]:
    """The espeak input string, the unit label of each group and each group's 1-based start offset.

    English groups are whitespace-separated words (units are phones, groups
    only record which word a phone came from); Mandarin groups are pinyin
    syllables, which become the units.
    """
    if lang == "zh":
        from .mandarin import PAUSES, espeak_text, to_syllables

        items = to_syllables(text)
        spoken, starts = espeak_text(items)
        keep = [i for i, it in enumerate(items) if it not in PAUSES]
        return spoken, [items[i] for i in keep], [starts[i] for i in keep]
    words, starts = [], []
    pos = 0
    for tok in text.split():
        pos = text.index(tok, pos)
        words.append(tok)
        starts.append(pos + 1)
        pos += len(tok)
    return text, words, starts


def synthesize_detailed(
    text: str, lang: str = "en", voice: str | None = None, rate: int = 160, pitch: int = 50
) -> tuple[Synthesis, list[str], list[int]]:
    """Like :func:`synthesize`, also returning the group labels (words / syllables)
    and, for each phone in ``track.phones``, its group index (-1 for ``sil``)."""
    lang = normalize_lang(lang)
    if not text or not text.strip():
        raise InputError("the text is empty", "give a sentence to speak")
    _check_options(rate, pitch)
    spoken, labels, starts = _prepare(text, lang)
    if not labels:
        raise InputError(f"the text {text!r} has nothing to speak", "give words, not only punctuation or symbols")
    voice_name = resolve_voice(lang, voice)
    samples, events, sr = _synth_locked(spoken, voice_name, rate, pitch)
    if not len(samples) or not any(name for name, _, _ in events):
        raise InputError(f"the text {text!r} has nothing to speak", "give words in the chosen language")
    # "(en)"-style events mark a language switch, not a sound
    events = [e for e in events if not (e[0].startswith("(") and e[0].endswith(")"))]
    first = next((smp for name, _, smp in events if name), 0)
    pad = max(0, int(round(LEAD_IN * sr)) - first)  # a leading pause of LEAD_IN seconds, always
    if pad:
        samples = np.concatenate([np.zeros(pad, samples.dtype), samples])
        events = [(name, pos, smp + pad) for name, pos, smp in events]
    n = len(samples)
    raw = []
    for k, (name, pos, sample) in enumerate(events):
        end = events[k + 1][2] if k + 1 < len(events) else n
        group = bisect_right(starts, pos) - 1 if name else -1
        raw.append(RawPhone(name, min(sample, n) / sr, min(max(end, sample), n) / sr, max(group, 0) if name else -1))
    audio = samples.astype(np.float32) / 32768.0
    track, groups = assemble_track(raw, n / sr, lang, "espeak", labels if lang == "zh" else None)
    return Synthesis(audio=audio, sample_rate=sr, track=track, voice=f"espeak:{voice_name}"), labels, groups


def synthesize(text: str, lang: str = "en", voice: str | None = None, rate: int = 160, pitch: int = 50) -> Synthesis:
    """Speak ``text`` with espeak-ng and return the audio with its exact phoneme track.

    ``lang``: ``"en"`` (voice en-us) or ``"zh"`` (Hanzi or tone-digit pinyin, voice
    cmn-latn-pinyin). ``voice``: an espeak voice name (``"en-gb"``), optionally with a
    variant (``"en-us+f3"``), or just a variant (``"+m3"``). ``rate``: words per
    minute (80..450). ``pitch``: 0..100. Units are IPA phones (English) or pinyin
    syllables with tone digits (Mandarin); pauses are ``sil`` units. The audio
    starts with at least ``LEAD_IN`` (0.1 s) of silence and ends with espeak's
    end-of-sentence pause (about 0.3 s), so tracks begin and end with ``sil``.
    """
    return synthesize_detailed(text, lang, voice, rate, pitch)[0]
