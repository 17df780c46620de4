"""Wall time of one `avatarsync speak` from a cold process, and where it goes.

    python bench/cli_startup.py [--runs 3] [--text "..."] [--image PHOTO] [--baseline DIR]

Runs the real CLI `--runs` times (the median is reported), then one instrumented process that does
what the CLI does and times each phase: the CLI's imports and the fork of the voice's child process
(ahead.py), importing torch (while the child speaks and finds the portrait's face), loading the bundle
(`Pipeline.from_pretrained`), and `speak` itself per stage; what is left of the process's wall time is
Python's start and exit. On a shared VM it also reports the CPU time the hypervisor took from this
machine during each run (``steal`` in /proc/stat), which stretches every wall time by about as much;
the machine's speed also changes for reasons steal does not show (docs/serve.md, session 13).

``--baseline DIR`` (a checkout of another version, e.g. ``git worktree add /tmp/old REV``) runs that
version's CLI in turns with this one's, the order alternating each round, under the same interpreter
and packages, and reports both medians and their ratio: a speed-up measured in one run, which holds
while the machine's own speed drifts.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROBE = r"""
import json, sys, time
t0 = time.perf_counter()
from avatarsync.startup import exit_now, keep_freed_memory
keep_freed_memory()
from avatarsync.ahead import SpeechRequest, WorkAhead
ahead = WorkAhead.start(SpeechRequest(sys.argv[1]), portrait=sys.argv[2] or None)  # as the CLI: a child works from here on
t_fork = time.perf_counter()
import torch
t_torch = time.perf_counter()
from avatarsync.pipeline import Pipeline
t_import = time.perf_counter()
pipe = Pipeline.from_pretrained(device="cpu")
t_load = time.perf_counter()
res = pipe.speak(text=sys.argv[1], image=sys.argv[2] or None, out=sys.argv[3], ahead=ahead)
t_speak = time.perf_counter()
print(json.dumps({"start-up and CLI imports": t_fork - t0, "import torch": t_torch - t_fork,
                  "import avatarsync": t_import - t_torch, "from_pretrained": t_load - t_import,
                  **{f"speak: {k}": v for k, v in res.timings.items()}, "speak total": t_speak - t_load,
                  "video seconds": res.duration}), flush=True)
exit_now(0)
"""


def cpu_times() -> list[int] | None:
    """The machine's aggregate CPU times (/proc/stat: user .. steal), None where there is no /proc."""
    try:
        return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None


def steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """Share of the interval's CPU time the hypervisor gave to other guests (``steal``): on a shared
    VM every wall time here stretches by about this much."""
    if before is None or after is None:
        return None
    d = [b - a for a, b in zip(before, after)]
    return d[7] / sum(d) if sum(d) else 0.0


def cold_speak(root: Path, text: str, image: str, out: str) -> float:
    """Wall seconds of one `python -m avatarsync speak` from a new process, with the package taken
    from ``root``."""
    cmd = [sys.executable, "-m", "avatarsync", "speak", "--text", text, "-o", out, "--quiet"]
    cmd += ["--image", image] if image else []
    env = {**os.environ, "PYTHONPATH": str(root)}
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=root, env=env)
    return time.perf_counter() - t


def compare(baseline: Path, runs: int, text: str, image: str, out: str) -> None:
    """This version's CLI and ``baseline``'s in turns; both medians and their ratio."""
    walls: dict[str, list[float]] = {"baseline": [], "this": []}
    roots = {"baseline": baseline, "this": ROOT}
    for i in range(runs):
        for name in (("baseline", "this") if i % 2 == 0 else ("this", "baseline")):
            walls[name].append(cold_speak(roots[name], text, image, out))
    base, this = statistics.median(walls["baseline"]), statistics.median(walls["this"])
    pairs = [b / t for b, t in zip(walls["baseline"], walls["this"])]
    for name, root in roots.items():
        print(f"{name:<9} {root}: median {statistics.median(walls[name]):.2f} s "
              f"({', '.join(f'{w:.2f}' for w in walls[name])})")
    print(f"speed-up: {base / this:.2f}x of the medians (per round: median {statistics.median(pairs):.2f}x, "
          f"{min(pairs):.2f}-{max(pairs):.2f}); this version takes {this / base:.3f} of the baseline's time")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=3, help="cold CLI runs (median reported)")
    p.add_argument("--text", default="Hello there, and welcome to the show today.",
                   help="sentence to speak (the default: bench/serve_load.py's, 2.8 s with the Piper voice)")
    p.add_argument("--image", default="", help="portrait (default: the bundle's avatar)")
    p.add_argument("--baseline", type=Path, default=None,
                   help="a checkout of another version: run its CLI in turns with this one's and report the ratio")
    args = p.parse_args()
    if args.baseline is not None:
        with tempfile.TemporaryDirectory() as tmp:
            compare(args.baseline.resolve(), args.runs, args.text, args.image, str(Path(tmp) / "out.mp4"))
        return
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "out.mp4")
        walls, steals = [], []
        for _ in range(args.runs):
            before = cpu_times()
            walls.append(cold_speak(ROOT, args.text, args.image, out))
            steals.append(steal_share(before, cpu_times()))
        t = time.perf_counter()
        probe = subprocess.run([sys.executable, "-c", PROBE, args.text, args.image, out], check=True,
                               capture_output=True, text=True, cwd=ROOT)
        probe_wall = time.perf_counter() - t
    phases = json.loads(probe.stdout.strip().splitlines()[-1])
    video = phases.pop("video seconds")
    print(f"`avatarsync speak` of a {video:.2f} s sentence: median wall {statistics.median(walls):.2f} s "
          f"over {args.runs} runs ({', '.join(f'{w:.2f}' for w in walls)})")
    if steals and None not in steals:
        print(f"CPU time taken by the hypervisor (steal) during the runs: median {100 * statistics.median(steals):.0f}% "
              f"({', '.join(f'{100 * x:.0f}' for x in steals)})")
    print(f"{'phase (one instrumented process)':<36}{'seconds':>9}")
    for k, v in phases.items():
        print(f"{k:<36}{v:>9.3f}")
    print(f"{'process wall':<36}{probe_wall:>9.3f}")
    print(f"{'of which Python start and exit':<36}{probe_wall - sum(v for k, v in phases.items() if not k.startswith('speak: ')):>9.3f}")


if __name__ == "__main__":
    main()
