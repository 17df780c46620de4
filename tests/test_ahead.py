"""Work done ahead in a forked child (ahead.py: the voice, the portrait's face) and the CLI's one-shot
process (startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from avatarsync.ahead import SpeechRequest, WorkAhead

ROOT = Path(__file__).resolve().parents[1]

# a fresh interpreter, as the CLI: torch not imported when the child is forked
CHILD_SCRIPT = r"""
import json, sys
import numpy as np
from avatarsync.ahead import SpeechRequest, WorkAhead
text = "Place blue at F two now."
ahead = WorkAhead.start(SpeechRequest(text, "en", None, 160, 50))
wrong = WorkAhead.start(SpeechRequest(text, "en", None, 160, 50))
forked = ahead.pid > 0 and wrong.pid > 0
import torch  # what the parent does meanwhile
from avatarsync.voices import synthesize
made = ahead.speech(text, "en", None, 160, 50)
own = synthesize(text, "en")
other = WorkAhead.start(SpeechRequest("Another sentence."))  # torch is loaded now: no child
print(json.dumps({
    "forked": forked,
    "same_audio": bool(made is not None and np.array_equal(made.audio, own.audio)),
    "same_units": bool(made is not None and made.track.units == own.track.units),
    "same_rate": bool(made is not None and made.sample_rate == own.sample_rate),
    "after_torch": other.pid,
    "mismatch": repr(wrong.speech(text, "en", None, 200, 50)),
}))
"""


def test_child_speaks_what_the_parent_would():
    out = subprocess.run([sys.executable, "-c", CHILD_SCRIPT], capture_output=True, text=True, cwd=ROOT,
                         timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"forked": True, "same_audio": True, "same_units": True, "same_rate": True,
                   "after_torch": 0, "mismatch": "None"}


# the portrait's face: found by the child as the parent finds it; a changed file or a photo without a
# face gives None, and the normal path then finds the face or reports the error
FACE_SCRIPT = r"""
import json, os, sys
import numpy as np
from avatarsync.ahead import WorkAhead
photo, blank, changed = sys.argv[1:4]
ahead = WorkAhead.start(portrait=photo)
none = WorkAhead.start(portrait=blank)
later = WorkAhead.start(portrait=changed)
forked = ahead.pid > 0 and none.pid > 0 and later.pid > 0
import torch  # what the parent does meanwhile
from avatarsync.faces.detect import find_face
from avatarsync.io.images import even_sides, read_image
face = ahead.face(photo, "mediapipe")
own = find_face(even_sides(read_image(photo)), "mediapipe")
os.utime(changed, ns=(1, 1))  # the file changed since the child read it
print(json.dumps({
    "forked": forked,
    "same_points": bool(face is not None and np.array_equal(face.points, own.points)),
    "same_eyes": bool(face is not None and np.array_equal(face.left_eye, own.left_eye)),
    "other_detector": repr(ahead.face(photo, "opencv")),
    "other_file": repr(ahead.face(blank, "mediapipe")),
    "no_face": repr(none.face(blank, "mediapipe")),
    "changed": repr(later.face(changed, "mediapipe")),
}))
"""


def test_child_finds_the_face_the_parent_would(tmp_path):
    import cv2
    import numpy as np

    from avatarsync.io import read_video_frames

    frame = read_video_frames(ROOT / "tests" / "data" / "grid_s1" / "video" / "bbal7s.mp4")[0][0]
    photo, changed, blank = tmp_path / "photo.png", tmp_path / "changed.png", tmp_path / "blank.png"
    for path in (photo, changed):
        cv2.imwrite(str(path), np.ascontiguousarray(frame[:-1, :-1, ::-1]))  # odd sides: both cut them the same
    cv2.imwrite(str(blank), np.full((120, 160, 3), 128, np.uint8))
    out = subprocess.run([sys.executable, "-c", FACE_SCRIPT, str(photo), str(blank), str(changed)],
                         capture_output=True, text=True, cwd=ROOT, timeout=180, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"forked": True, "same_points": True, "same_eyes": True, "other_detector": "None",
                   "other_file": "None", "no_face": "None", "changed": "None"}


def test_pipeline_uses_the_face_found_ahead_and_finds_it_itself_otherwise(tmp_path):
    """``crop`` takes ``ahead``'s face for its file; with none (or an array) it detects as before."""
    from dataclasses import replace

    import cv2
    import numpy as np

    from avatarsync.faces.detect import find_face
    from avatarsync.io import read_video_frames
    from avatarsync.pipeline import Pipeline

    frame = read_video_frames(ROOT / "tests" / "data" / "grid_s1" / "video" / "bbal7s.mp4")[0][0]
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.ascontiguousarray(frame[:, :, ::-1]))
    face = find_face(frame, "mediapipe")
    moved = replace(face, points=face.points + 3.0, left_eye=face.left_eye + 3.0, right_eye=face.right_eye + 3.0,
                    nose=face.nose + 3.0, mouth_left=face.mouth_left + 3.0, mouth_right=face.mouth_right + 3.0)

    class Given:  # stands in for WorkAhead: the face "found ahead" is a moved copy, to tell it apart
        def face(self, path, detector):
            return moved if Path(path) == photo and detector == "mediapipe" else None

    pipe = Pipeline.from_pretrained(device="cpu")
    _, own = pipe.crop(frame)
    _, from_file = pipe.crop(photo)
    _, given = pipe.crop(photo, ahead=Given())
    assert np.allclose(own.matrix, from_file.matrix)
    assert not np.allclose(given.matrix, own.matrix)
    assert np.allclose(given.matrix[:, 2], own.matrix[:, 2] - own.matrix[:, :2] @ [3.0, 3.0], atol=1e-6)


def test_no_child_once_torch_is_loaded():
    import torch  # noqa: F401 - the test process has it; forking then is refused

    ahead = WorkAhead.start(SpeechRequest("Hello."), portrait=ROOT / "avatarsync" / "assets" / "default" / "avatar.png")
    assert ahead.pid == 0 and ahead.speech("Hello.", "en", None, 160, 50) is None
    assert ahead.face(ROOT / "avatarsync" / "assets" / "default" / "avatar.png", "mediapipe") is None


def test_unknown_language_starts_nothing():
    assert WorkAhead.start(SpeechRequest("Hello.", "xx")).pid == 0


def test_failed_child_leaves_the_error_to_the_normal_path():
    script = ("from avatarsync.ahead import SpeechRequest, WorkAhead\n"
              "a = WorkAhead.start(SpeechRequest('Hello.', 'en', 'no-such-voice', 160, 50))\n"
              "print(a.pid > 0, a.speech('Hello.', 'en', 'no-such-voice', 160, 50))\n")
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
