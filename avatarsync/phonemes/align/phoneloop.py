"""The ``phoneloop`` aligner behind ``--lang any``: language-agnostic phone recognition.

Speech in a language avatarsync has no model for still moves the mouth if its sounds are known:
pocketsphinx decodes the audio with its bundled en-US acoustic model against a phone language
model (``en-us-phone.lm.bin``: any phone may follow any other, no words), as Rhubarb Lip Sync
does. The result is a sequence of timed phones (ARPAbet, mapped to espeak's IPA), good enough for
visemes (open / closed / rounded ...), not a transcript: the phones are those of English that
sound nearest. Pauses and noise are ``sil``; so is a recognized phone with no speech-level audio within
0.1 s (``sphinx.loud_mask``: the phone loop names breath and room noise too). ``track.lang`` is ``"any"``.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from ...errors import AlignmentError, BackendUnavailable
from ..audio import check_audio
from ..timeline import RawPhone, assemble_track
from ..track import PhonemeTrack
from .arpabet import ARPABET_TO_IPA
from .base import Aligner
from .sphinx import FRAME, PAD, SAMPLE_RATE, PocketsphinxAligner, decoder_pcm, loud_mask

ANY = "any"
NEAR = 0.1  # seconds: a recognized phone this far from any speech-level audio is taken as noise


class PhoneLoopAligner(Aligner):
    """Phone recognition without words (pocketsphinx allphone mode); any language, no transcript."""

    name = "phoneloop"
    languages = (ANY,)
    needs_transcript = False

    def __init__(self) -> None:
        self._decoder = None
        self._lock = threading.Lock()

    unavailable_reason = PocketsphinxAligner.unavailable_reason  # the same engine, the same need

    def checked(self, audio, sample_rate, transcript, lang):
        if (lang or "").strip().lower() != ANY:
            from ...errors import LanguageError

            raise LanguageError(f"the phoneloop aligner is for --lang any, not {lang!r}",
                                "use --lang any, or --aligner auto for English and Mandarin")
        if transcript and transcript.strip():
            raise AlignmentError("--lang any recognizes phones without words, so it takes no transcript",
                                 "leave --transcript out, or give --lang en / zh with the transcript")
        return check_audio(audio, sample_rate), None, ANY

    def _decoders(self):
        if self._decoder is None:
            try:
                from pocketsphinx import Decoder, get_model_path
            except ImportError as e:
                raise BackendUnavailable("pocketsphinx is not installed", "pip install pocketsphinx") from e
            phone_lm = os.path.join(get_model_path(), "en-us", "en-us-phone.lm.bin")
            if not os.path.isfile(phone_lm):
                raise BackendUnavailable(f"pocketsphinx's phone language model {phone_lm} is missing",
                                         "reinstall pocketsphinx (pip install --force-reinstall pocketsphinx)")
            self._decoder = Decoder(samprate=SAMPLE_RATE, lm=None, allphone=phone_lm, beam=1e-20, pbeam=1e-20,
                                    lw=2.0, loglevel="FATAL")
        return self._decoder

    def _align(self, audio: np.ndarray, sample_rate: int, transcript: str | None, lang: str) -> PhonemeTrack:
        duration = len(audio) / sample_rate
        pcm = decoder_pcm(audio, sample_rate)
        with self._lock:
            d = self._decoders()
            try:
                d.start_utt()
                d.process_raw(pcm, full_utt=True)
                d.end_utt()
            except RuntimeError as e:
                raise AlignmentError(f"pocketsphinx phone recognition failed: {e}", "check the audio") from e
            raw = []
            loud = loud_mask(audio, sample_rate)  # speech-level 10 ms hops
            for seg in d.seg():
                name = str(seg.word).upper()
                ipa = ARPABET_TO_IPA.get(name, "")  # SIL, +NSN+, +SPN+ ...: a pause
                start, end = seg.start_frame * FRAME - PAD, (seg.end_frame + 1) * FRAME - PAD
                near = loud[max(int((start - NEAR) / 0.01), 0):max(int((end + NEAR) / 0.01), 0)]
                if ipa and not near.any():  # a "phone" in breath or room noise, far from speech (a stop's
                    ipa = ""               # silent closure is kept: speech follows within NEAR)
                raw.append(RawPhone(ipa, start, end, 0 if ipa else -1))
        if not any(r.name for r in raw):
            raise AlignmentError("phone recognition found no speech sounds in the audio",
                                 "check that the audio holds speech")
        track, _ = assemble_track(raw, duration, ANY, self.name)
        return track
