"""The ``avatarsync`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from . import __version__
from .errors import AvatarSyncError


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


# -- synth-data ---------------------------------------------------------------------------------
def _add_synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder for the corpus (created if missing)")
    p.add_argument("--clips", type=int, default=20, help="number of clips to generate")
    p.add_argument("--seed", type=int, default=0, help="master seed; the same seed gives the same corpus")
    p.add_argument("--lang", choices=["en", "zh", "mix"], default="en",
                   help="sentence language: English, Mandarin, or both alternating")
    p.add_argument("--size", type=int, default=128, help="frame size in pixels (square, even)")
    p.add_argument("--fps", type=float, default=25.0, help="video frame rate")
    p.add_argument("--identities", type=int, default=60,
                   help="number of distinct drawn identities, split between train/val/test")
    p.add_argument("--identity-offset", type=int, default=0,
                   help="number the identities from here (a second corpus of new faces: offset past the first's)")
    p.add_argument("--train-only", action="store_true",
                   help="every clip a training clip, from the training sentences of --split-seed: extra training "
                        "data for a corpus of the same split seed (use --identity-offset so the faces are new)")
    p.add_argument("--split-seed", type=int, default=0,
                   help="seed of the identity and sentence train/val/test split, independent of --seed; corpora "
                        "trained together must share it so held-out sentences stay held out")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    p.add_argument("--no-video", action="store_true",
                   help="skip the per-clip MP4 (frames, audio and ground truth are still written)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_synth(args: argparse.Namespace) -> int:
    from .data.synth import SynthConfig, generate_corpus

    cfg = SynthConfig(out=args.out, clips=args.clips, seed=args.seed, lang=args.lang, size=args.size,
                      fps=args.fps, identities=args.identities, workers=args.workers, video=not args.no_video,
                      identity_offset=args.identity_offset, train_only=args.train_only,
                      split_seed=args.split_seed)
    summary = generate_corpus(cfg, progress=not args.quiet)
    print(f"wrote {summary['clips']} clips ({summary['video_seconds']:.1f} s of video) to {args.out} "
          f"in {summary['wall_seconds']:.1f} s: {summary['realtime_factor']:.2f} s of compute per s of video "
          f"with {summary['workers']} worker(s)")
    return 0


# -- phonemes ----------------------------------------------------------------------------------
def _add_phonemes(p: argparse.ArgumentParser) -> None:
    from .phonemes.command import add_arguments

    add_arguments(p)


def _run_phonemes(args: argparse.Namespace) -> int:
    from .phonemes.command import run

    return run(args)


# -- train -------------------------------------------------------------------------------------
def _add_train(p: argparse.ArgumentParser) -> None:
    from .train.registry import TASK_NAMES

    p.add_argument("task", choices=TASK_NAMES, help="which model to train")
    p.add_argument("--config", required=True, help="recipe YAML (see recipes/)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides of the recipe, e.g. train.steps=200 train.lr=1e-3")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_train(args: argparse.Namespace) -> int:
    from .train.registry import run_training

    result = run_training(args.task, args.config, args.overrides, progress=not args.quiet)
    shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.final_metrics.items()) if isinstance(v, float))
    print(f"trained {args.task} for {result.steps} steps; model in {result.out_dir / 'final'}")
    if shown:
        print(f"final metrics: {shown}")
    return 0


# -- speak -------------------------------------------------------------------------------------
def _add_speak(p: argparse.ArgumentParser) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--text", help="script to speak (synthesized with espeak-ng, which also gives the timing)")
    src.add_argument("--audio", help="speech recording (WAV/FLAC/OGG) to lip-sync to")
    p.add_argument("--transcript", help="what the recording says (enables offline forced alignment)")
    p.add_argument("--lang", default="en", help="language of the text or speech: en or zh")
    p.add_argument("--image", help="portrait photo with one face (default: the bundled avatar)")
    p.add_argument("-o", "--out", default="out.mp4", help="output MP4 path (written only when complete)")
    p.add_argument("--checkpoint", help="model folder made by `avatarsync bundle` (default: the bundled model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the models run")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same video)")
    p.add_argument("--crop-only", action="store_true", help="write the aligned face crop instead of the full portrait")
    p.add_argument("--voice", help="espeak-ng voice for --text, e.g. en-us, en-gb+f3")
    p.add_argument("--rate", type=int, default=160, help="speaking rate for --text in words per minute")
    p.add_argument("--pitch", type=int, default=50, help="voice pitch for --text, 0-100")
    p.add_argument("--aligner", default="auto", help="aligner for --audio: auto, whisperx, pocketsphinx or espeak")
    p.add_argument("--temperature", type=float, default=0.0, help="keyframe sampling temperature (0 = greedy)")
    p.add_argument("--top-k", type=int, default=0, help="keyframe sampling top-k (0 = off)")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale on the phonemes (1 = off; default: the bundle's "
                        "pipeline.yaml guidance)")
    p.add_argument("--keyframe-decode", default=None, choices=["argmax", "expected"],
                   help="how keyframes become pixels: argmax (the decoded codes) or expected (each cell's expected "
                        "code under the decoding logits; default: the bundle's pipeline.yaml keyframe_decode)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or timing table")


def _run_speak(args: argparse.Namespace) -> int:
    from .pipeline import Pipeline

    pipe = Pipeline.from_pretrained(args.checkpoint, device=args.device)
    res = pipe.speak(text=args.text, audio=args.audio, transcript=args.transcript, image=args.image, out=args.out,
                     lang=args.lang, seed=args.seed, crop_only=args.crop_only, voice=args.voice, rate=args.rate,
                     pitch=args.pitch, aligner=args.aligner, temperature=args.temperature, top_k=args.top_k,
                     guidance=args.guidance, keyframe_decode=args.keyframe_decode, progress=not args.quiet)
    total = sum(res.timings.values())
    if not args.quiet:
        print(f"{'stage':<14}{'seconds':>9}{'s per s of video':>18}", file=sys.stderr)
        for stage, sec in res.timings.items():
            print(f"{stage:<14}{sec:>9.3f}{sec / res.duration:>18.3f}", file=sys.stderr)
        print(f"{'total':<14}{total:>9.3f}{total / res.duration:>18.3f}", file=sys.stderr)
    print(f"wrote {res.path} ({len(res.frames)} frames, {res.duration:.2f} s, {len(res.track.units)} units)")
    return 0


# -- bundle ------------------------------------------------------------------------------------
def _add_bundle(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tokenizer", required=True, help="trained tokenizer folder (a run's final/)")
    p.add_argument("--fkg", required=True, help="trained keyframe model folder (a run's final/)")
    p.add_argument("--interp", required=True, help="trained interpolator folder (a run's final/)")
    p.add_argument("--out", required=True, help="bundle folder to write (use with speak --checkpoint)")
    p.add_argument("--unit-key", default="viseme", choices=["viseme", "symbol"],
                   help="what the keyframe model's unit tokens are (must match its training)")
    p.add_argument("--avatar-identity", type=int, default=7, help="procedural identity used as the default avatar")
    p.add_argument("--guidance", type=float, default=1.0,
                   help="default classifier-free guidance scale of `speak` with this bundle (1 = off; >1 needs a "
                        "keyframe model trained with loss.unit_dropout)")
    p.add_argument("--keyframe-decode", default="argmax", choices=["argmax", "expected"],
                   help="default keyframe decode of `speak` with this bundle: argmax (the decoded codes) or "
                        "expected (each cell's expected code under the decoding logits)")


def _run_bundle(args: argparse.Namespace) -> int:
    from .pipeline import BundleInfo, make_bundle

    info = BundleInfo(unit_key=args.unit_key, guidance=args.guidance, keyframe_decode=args.keyframe_decode)
    out = make_bundle(args.out, args.tokenizer, args.fkg, args.interp, info, avatar_identity=args.avatar_identity)
    print(f"wrote model bundle {out}")
    return 0


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "speak": ("portrait + text or speech -> lip-synced MP4", _add_speak, _run_speak),
    "phonemes": ("text or audio to timestamped phoneme units", _add_phonemes, _run_phonemes),
    "synth-data": ("generate the procedural talking-face corpus", _add_synth, _run_synth),
    "train": ("train the tokenizer, keyframe model or interpolator from a recipe", _add_train, _run_train),
    "bundle": ("assemble trained models and a default avatar into one model folder", _add_bundle, _run_bundle),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatarsync",
        description="Phoneme-driven talking-head generation: one portrait + text or speech -> lip-synced MP4.",
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"avatarsync {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (and show tracebacks on errors)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (help_text, add, run) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_Formatter)
        add(p)
        p.set_defaults(_run=run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        # `train TASK --config X key=value ...`: overrides may follow the options
        if getattr(args, "command", None) == "train" and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args._run(args)
    except AvatarSyncError as e:
        if args.verbose:
            raise
        print(f"error: {e.problem}", file=sys.stderr)
        if e.hint:
            print(f"hint: {e.hint}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed early
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
