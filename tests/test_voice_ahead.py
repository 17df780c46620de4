"""Speech made ahead in a forked child (voices/ahead.py) and the CLI's one-shot process (startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from avatarsync.voices.ahead import SpeechAhead

ROOT = Path(__file__).resolve().parents[1]

# a fresh interpreter, as the CLI: torch not imported when the child is forked
CHILD_SCRIPT = r"""
import json, sys
import numpy as np
from avatarsync.voices.ahead import SpeechAhead
text = "Place blue at F two now."
ahead = SpeechAhead.start(text, "en", None, 160, 50)
wrong = SpeechAhead.start(text, "en", None, 160, 50)
forked = ahead.pid > 0 and wrong.pid > 0
import torch  # what the parent does meanwhile
from avatarsync.voices import synthesize
made = ahead.take(text, "en", None, 160, 50)
own = synthesize(text, "en")
other = SpeechAhead.start("Another sentence.", "en", None, 160, 50)  # torch is loaded now: no child
print(json.dumps({
    "forked": forked,
    "same_audio": bool(made is not None and np.array_equal(made.audio, own.audio)),
    "same_units": bool(made is not None and made.track.units == own.track.units),
    "same_rate": bool(made is not None and made.sample_rate == own.sample_rate),
    "after_torch": other.pid,
    "mismatch": repr(wrong.take(text, "en", None, 200, 50)),
}))
"""


def test_child_speaks_what_the_parent_would():
    out = subprocess.run([sys.executable, "-c", CHILD_SCRIPT], capture_output=True, text=True, cwd=ROOT,
                         timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"forked": True, "same_audio": True, "same_units": True, "same_rate": True,
                   "after_torch": 0, "mismatch": "None"}


def test_no_child_once_torch_is_loaded():
    import torch  # noqa: F401 - the test process has it; forking then is refused

    ahead = SpeechAhead.start("Hello.", "en")
    assert ahead.pid == 0 and ahead.take("Hello.", "en", None, 160, 50) is None


def test_unknown_language_starts_nothing():
    assert SpeechAhead.start("Hello.", "xx").take("Hello.", "xx", None, 160, 50) is None


def test_failed_child_leaves_the_error_to_the_normal_path():
    script = ("from avatarsync.voices.ahead import SpeechAhead\n"
              "a = SpeechAhead.start('Hello.', 'en', 'no-such-voice', 160, 50)\n"
              "print(a.pid > 0, a.take('Hello.', 'en', 'no-such-voice', 160, 50))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=60, check=True)
    assert out.stdout.split() == ["True", "None"]


def test_cli_speak_exits_cleanly_with_its_status(tmp_path):
    """`avatarsync speak` ends without Python's teardown: the file is complete, the status kept, and an
    error still gets its message and exit status 2."""
    exe = Path(sys.executable).with_name("avatarsync")
    out = tmp_path / "o.mp4"
    ok = subprocess.run([str(exe), "speak", "--text", "Bin blue.", "-o", str(out), "--quiet"],
                        capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert ok.returncode == 0, ok.stderr
    assert f"wrote {out}" in ok.stdout
    from avatarsync.io import probe_mp4

    info = probe_mp4(out)
    assert info["video_frames"] > 10 and info["audio_duration"] > 0.4
    bad = subprocess.run([str(exe), "speak", "--text", "  ", "-o", str(tmp_path / "e.mp4"), "--quiet"],
                         capture_output=True, text=True, cwd=ROOT, timeout=180)
    assert bad.returncode == 2 and "error: the text is empty" in bad.stderr
    assert not (tmp_path / "e.mp4").exists()
