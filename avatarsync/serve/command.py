"""``avatarsync serve``: its options and the runner (the CLI calls these)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .config import Limits, ServeConfig

    d, lim = ServeConfig(), Limits()
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=8000, help="TCP port")
    p.add_argument("--checkpoint", help="model folder made by `avatarsync bundle` (default: the bundled model)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="where the models run")
    p.add_argument("--workers", type=int, default=d.workers,
                   help="worker threads, each with its own loaded models (requests run in parallel up to this)")
    p.add_argument("--queue", type=int, default=d.queue_size,
                   help="requests that may wait for a worker; more are refused with 429 and Retry-After")
    p.add_argument("--max-upload-mb", type=float, default=lim.upload_bytes / 2 ** 20, help="largest uploaded file")
    p.add_argument("--max-image-megapixels", type=float, default=lim.image_pixels / 1e6, help="largest portrait")
    p.add_argument("--max-text-chars", type=int, default=lim.text_chars, help="longest text or transcript")
    p.add_argument("--max-audio-seconds", type=float, default=lim.audio_seconds, help="longest recording")
    p.add_argument("--max-video-seconds", type=float, default=lim.video_seconds,
                   help="longest video to dub (it is looped to the speech's length)")
    p.add_argument("--max-video-megapixels", type=float, default=lim.video_pixels / 1e6,
                   help="largest frame of a video to dub (its frames are held in memory)")
    p.add_argument("--no-warmup", action="store_true", help="skip each worker's tiny start-up request")


def run(args: argparse.Namespace) -> int:
    from ..errors import InputError
    from .config import Limits, ServeConfig

    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        from ..errors import BackendUnavailable

        raise BackendUnavailable("the server needs fastapi and uvicorn", "pip install -e '.[serve]' "
                                 "(scripts/setup.sh installs them)") from None
    if args.workers < 1 or args.queue < 1:
        raise InputError("--workers and --queue must be at least 1", "e.g. --workers 1 --queue 8")
    limits = Limits(upload_bytes=int(args.max_upload_mb * 2 ** 20), image_pixels=int(args.max_image_megapixels * 1e6),
                    text_chars=args.max_text_chars, audio_seconds=args.max_audio_seconds,
                    video_seconds=args.max_video_seconds, video_pixels=int(args.max_video_megapixels * 1e6))
    config = ServeConfig(checkpoint=args.checkpoint, device=args.device, workers=args.workers, queue_size=args.queue,
                         limits=limits, warmup=not args.no_warmup)
    from .app import run as serve

    print(f"avatarsync serve: loading {args.workers} worker(s); then http://{args.host}:{args.port}/ "
          f"(API docs: /docs)", flush=True)
    serve(config, host=args.host, port=args.port)
    return 0
