"""The ``avatarsync`` command line: one entry point, one subcommand per job."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from . import __version__
from .errors import AvatarSyncError, InputError
from .options import DUB_MOUTHS, KEYFRAME_DECODES, PASTE_REGIONS, RENDERS


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


# -- synth-data ---------------------------------------------------------------------------------
def _add_synth(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output folder for the corpus (created if missing)")
    p.add_argument("--clips", type=int, default=20, help="number of clips to generate")
    p.add_argument("--seed", type=int, default=0, help="master seed; the same seed gives the same corpus")
    p.add_argument("--lang", choices=["en", "zh", "fr", "mix"], default="en",
                   help="sentence language: English, Mandarin, French, or English and Mandarin alternating")
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


# -- prepare ----------------------------------------------------------------------------------
def _add_prepare(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="folder of source videos (layout: see --layout)")
    p.add_argument("--out", required=True, help="corpus folder to write (a re-run resumes it)")
    p.add_argument("--layout", choices=["grid", "folder", "cmlr"], default="grid",
                   help="grid: video/ + align/ (+ transcripts.tsv); folder: videos with NAME.txt transcripts or "
                        "transcripts.tsv (HDTF, your own recordings); cmlr: video/SPEAKER/DATE/ + text/")
    p.add_argument("--lang", choices=["en", "zh"], default="en", help="speech language (cmlr: zh)")
    p.add_argument("--speaker", help="speaker name for every video (default: the folder's name)")
    p.add_argument("--size", type=int, default=256, help="side of the aligned face crops in pixels")
    p.add_argument("--face-scale", type=float, default=1.0, help="face size in the crop (>1: larger, as the pipeline's)")
    p.add_argument("--no-align-times", action="store_true",
                   help="ignore word timings of alignment files (GRID .align): force-align the transcript instead")
    p.add_argument("--split", choices=["auto", "train", "val", "test"], default="auto",
                   help="auto: split by --split-by with a fixed seed; else put every clip in this split "
                        "(e.g. test for an unseen speaker)")
    p.add_argument("--split-by", choices=["sentence", "speaker"], default="sentence",
                   help="what val/test hold out: sentences or whole speakers")
    p.add_argument("--val", type=float, default=0.05, help="fraction of sentences (or speakers) for validation")
    p.add_argument("--test", type=float, default=0.05, help="fraction of sentences (or speakers) for test")
    p.add_argument("--split-seed", type=int, default=0, help="seed of the split (same seed, same split)")
    p.add_argument("--min-seconds", type=float, default=1.0,
                   help="drop stretches of usable face shorter than this (after cuts and face losses)")
    p.add_argument("--max-seconds", type=float, default=120.0, help="refuse longer videos (cut them first)")
    p.add_argument("--workers", type=int, default=1, help="parallel worker processes")
    p.add_argument("--limit", type=int, default=0, help="prepare at most this many videos (0 = all)")
    p.add_argument("--retry-skipped", action="store_true", help="try again the videos a previous run skipped")
    p.add_argument("--transcribe", action="store_true",
                   help="videos without a transcript: recognize their speech offline (Whisper) instead of skipping")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_prepare(args: argparse.Namespace) -> int:
    from .data.prepare import PrepareConfig, prepare_corpus

    cfg = PrepareConfig(src=args.src, out=args.out, layout=args.layout, lang=args.lang, speaker=args.speaker,
                        size=args.size, face_scale=args.face_scale, use_align=not args.no_align_times,
                        split=args.split, split_by=args.split_by, val_fraction=args.val, test_fraction=args.test,
                        split_seed=args.split_seed, min_seconds=args.min_seconds, max_seconds=args.max_seconds,
                        workers=args.workers, retry_skipped=args.retry_skipped, limit=args.limit,
                        transcribe=args.transcribe)
    r = prepare_corpus(cfg, progress=not args.quiet)
    print(f"prepared {r['prepared']} of {r['videos']} videos into {r['clips']} clips ({r['video_seconds']:.0f} s) "
          f"in {args.out}; splits {r['splits']}; {r['compute_seconds_per_minute_of_video']:.1f} s of compute per "
          f"minute of video ({r['resumed']} resumed)")
    if r["skipped"]:
        print(f"skipped {r['skipped']} video(s) ({', '.join(f'{k}: {v}' for k, v in r['skipped_by_kind'].items())}):")
        for s in r["skipped_videos"][:20]:
            print(f"  {s['item']}: {s['reason']}")
        if r["skipped"] > 20:
            print(f"  ... {r['skipped'] - 20} more")
    print(f"report: {args.out}/prepare_report.json")
    return 0


# -- evaluate ---------------------------------------------------------------------------------
def _add_evaluate(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="corpus folder (from `avatarsync prepare` or `synth-data`)")
    p.add_argument("--checkpoint", help="model folder made by `avatarsync bundle` (default: the bundled model)")
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="which clips to reenact")
    p.add_argument("--max-clips", type=int, default=0, help="evaluate at most this many clips (0 = the whole split)")
    p.add_argument("--no-transcript", action="store_true",
                   help="drive speak with the audio alone, not the clip's transcript")
    p.add_argument("--seed", type=int, default=0, help="random seed of speak")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the models run")
    p.add_argument("--no-csim", action="store_true", help="skip identity similarity even when dlib is installed")
    p.add_argument("--videos", help="folder to write each generated clip into (MP4)")
    p.add_argument("--paste-region", choices=PASTE_REGIONS, default=None,
                   help="speak's paste region (default: the bundle's pipeline.yaml paste_region)")
    p.add_argument("--render", choices=RENDERS, default=None,
                   help="speak's renderer (default: the bundle's pipeline.yaml render)")
    p.add_argument("--source", choices=["first-frame", "video"], default="first-frame",
                   help="what speak animates: first-frame (the clip's first frame as the portrait: "
                        "self-reenactment) or video (the clip itself dubbed with its own speech: only the mouth "
                        "is regenerated, the head motion is the clip's)")
    p.add_argument("--dub-mouth", choices=DUB_MOUTHS, default="own",
                   help="with --source video, which mouth is moved: own (each frame's own real mouth, as speak "
                        "--video dubs) or first-frame (the first frame's mouth carried into every frame: the clip's "
                        "own mouth never reaches the output, a reconstruction test without leakage)")
    p.add_argument("--lpips-vgg", help="local torchvision VGG16 weights file: also report face-box LPIPS "
                                       "(lpips' own linear heads); without it LPIPS is not reported")
    p.add_argument("--json", help="write the full report (per clip and pooled) to this JSON file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_evaluate(args: argparse.Namespace) -> int:
    from .evaluate.reenact import EvaluateConfig, evaluate_corpus, format_table, write_report

    if args.json:
        from .io import check_writable

        check_writable(args.json)
    cfg = EvaluateConfig(data=args.data, checkpoint=args.checkpoint, split=args.split, max_clips=args.max_clips,
                         use_transcript=not args.no_transcript, seed=args.seed, device=args.device,
                         csim=not args.no_csim, videos=args.videos, paste_region=args.paste_region,
                         render=args.render, source=args.source, dub_mouth=args.dub_mouth,
                         lpips_vgg=args.lpips_vgg)
    report = evaluate_corpus(cfg, progress=not args.quiet)
    print(format_table(report))
    print(f"speak: {report['seconds_of_compute_per_second_of_video']:.2f} s of compute per s of video")
    for note in report["notes"]:
        print(f"note: {note}")
    failed = [c for c in report["clips"] if c["error"]]
    for c in failed:
        print(f"not scored: {c['clip_id']}: {c['error']}")
    if args.json:
        write_report(report, args.json)
        print(f"report: {args.json}")
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

    p.add_argument("task", choices=(*TASK_NAMES, "personal"),
                   help="which model to train from a recipe (--config), or 'personal': a personal avatar bundle "
                        "from one's own footage (--video ... --out DIR)")
    p.add_argument("--config", help="recipe YAML (see recipes/); needed by every task but personal")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="dotted overrides of the recipe, e.g. train.steps=200 train.lr=1e-3")
    g = p.add_argument_group("personal avatar (train personal)")
    g.add_argument("--video", action="append", default=[],
                   help="footage of the person speaking, one face in view (repeat for several videos, or a folder)")
    g.add_argument("--transcript", action="append", default=[],
                   help="text file with what a --video says, one per --video in order (default: recognized)")
    g.add_argument("--corpus", help="an already prepared corpus of the person instead of --video")
    g.add_argument("--out", help="personal bundle folder to write (use with speak --checkpoint)")
    g.add_argument("--from", dest="base", help="bundle to start from (default: the shipped one)")
    g.add_argument("--minutes", type=float, default=10.0, help="fine-tune time budget in minutes")
    g.add_argument("--steps", type=int, default=1500, help="fine-tune steps (the budget may stop it earlier)")
    g.add_argument("--backdrop-seconds", type=float, default=4.0,
                   help="seconds of the footage kept as the bundle's default backdrop (0 = the still avatar)")
    g.add_argument("--lang", default="en", help="language spoken in the footage: en or zh")
    g.add_argument("--workers", type=int, default=1, help="processes preparing the footage")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _take_local_rank(argv: list[str]) -> list[str]:
    """Drop the ``--local_rank=N`` (``--local-rank``) that the deepspeed launcher and torch.distributed.launch
    put after the module name; it goes to ``LOCAL_RANK``, which they set as well."""
    import os

    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        name, eq, value = a.partition("=")
        if name in ("--local_rank", "--local-rank"):
            if not eq and i + 1 < len(argv):
                i, value = i + 1, argv[i + 1]
            os.environ.setdefault("LOCAL_RANK", value)
        else:
            out.append(a)
        i += 1
    return out


def _run_train(args: argparse.Namespace) -> int:
    if args.task == "personal":
        from .train.personal import PersonalConfig, train_personal

        if not args.out:
            raise InputError("train personal needs --out DIR", "name the bundle folder to write, e.g. --out my-avatar")
        cfg = PersonalConfig(out=args.out, videos=args.video, transcripts=args.transcript, corpus=args.corpus,
                             base=args.base, minutes=args.minutes, steps=args.steps,
                             backdrop_seconds=args.backdrop_seconds, lang=args.lang, workers=args.workers)
        out = train_personal(cfg, progress=not args.quiet)
        print(f"wrote personal bundle {out}; try: avatarsync speak --checkpoint {out} --text \"Hello.\"")
        return 0
    if not args.config:
        raise InputError(f"train {args.task} needs --config RECIPE", "pick one in recipes/, e.g. recipes/mouth_real.yaml")
    from .train.registry import run_training

    result = run_training(args.task, args.config, args.overrides, progress=not args.quiet)
    from .train.distributed import is_main

    if not is_main():  # one of several training processes: rank 0 reports
        return 0
    shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(result.final_metrics.items()) if isinstance(v, float))
    print(f"trained {args.task} for {result.steps} steps; model in {result.out_dir / 'final'}")
    if shown:
        print(f"final metrics: {shown}")
    return 0


# -- speak -------------------------------------------------------------------------------------
def _add_speak(p: argparse.ArgumentParser) -> None:
    from .options import add_arguments

    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--list-voices", action="store_true",
                     help="list the installed voices for --text (Piper and espeak-ng, the default of each "
                          "language marked) and exit")
    add_arguments(p, {"source": src})  # the options of a request (avatarsync/options.py), shared with the server
    p.add_argument("--checkpoint", help="model folder made by `avatarsync bundle` (default: the bundled model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the models run")
    p.add_argument("--asr-model", metavar="DIR",
                   help="CTranslate2 Whisper folder for the offline speech recognizer (env AVATARSYNC_ASR_MODEL; "
                        "default: the installed multilingual Whisper base)")
    p.add_argument("--quiet", action="store_true", help="no progress bar or timing table")


def _run_speak(args: argparse.Namespace) -> int:
    if args.list_voices:
        from .voices import format_voices

        print(format_voices())
        return 0
    from .ahead import SpeechRequest, WorkAhead

    # the voice speaks and the portrait's face is found in a child process on the other core while this
    # one imports torch and loads the models (a fresh process only: see ahead.py); what it did not do
    # is done inside speak()
    ahead = WorkAhead.start(SpeechRequest(args.text, args.lang, args.voice, args.rate, args.pitch)
                            if args.text and not args.audio else None,
                            portrait=args.image if args.image and not args.video else None)
    from .options import from_args
    from .pipeline import Pipeline

    if args.asr_model:  # the pipeline's aligner reads its model folder from the environment
        import os

        from .phonemes.align.asr import ENV_MODEL, check_model_dir

        os.environ[ENV_MODEL] = str(check_model_dir(args.asr_model))

    pipe = Pipeline.from_pretrained(args.checkpoint, device=args.device)
    res = pipe.speak(from_args(args, progress=not args.quiet), ahead=ahead)
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
    p.add_argument("--mouth", help="trained mouth-motion folder (`avatarsync train mouth`'s final/): lets `speak` "
                                   "warp a photo's own mouth (--render warp)")
    p.add_argument("--render", choices=RENDERS,
                   help="default renderer of `speak` with this bundle (auto: warp for photos when --mouth is given; "
                        "unset: the shipped bundle's)")
    p.add_argument("--out", required=True, help="bundle folder to write (use with speak --checkpoint)")
    p.add_argument("--unit-key", default="viseme", choices=["viseme", "symbol"],
                   help="what the keyframe model's unit tokens are (must match its training)")
    p.add_argument("--avatar-identity", type=int, default=7, help="procedural identity used as the default avatar")
    p.add_argument("--guidance", type=float,
                   help="default classifier-free guidance scale of `speak` with this bundle (unset: the shipped "
                        "bundle's; 1 = off; >1 needs a "
                        "keyframe model trained with loss.unit_dropout)")
    p.add_argument("--keyframe-decode", choices=KEYFRAME_DECODES,
                   help="default keyframe decode of `speak` with this bundle (unset: the shipped bundle's): "
                        "argmax (the decoded codes) or "
                        "expected (each cell's expected code under the decoding logits)")
    p.add_argument("--paste-region", choices=PASTE_REGIONS,
                   help="default paste region of `speak` with this bundle (unset: the shipped bundle's): face "
                        "(the whole crop) or mouth "
                        "(only what speech moves)")


def _run_bundle(args: argparse.Namespace) -> int:
    from .bundle import DEFAULT_BUNDLE, BundleInfo, make_bundle, read_info

    shipped = read_info(DEFAULT_BUNDLE)
    given = {"guidance": args.guidance, "keyframe_decode": args.keyframe_decode, "paste_region": args.paste_region,
             "render": args.render}
    info = BundleInfo(unit_key=args.unit_key, **{k: getattr(shipped, k) if v is None else v for k, v in given.items()})
    out = make_bundle(args.out, args.tokenizer, args.fkg, args.interp, info, avatar_identity=args.avatar_identity,
                      mouth=args.mouth)
    print(f"wrote model bundle {out}")
    return 0


# -- serve -------------------------------------------------------------------------------------
def _add_serve(p: argparse.ArgumentParser) -> None:
    from .serve.command import add_arguments

    add_arguments(p)


def _run_serve(args: argparse.Namespace) -> int:
    from .serve.command import run

    return run(args)


COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]] = {
    "speak": ("portrait + text or speech -> lip-synced MP4", _add_speak, _run_speak),
    "phonemes": ("text or audio to timestamped phoneme units", _add_phonemes, _run_phonemes),
    "synth-data": ("generate the procedural talking-face corpus", _add_synth, _run_synth),
    "prepare": ("real talking-face videos -> a training/evaluation corpus", _add_prepare, _run_prepare),
    "evaluate": ("self-reenactment on a corpus: the paper's metrics beside the still first frame",
                 _add_evaluate, _run_evaluate),
    "train": ("train the tokenizer, keyframe model or interpolator from a recipe", _add_train, _run_train),
    "bundle": ("assemble trained models and a default avatar into one model folder", _add_bundle, _run_bundle),
    "serve": ("HTTP + WebSocket server: video jobs, a live stream of frames and audio, a web page",
              _add_serve, _run_serve),
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


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(_take_local_rank(list(sys.argv[1:] if argv is None else argv)))
    if extra:
        # `train TASK --config X key=value ...`: overrides may follow the options
        if getattr(args, "command", None) == "train" and all("=" in e and not e.startswith("-") for e in extra):
            args.overrides = list(args.overrides) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


# commands whose process does one job and ends: `run` lets glibc keep freed memory for reuse and skips
# Python's teardown at exit (0.3-0.5 s and 0.6 s of `speak`'s wall time on 2 cores: avatarsync/startup.py)
_ONE_SHOT = ("speak",)


def run() -> None:
    """The ``avatarsync`` console command: :func:`main`, then exit with its status."""
    args = _parse(None)
    one_shot = getattr(args, "command", None) in _ONE_SHOT
    if one_shot:
        from .startup import keep_freed_memory

        keep_freed_memory()
    code = _dispatch(args)
    if one_shot:
        from .startup import exit_now

        exit_now(code)
    sys.exit(code)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``avatarsync`` command line (``argv`` without the program name); its exit status."""
    return _dispatch(_parse(argv))


def _dispatch(args: argparse.Namespace) -> int:
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
    run()
