"""Load test of `avatarsync serve` on localhost (bounded in count and time).

    .venv/bin/python bench/serve_load.py [--workers 2] [--soak 200] [--json out.json]

Starts the server as a subprocess (the shipped bundle unless --checkpoint), then measures:
1. first-frame latency over WS /v1/stream for a one-sentence text, with a photo (warp render) and with
   the bundle's avatar (tokens render): first frame, first audio, first frame of speech; beside the
   CLI's wall time (`avatarsync speak`) for the same sentence;
2. throughput with 1, 2 and 4 concurrent streaming clients: seconds of video delivered per wall second
   (all clients together) and whether each client was served in real time (its video seconds over the
   time from its first frame to its last >= 1);
3. a soak of mixed requests (good jobs and streams, malformed, oversized, cancelled midway): every
   request must be answered or refused, none lost, and the server's memory (RSS) at the end within 20%
   of that at the soak's start (also reported: the change since the latency runs).
The photo is the first frame of tests/data/grid_s1 (GRID, CC BY 4.0).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEADER = struct.Struct("<BIdI")
SENTENCE = "Hello there, and welcome to the show today."
LONG = "Hello there, and welcome to the show. Today we talk about the weather, the river and the town. Thank you."


def photo_png() -> bytes:
    import cv2

    from avatarsync.io import read_video_frames

    frame = read_video_frames(ROOT / "tests" / "data" / "grid_s1" / "video" / "bbal7s.mp4")[0][0]
    return cv2.imencode(".png", frame[:, :, ::-1].copy())[1].tobytes()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def stream_once(url: str, request: dict, cancel_after_frames: int | None = None, timeout: float = 120) -> dict:
    import websockets

    t0 = time.perf_counter()
    out = {"first_frame": None, "first_audio": None, "first_speech_frame": None, "frames": 0, "end": None,
           "error": None, "status": None, "fps": 25.0, "last_frame": None}
    speech_start = None
    async with websockets.connect(url, max_size=2 ** 26) as ws:
        await ws.send(json.dumps(request))
        async with asyncio.timeout(timeout):
            async for msg in ws:
                now = time.perf_counter() - t0
                if isinstance(msg, bytes):
                    kind, index, t, extra = HEADER.unpack(msg[:HEADER.size])
                    if kind == 1:
                        out["frames"] += 1
                        out["last_frame"] = now
                        if out["first_frame"] is None:
                            out["first_frame"] = now
                        if speech_start is not None and index >= speech_start and out["first_speech_frame"] is None:
                            out["first_speech_frame"] = now
                        if cancel_after_frames is not None and out["frames"] >= cancel_after_frames:
                            out["status"] = "cancelled-by-client"
                            return out
                    elif out["first_audio"] is None:
                        out["first_audio"] = now
                else:
                    d = json.loads(msg)
                    if d["type"] == "start":
                        out["fps"] = d["fps"]
                    elif d["type"] == "phrase" and speech_start is None:
                        speech_start = d["start_frame"] + 1  # the first frame after the shared rest frame
                    elif d["type"] == "end":
                        out["end"], out["status"] = now, "done"
                        out["seconds"] = d["seconds"]
                        return out
                    elif d["type"] in ("error", "cancelled"):
                        out["error"], out["status"] = d.get("error"), d.get("status", d["type"])
                        return out
    out["status"] = out["status"] or "closed"
    return out


def cli_wall(text: str, image: Path | None, checkpoint: str | None, runs: int) -> float:
    times = []
    for i in range(runs):
        cmd = [sys.executable, "-m", "avatarsync", "speak", "--text", text, "-o", f"/tmp/serve_load_cli{i}.mp4",
               "--quiet"] + (["--image", str(image)] if image else []) + (["--checkpoint", checkpoint] if checkpoint else [])
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2 ** 20


async def http(client, method, path, **kw):
    r = await client.request(method, path, **kw)
    return r.status_code, (r.json() if r.headers.get("content-type", "").startswith("application/json") else None)


async def soak(base: str, ws_url: str, n: int, png_b64: str, concurrency: int = 4) -> dict:
    import httpx

    rng = random.Random(0)
    kinds = ["good_job", "good_stream", "malformed", "oversized", "cancelled"]
    plan = [kinds[i % len(kinds)] for i in range(n)]
    rng.shuffle(plan)
    counts: dict[str, dict[str, int]] = {k: {} for k in kinds}
    lost: list[str] = []
    sem = asyncio.Semaphore(concurrency)

    async with httpx.AsyncClient(base_url=base, timeout=120) as client:
        async def one(i: int, kind: str) -> None:
            async with sem:
                try:
                    if kind == "good_job":
                        code, body = await http(client, "POST", "/v1/videos", json={"text": "Bob is here.",
                                                                                    "portrait": png_b64})
                        outcome = str(code)
                        if code == 202:  # followed to its end
                            for _ in range(600):
                                code, st = await http(client, "GET", f"/v1/videos/{body['id']}")
                                if st and st.get("status") in ("done", "failed", "cancelled"):
                                    outcome = "202 -> " + st["status"]
                                    break
                                await asyncio.sleep(0.1)
                            else:
                                outcome = "202 -> unfinished"
                    elif kind == "good_stream":
                        r = await stream_once(ws_url, {"text": "Hi, Bob.", "portrait": png_b64})
                        outcome = str(r["status"])
                    elif kind == "malformed":
                        bad = rng.choice([b"{nope", b'{"text": 5}', b'{"colour": "red", "text": "x"}', b"[]", b"{}"])
                        code, body = await http(client, "POST", "/v1/videos", content=bad,
                                                headers={"content-type": "application/json"})
                        outcome = str(code) + ("" if body and "hint" in body else " (no hint)")
                    elif kind == "oversized":
                        code, body = await http(client, "POST", "/v1/videos", json={"text": "x" * 5000})
                        outcome = str(code)
                    else:
                        r = await stream_once(ws_url, {"text": LONG, "portrait": png_b64}, cancel_after_frames=3)
                        outcome = str(r["status"])
                except Exception as e:  # noqa: BLE001 - counted as lost
                    lost.append(f"{kind}: {type(e).__name__}: {e}")
                    return
                counts[kind][outcome] = counts[kind].get(outcome, 0) + 1

        t = time.perf_counter()
        await asyncio.gather(*(one(i, k) for i, k in enumerate(plan)))
        unfinished = sum(v for k, v in counts["good_job"].items() if k.endswith("unfinished"))
        wall = time.perf_counter() - t
    return {"requests": n, "by_kind": counts, "lost": lost, "unfinished_jobs": unfinished, "wall_s": round(wall, 1)}


async def throughput(ws_url: str, clients: int, png_b64: str, per_client: int) -> dict:
    async def client() -> list[dict]:
        return [await stream_once(ws_url, {"text": LONG, "portrait": png_b64}) for _ in range(per_client)]

    t = time.perf_counter()
    runs = [r for rs in await asyncio.gather(*(client() for _ in range(clients))) for r in rs]
    wall = time.perf_counter() - t
    video = sum(r.get("seconds", 0.0) for r in runs)
    realtime = [r.get("seconds", 0) / max(r["last_frame"] - r["first_frame"], 1e-6) for r in runs if r["status"] == "done"]
    return {"clients": clients, "streams": len(runs), "video_s": round(video, 2), "wall_s": round(wall, 2),
            "video_s_per_s": round(video / wall, 2), "min_stream_speed": round(min(realtime), 2) if realtime else 0,
            "all_real_time": bool(realtime) and len(realtime) == len(runs) and min(realtime) >= 1.0,
            "median_first_frame_s": round(statistics.median(r["first_frame"] for r in runs), 3)}


async def main_async(args) -> dict:
    import httpx

    port = free_port()
    cmd = [sys.executable, "-m", "avatarsync", "serve", "--port", str(port), "--workers", str(args.workers),
           "--queue", str(args.queue)] + (["--checkpoint", args.checkpoint] if args.checkpoint else [])
    t_boot = time.perf_counter()
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/v1/stream"
    report: dict = {"workers": args.workers, "cores": os.cpu_count()}
    try:
        async with httpx.AsyncClient(base_url=base) as c:
            for _ in range(1200):
                try:
                    if (await c.get("/v1/health")).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise SystemExit("the server did not start")
        report["server_start_s"] = round(time.perf_counter() - t_boot, 1)
        png = photo_png()
        png_b64 = base64.b64encode(png).decode()
        (Path("/tmp") / "serve_load_photo.png").write_bytes(png)

        lat = {}
        for name, req in (("photo", {"text": SENTENCE, "portrait": png_b64}), ("avatar", {"text": SENTENCE})):
            runs = [await stream_once(ws_url, req) for _ in range(args.latency_runs)]
            lat[name] = {k: round(statistics.median(r[k] for r in runs), 3)
                         for k in ("first_frame", "first_audio", "first_speech_frame", "end")}
            lat[name]["video_s"] = runs[0].get("seconds")
        report["first_frame"] = lat
        rss0 = rss_mb(server.pid)
        report["throughput"] = [await throughput(ws_url, n, png_b64, args.per_client) for n in (1, 2, 4)]
        ok = [t["clients"] for t in report["throughput"] if t["all_real_time"]]
        report["most_clients_real_time"] = max(ok) if ok else 0
        rss_soak = rss_mb(server.pid)
        report["soak"] = await soak(base, ws_url, args.soak, png_b64)
        async with httpx.AsyncClient(base_url=base) as c:
            report["health_after"] = (await c.get("/v1/health")).json()
        rss1 = rss_mb(server.pid)
        report["rss_mb"] = {"after_warmup_and_latency": round(rss0, 1), "soak_start": round(rss_soak, 1),
                            "end": round(rss1, 1), "change": round(rss1 / rss_soak - 1, 3),
                            "change_since_latency": round(rss1 / rss0 - 1, 3)}
        report["server_alive"] = server.poll() is None
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
    if args.cli_runs:
        report["cli_wall_s"] = {"photo": round(cli_wall(SENTENCE, Path("/tmp/serve_load_photo.png"), args.checkpoint,
                                                        args.cli_runs), 2),
                                "avatar": round(cli_wall(SENTENCE, None, args.checkpoint, args.cli_runs), 2)}
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--queue", type=int, default=16)
    ap.add_argument("--latency-runs", type=int, default=5)
    ap.add_argument("--per-client", type=int, default=2, help="streams per client in the throughput runs")
    ap.add_argument("--soak", type=int, default=200)
    ap.add_argument("--cli-runs", type=int, default=3, help="CLI runs per case (median); 0 skips")
    ap.add_argument("--json", help="write the report here")
    args = ap.parse_args()
    report = asyncio.run(main_async(args))
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    soak_ok = not report["soak"]["lost"] and not report["soak"]["unfinished_jobs"] and report["server_alive"]
    mem_ok = abs(report["rss_mb"]["change"]) <= 0.2
    print(f"soak: {'ok' if soak_ok else 'FAILED'}; memory within 20%: {'yes' if mem_ok else 'NO'}")
    sys.exit(0 if soak_ok and mem_ok else 1)


if __name__ == "__main__":
    main()
