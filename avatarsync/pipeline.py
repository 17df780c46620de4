"""End to end: text or speech + portrait -> lip-synced MP4.

``Pipeline.from_pretrained(folder)`` loads the three models once;
``Pipeline.speak(...)`` runs the stages and writes the video:

    phonemes -> face crop -> reference tokens -> keyframes (FKG, all in parallel)
    -> interpolation (Mamba, all keyframe pairs in parallel) -> decode -> paste back -> MP4

Where the interpolator works on pixels (its recipe's ``data.tokenizer`` is
``space_to_depth:F``, as the default bundle's is), only the keyframes go through
the tokenizer's decoder and the frames between them are interpolated as pixels;
otherwise every output frame's code vectors are interpolated and decoded.
A tokenizer trained with ``reference: true`` decodes against the portrait crop.

A model folder ("bundle") holds ``pipeline.yaml``, ``tokenizer/``, ``fkg/``,
``interp/`` and the default avatar (``avatar.png`` + ``avatar.json`` landmarks).
"""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .config import read_yaml
from .errors import CheckpointError, FaceError, InputError
from .options import PASTE_REGIONS, RENDERS, SpeakOptions
from .bundle import DEFAULT_BUNDLE, BundleInfo, make_bundle, read_info
from .io.images import even_sides, read_image

STAGES = ("phonemes", "crop", "keyframes", "interpolation", "decode", "mux")
WARP_STAGES = ("phonemes", "crop", "motion", "render", "mux")


@dataclass
class SpeakResult:
    path: Path | None
    frames: np.ndarray  # (N, H, W, 3) uint8 as written
    audio: np.ndarray
    sample_rate: int
    fps: float
    track: object  # PhonemeTrack
    timings: dict[str, float]  # seconds of compute per stage

    @property
    def duration(self) -> float:
        return len(self.frames) / self.fps


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    t0 = time.perf_counter()
    yield
    timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - t0


def _to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).float()
    return x.permute(0, 3, 1, 2) / 127.5 - 1.0


def _to_uint8(images: torch.Tensor) -> np.ndarray:
    x = ((images.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@dataclass(frozen=True)
class _Later:
    """A model to load when it is first used."""

    load: Callable[[], object]


def _load(module: str, name: str, folder: Path, device: torch.device):
    """``name.from_pretrained(folder, device=device)`` of this package's ``module``, imported now."""
    from importlib import import_module

    return getattr(import_module(module, __package__), name).from_pretrained(folder, device=device)


class Pipeline:
    """The models of one bundle; reuse it across calls."""

    def __init__(self, folder: str | Path, tokenizer, fkg, interp, info: BundleInfo, device: torch.device,
                 detector: str = "mediapipe", mouth=None, interior=None) -> None:
        self.folder = Path(folder)
        # the token chain's models, or a _Later that loads one on first use (the warp renderer needs none)
        self._models = {"tokenizer": tokenizer, "fkg": fkg, "interp": interp}
        self.mouth, self.interior = mouth, interior  # mouth/: MouthMotion and its Interior atlas (or None)
        self.info, self.device, self.detector = info, device, detector
        self.pixel_factor = _pixel_factor(self.folder / "interp" / "config.yaml")

    # -- loading ----------------------------------------------------------------------------
    def _model(self, name: str):
        model = self._models[name]
        if isinstance(model, _Later):
            model = self._models[name] = model.load()
        return model

    @property
    def tokenizer(self):
        """The visual tokenizer (VisualTokenizer), loaded on first use."""
        return self._model("tokenizer")

    @property
    def fkg(self):
        """The keyframe model (FKGModel), loaded on first use."""
        return self._model("fkg")

    @property
    def interp(self):
        """The interpolator (MambaInterpolator), loaded on first use."""
        return self._model("interp")

    def load_models(self) -> "Pipeline":
        """Load every model now (a server does, so that no request pays for it)."""
        for name in self._models:
            self._model(name)
        return self

    @classmethod
    def from_pretrained(cls, folder: str | Path | None = None, device: str = "auto",
                        detector: str = "mediapipe") -> "Pipeline":
        """Open a bundle folder (default: the one shipped in the package). The token chain's models
        (tokenizer, keyframe model, interpolator) load on first use, so a photo warped by the mouth model
        never loads them; a missing or broken weight file is reported then (``load_models`` loads them
        all at once)."""
        from .device import resolve_device

        folder = Path(folder) if folder is not None else DEFAULT_BUNDLE
        if not (folder / "pipeline.yaml").is_file():
            hint = ("train one with `bash recipes/train_default.sh` (see README) or pass --checkpoint DIR"
                    if folder == DEFAULT_BUNDLE else "point --checkpoint at a folder made by `avatarsync bundle`")
            raise CheckpointError(f"{folder} is not an avatarsync model folder (no pipeline.yaml)", hint)
        info = read_info(folder)
        dev = resolve_device(device)
        tokenizer = _Later(partial(_load, ".tokenizers.tokenizer", "VisualTokenizer", folder / "tokenizer", dev))
        fkg = _Later(partial(_load, ".fkg.model", "FKGModel", folder / "fkg", dev))
        interp = _Later(partial(_load, ".interpolation.model", "MambaInterpolator", folder / "interp", dev))
        mouth = interior = None
        if (folder / "mouth" / "config.yaml").is_file():
            from .mouth.interior import Interior
            from .mouth.motion import MouthMotion

            mouth = MouthMotion.from_pretrained(folder / "mouth")
            if (folder / "mouth" / "interior.safetensors").is_file():
                interior = Interior.load(folder / "mouth" / "interior.safetensors")
        return cls(folder, tokenizer, fkg, interp, info, dev, detector, mouth, interior)

    # -- stages -----------------------------------------------------------------------------
    def phonemes(self, text: str | None, audio: str | Path | None, transcript: str | None, lang: str,
                 voice: str | None = None, rate: int = 160, pitch: int = 50, aligner: str = "auto",
                 progress: bool = False, ahead=None):
        """(PhonemeTrack, audio samples, sample rate) padded to a whole number of frames.

        ``voice``: a voice of :mod:`avatarsync.voices` for ``text`` (None: the language's default).
        ``ahead``: a :class:`~avatarsync.ahead.WorkAhead`, whose speech is used when it spoke this text.
        ``lang="any"`` (audio only): phone recognition for speech in any language. Audio over 30 s
        without a transcript is aligned piece by piece, split at pauses (``progress``: a bar)."""
        from .interpolation.schedule import pad_to_frames

        if (text is None) == (audio is None):
            raise InputError("give exactly one of text or audio", "use --text \"...\" or --audio speech.wav")
        from .phonemes.lang import check_bundle_lang

        lang = check_bundle_lang(lang, self.info.languages, f"the model bundle {self.folder}")
        if text is not None:
            from .phonemes import text_to_track

            syn = ahead.speech(text, lang, voice, rate, pitch) if ahead is not None else None
            if syn is None:
                syn = text_to_track(text, lang=lang, voice=voice, rate=rate, pitch=pitch)
            samples, sr, track = syn.audio, syn.sample_rate, syn.track
        else:
            from .phonemes.align import get_aligner
            from .phonemes.align.long import align_audio
            from .phonemes.audio import load_audio
            from .phonemes.lang import normalize_lang

            lang = "any" if str(lang).strip().lower() == "any" else normalize_lang(lang)
            samples, sr = load_audio(audio)
            track = align_audio(get_aligner(aligner), samples, sr, transcript, lang, progress=progress)
        samples, track, _ = pad_to_frames(samples, sr, track, self.info.fps)
        return track, samples, sr

    def avatar(self) -> tuple[np.ndarray, object]:
        """The bundle's default portrait and its landmarks."""
        from .faces.landmarks import landmarks_from_five

        image = read_image(self.folder / self.info.avatar)
        five = np.asarray(json.loads((self.folder / self.info.avatar_landmarks).read_text())["five"], np.float64)
        return image, landmarks_from_five(five)

    def crop(self, image: np.ndarray | str | Path | None, source: str = "the image", ahead=None):
        """(portrait, AlignedFace) for a portrait (an array, a file, or None = the default avatar).
        ``source``: how errors name an array (a file is named by its path). ``ahead``: a
        :class:`~avatarsync.ahead.WorkAhead` that may have found the file's face already."""
        from .faces.align import align_face

        if image is None:
            portrait, landmarks = self.avatar()
            portrait = even_sides(portrait)
        else:
            portrait, landmarks = self._portrait_face(image, source, ahead)
        return portrait, align_face(portrait, landmarks, size=self.info.crop_size, face_scale=self.info.face_scale)

    def _portrait_face(self, image: np.ndarray | str | Path, source: str, ahead=None):
        """(the portrait with even sides, its FaceLandmarks): from ``ahead`` when it found them in this
        file, else found here."""
        from .faces.detect import find_face

        is_file = isinstance(image, (str, Path))
        source = str(image) if is_file else source
        portrait = even_sides(read_image(image) if is_file else image)
        face = ahead.face(image, self.detector) if ahead is not None and is_file else None
        return portrait, face if face is not None else find_face(portrait, self.detector, source=source)

    @torch.no_grad()
    def keyframes(self, ref_crop: np.ndarray, track, seed: int = 0, temperature: float = 0.0,
                  top_k: int = 0, guidance: float | None = None) -> torch.Tensor:
        """Visual codes (K, h, w) of one keyframe per unit, all decoded as one batch
        (``guidance``: classifier-free guidance scale; None = the bundle's).

        ``track`` must hold no zero-length units (``speak`` removes them with ``_positive_units``)."""
        return self._generate(ref_crop, track, seed, temperature, top_k, guidance, False)[0].codes

    @torch.no_grad()
    def keyframe_latents(self, ref_crop: np.ndarray, track, seed: int = 0, temperature: float = 0.0,
                         top_k: int = 0, guidance: float | None = None,
                         keyframe_decode: str | None = None) -> torch.Tensor:
        """The tokenizer's code vectors (K, C, h, w) of one keyframe per unit: of the decoded codes
        (``keyframe_decode="argmax"``) or expected under the decoding logits (``"expected"``);
        None = the bundle's ``keyframe_decode``."""
        from .fkg.keyframe_codes import check_keyframe_decode, keyframe_code_vectors

        how = check_keyframe_decode(self.info.keyframe_decode if keyframe_decode is None else keyframe_decode)
        result, ref = self._generate(ref_crop, track, seed, temperature, top_k, guidance, how == "expected")
        return keyframe_code_vectors(self.tokenizer, result.codes, result.logits, ref, self.fkg.vocab.factors,
                                     self.fkg.vocab.codebook_size, self.fkg.frame_window, how)

    def _generate(self, ref_crop: np.ndarray, track, seed: int, temperature: float, top_k: int,
                  guidance: float | None, return_logits: bool):
        from .fkg.generate import SamplingConfig, generate_keyframes, track_ids

        portrait = _to_tensor(ref_crop[None], self.device)
        ref = self.tokenizer.encode(portrait, reference=portrait if self.tokenizer.config.reference_encoder else None)[0]
        unit_ids, dur_ids = track_ids(self.fkg.vocab, track.units, self.info.unit_key)
        result = generate_keyframes(self.fkg, ref, unit_ids.to(self.device), dur_ids.to(self.device),
                                    SamplingConfig(temperature=temperature, top_k=top_k, seed=seed,
                                                   guidance=self.info.guidance if guidance is None else guidance),
                                    return_logits=return_logits)
        return result, ref

    @torch.no_grad()
    def reference(self, ref_crop: np.ndarray):
        """The tokenizer's decoder features of the portrait crop (None when it decodes without one)."""
        return self.tokenizer.reference_features(_to_tensor(ref_crop[None], self.device))

    @torch.no_grad()
    def interpolate(self, key_latents: torch.Tensor, track, duration: float) -> torch.Tensor:
        """Latents of every output frame (round(duration * fps), C, h, w) from the keyframes' latents."""
        from .interpolation.interpolate import interpolate_track

        # 32 frames per batch: faster per frame on a 2-core CPU than 64 (measured 0.71 s vs 0.96 s)
        return interpolate_track(self.interp, key_latents.float(), track, fps=self.info.fps, duration=duration,
                                 batch_size=32)

    @torch.no_grad()
    def decode_keyframes(self, key_codes: torch.Tensor, reference=None, batch_size: int = 4) -> torch.Tensor:
        """Keyframe token grids (K, h, w), or their code vectors (K, C, h, w, float), -> images
        (K, 3, H, W) in [-1, 1].

        Small batches: on a 2-core CPU, 4 frames at a time decode ~2x faster per frame than 32 or more
        (the activations of a small batch stay in cache; 28 keyframes: 0.68 s by 4, 0.75 s by 8).
        Repeated grids (a unit said twice with the same duration bin gets the same keyframe) are
        decoded once."""
        from .fkg.keyframe_codes import as_code_vectors

        unique, inverse = torch.unique(key_codes.flatten(1), dim=0, return_inverse=True)
        unique = as_code_vectors(self.tokenizer, unique.reshape(-1, *key_codes.shape[1:]).to(self.device))
        images = torch.cat([self.tokenizer.decode_codes(unique[i:i + batch_size], reference).clamp(-1, 1)
                            for i in range(0, len(unique), batch_size)])
        return images[inverse.to(images.device)]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, reference=None, batch_size: int = 32) -> np.ndarray:
        """Frame latents -> uint8 crops (N, H, W, 3): pixel shuffle, or the tokenizer's decoder."""
        import torch.nn.functional as F

        if self.pixel_factor:
            return _to_uint8(F.pixel_shuffle(latents, self.pixel_factor))
        out = [_to_uint8(self.tokenizer.decode_codes(latents[i:i + batch_size].to(self.device), reference))
               for i in range(0, len(latents), batch_size)]
        return np.concatenate(out)

    # -- the job ----------------------------------------------------------------------------
    def speak(self, options: SpeakOptions | None = None, /, *, ahead=None, **changes) -> SpeakResult:
        """Make the talking-head video: ``speak(SpeakOptions(text=...))`` or ``speak(text=..., image=...)``
        (the fields of :class:`~avatarsync.options.SpeakOptions`, the same as ``avatarsync speak``'s options;
        keywords given with an options object override its fields). ``out=None`` returns frames without
        writing a file. ``guidance``, ``keyframe_decode``, ``paste_region``, ``render``: None = the bundle's
        default. ``video``: dub a real video instead of animating a portrait (its head motion, blinks and
        background kept, its frames looped forward and back to the speech's length, only the mouth moved:
        ``mouth/dub.py``). ``ahead``: work started before torch was imported (:class:`~avatarsync.ahead.WorkAhead`,
        as the CLI does): its voice is used when it matches ``text`` and the voice options, its face when
        it was found in this ``image`` file."""
        from dataclasses import replace

        from tqdm.auto import tqdm

        try:
            o = SpeakOptions(**changes) if options is None else replace(options, **changes)
        except TypeError as e:
            raise InputError(f"Pipeline.speak: {e}", "use the fields of avatarsync.options.SpeakOptions") from None
        text, audio, transcript, image, out, lang = o.text, o.audio, o.transcript, o.image, o.out, o.lang
        seed, crop_only, voice, rate, pitch, aligner = o.seed, o.crop_only, o.voice, o.rate, o.pitch, o.aligner
        temperature, top_k, guidance, keyframe_decode = o.temperature, o.top_k, o.guidance, o.keyframe_decode
        paste_region, render, video, progress = o.paste_region, o.render, o.video, o.progress
        if out is not None:
            _check_output(out)
        region = self.info.paste_region if paste_region is None else paste_region
        if region not in PASTE_REGIONS:
            raise InputError(f"unknown paste region {region!r}", f"use one of {', '.join(PASTE_REGIONS)}")
        how = self.info.render if render is None else render
        if how not in RENDERS:
            raise InputError(f"unknown render {how!r}", f"use one of {', '.join(RENDERS)}")
        if video is None and image is None and self.info.backdrop and not crop_only:
            video = self.folder / self.info.backdrop
        if video is not None:
            if image is not None:
                raise InputError("give a portrait image or a video to dub, not both", "drop --image or --video")
            how = "warp"
        if how == "warp" and self.mouth is None:
            raise CheckpointError(f"the bundle {self.folder} has no mouth-motion model (mouth/), so it cannot warp",
                                  "use --render tokens, or a bundle made with `avatarsync bundle --mouth DIR`")
        if how == "auto":
            how = "warp" if (self.mouth is not None and image is not None and not crop_only) else "tokens"
        if how == "warp" and crop_only:
            raise InputError("--crop-only writes the keyframe chain's face crop; the warp renderer has none",
                             "add --render tokens, or drop --crop-only")
        if how == "warp":
            return self._speak_warp(o, video, ahead)
        timings: dict[str, float] = {}
        bar = tqdm(total=len(STAGES), desc="speak", unit="stage", disable=not progress)

        def step(name: str) -> None:
            bar.set_postfix_str(name)
            bar.update(1)

        torch.manual_seed(seed)
        with _timed(timings, "phonemes"):
            track, samples, sr = self.phonemes(text, audio, transcript, lang, voice, rate, pitch, aligner,
                                                progress=progress, ahead=ahead)
            keyed = _positive_units(track)  # one keyframe per unit that lasts
        step("phonemes")
        with _timed(timings, "crop"):
            portrait, aligned = self.crop(image, ahead=ahead)
        step("crop")
        with _timed(timings, "keyframes"):
            key_vectors = self.keyframe_latents(aligned.crop, keyed, seed=seed, temperature=temperature,
                                                top_k=top_k, guidance=guidance, keyframe_decode=keyframe_decode)
        step("keyframes")
        with _timed(timings, "decode"):
            reference = self.reference(aligned.crop)
            if self.pixel_factor:  # decode the keyframes only; the interpolator fills in pixels
                import torch.nn.functional as F

                key_latents = F.pixel_unshuffle(self.decode_keyframes(key_vectors, reference), self.pixel_factor)
            else:
                key_latents = key_vectors
        with _timed(timings, "interpolation"):
            latents = self.interpolate(key_latents, keyed, track.duration)
        step("interpolation")
        with _timed(timings, "decode"):
            crops = self.decode(latents, reference)
            if crop_only:
                frames = crops
            else:
                from .faces.align import PasteBack

                paste = (PasteBack(portrait, aligned) if region == "face" else
                         PasteBack(portrait, aligned, mask="mouth", face_scale=self.info.face_scale,
                                   match_colour=True))
                frames = np.stack([paste(c) for c in crops])
        step("decode")
        path = None
        with _timed(timings, "mux"):
            if out is not None:
                from .io import write_mp4

                path = write_mp4(out, frames, self.info.fps, samples, sr)
        step("mux")
        bar.close()
        return SpeakResult(path, frames, samples, sr, self.info.fps, track, timings)

    def _photo_warp(self, image, ahead=None):
        """The ``MouthWarp`` of a portrait (path or array; None = the bundle's avatar, whose stored
        five points are not enough: its face mesh is found). ``ahead``: as in ``crop``."""
        from .mouth.warp import MouthWarp

        portrait, face = self._portrait_face(self.avatar()[0] if image is None else image, "the image", ahead)
        points = face.points
        if points is None or len(points) < 468:
            raise FaceError("the warp renderer needs the face-mesh detector's 478 landmarks",
                            "use the mediapipe detector, or --render tokens")
        return MouthWarp(portrait, points, self.interior)

    def video_faces(self, video: str | Path, max_frames: int | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(frames, points, detected) of a video to dub, at the bundle's fps, sides cropped even, its first
        ``max_frames`` only when given: every frame's face tracked (a bundle's own backdrop keeps the
        landmarks tracked when it was made)."""
        from .faces.tracking import track_faces
        from .io import read_video_frames

        path = Path(video)
        if not path.is_file():
            raise InputError(f"video {path} not found", "check the --video path")
        frames, _ = read_video_frames(path, self.info.fps)  # unreadable or empty: its own InputError
        frames = frames[:max_frames] if max_frames else frames
        known = path.with_suffix(".npz")
        if path.parent == self.folder and known.is_file():
            data = np.load(known)
            points, detected = data["points"].astype(np.float64), data["detected"]
            if len(points) < len(frames):
                raise InputError(f"{known} holds landmarks for {len(points)} frames, the video has more",
                                 "remake the bundle with `avatarsync train personal`")
            points, detected = points[: len(frames)], detected[: len(frames)]
        else:
            tracked = track_faces(frames)
            points, detected = tracked.points, tracked.detected
        return _even_frames(frames), points, detected

    def mouth_shapes(self, track, n_frames: int) -> np.ndarray:
        """``(n_frames, 2)`` [lip gap, mouth-width change] per frame from the mouth-motion model."""
        if self.mouth is None:
            raise CheckpointError(f"the bundle {self.folder} has no mouth-motion model (mouth/)",
                                  "use a bundle made with `avatarsync bundle --mouth DIR`")
        return self.mouth.predict(track, n_frames, self.info.fps)

    def _speak_warp(self, o: SpeakOptions, video: str | Path | None, ahead=None) -> SpeakResult:
        """``speak`` with ``render="warp"``: phonemes -> mouth shapes -> the photo's own mouth, moved
        (or, with ``video``, which is ``o.video`` or the bundle's backdrop, each frame's mouth of that
        video: ``mouth/dub.py``)."""
        progress = o.progress
        from tqdm.auto import tqdm

        from .interpolation.schedule import n_output_frames

        timings: dict[str, float] = {}
        bar = tqdm(total=len(WARP_STAGES), desc="speak", unit="stage", disable=not progress)
        with _timed(timings, "phonemes"):
            track, samples, sr = self.phonemes(o.text, o.audio, o.transcript, o.lang, o.voice, o.rate, o.pitch,
                                                o.aligner, progress=progress, ahead=ahead)
            n_frames = n_output_frames(track.duration, self.info.fps)
        bar.update(1)
        with _timed(timings, "crop"):
            if video is not None:
                from .mouth.dub import pingpong

                source = self.video_faces(video, max_frames=n_frames)  # the frames a ping-pong can reach
                index = pingpong(len(source[0]), n_frames)  # played forward and back to the speech's length
            else:
                source = self._photo_warp(o.image, ahead)
        bar.update(1)
        with _timed(timings, "motion"):
            shapes = self.mouth_shapes(track, n_frames)
        bar.update(1)
        with _timed(timings, "render"):
            if video is not None:
                from .mouth.dub import dub_frames

                frames = dub_frames(*source, shapes, self.interior, progress=progress, mouth=o.dub_mouth, index=index)
            else:
                frames = source.render_all(shapes)
        bar.update(1)
        path = None
        with _timed(timings, "mux"):
            if o.out is not None:
                from .io import write_mp4

                path = write_mp4(o.out, frames, self.info.fps, samples, sr)
        bar.update(1)
        bar.close()
        return SpeakResult(path, frames, samples, sr, self.info.fps, track, timings)


def _even_frames(frames: np.ndarray) -> np.ndarray:
    """Video frames cropped to even sides (H.264 4:2:0)."""
    h, w = frames.shape[1:3]
    return frames[:, : h - h % 2, : w - w % 2]


def _pixel_factor(interp_config: Path) -> int:
    """F when the interpolator was trained on space-to-depth pixel latents (``space_to_depth:F``), else 0."""
    if not interp_config.is_file():
        return 0
    from .interpolation.codec import load_codec

    spec = str((read_yaml(interp_config).get("data") or {}).get("tokenizer") or "")
    if not spec.startswith("space_to_depth"):  # a tokenizer folder: nothing to load, decode every frame
        return 0
    return load_codec(spec).factor


def _positive_units(track):
    """The track without zero-length units (no keyframe is made for them)."""
    from .phonemes.track import PhonemeTrack

    units = [u for u in track.units if u.end > u.start]
    return PhonemeTrack(units=units, lang=track.lang, duration=track.duration, source=track.source,
                        phones=list(track.phones))


def _check_output(out: str | Path) -> None:
    from .io import check_writable

    if Path(out).suffix.lower() != ".mp4":
        raise InputError(f"output {out} must end in .mp4", "name the output like out.mp4")
    check_writable(out)


__all__ = ["DEFAULT_BUNDLE", "BundleInfo", "Pipeline", "SpeakOptions", "SpeakResult", "make_bundle", "read_image",
           "read_info"]
