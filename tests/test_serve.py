"""avatarsync serve on a tiny untrained bundle: jobs, the WebSocket stream, limits, the queue, cancellation."""

import base64
import io
import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

from avatarsync.serve.app import AUDIO, FRAME, HEADER, create_app  # noqa: E402
from avatarsync.serve.config import Limits, ServeConfig  # noqa: E402

GRID = Path(__file__).parent / "data" / "grid_s1" / "video" / "bbal7s.mp4"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from avatarsync.untrained import make_untrained_bundle

    return make_untrained_bundle(tmp_path_factory.mktemp("serve"), mouth=True)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from avatarsync.io import read_video_frames

    return read_video_frames(GRID)[0][0]


def png(image: np.ndarray) -> bytes:
    import cv2

    return cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))[1].tobytes()


def wav(seconds: float, sr: int = 16000) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    t = np.arange(int(seconds * sr)) / sr
    sf.write(buf, (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), sr, format="WAV")
    return buf.getvalue()


def client(bundle, **kw) -> TestClient:
    limits = kw.pop("limits", Limits())
    return TestClient(create_app(ServeConfig(checkpoint=str(bundle), device="cpu", warmup=False, limits=limits, **kw)))


@pytest.fixture(scope="module")
def c(bundle):
    with client(bundle, workers=1, queue_size=8) as cl:
        yield cl


def wait(c, job_id, timeout=120.0) -> dict:
    t0 = time.time()
    while time.time() - t0 < timeout:
        st = c.get(f"/v1/videos/{job_id}").json()
        if st["status"] in ("done", "failed", "cancelled"):
            return st
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish")


def stream(c, request: dict, stop_after_frames: int | None = None):
    """(json messages, binary (kind, index, t, extra, payload)) of one WS stream, in arrival order."""
    texts, blobs, order = [], [], []
    with c.websocket_connect("/v1/stream") as ws:
        ws.send_text(json.dumps(request))
        while True:
            m = ws.receive()
            if m.get("bytes") is not None:
                kind, index, t, extra = HEADER.unpack(m["bytes"][:HEADER.size])
                blobs.append((kind, index, t, extra, m["bytes"][HEADER.size:]))
                order.append("frame" if kind == FRAME else "audio")
                if stop_after_frames is not None and sum(b[0] == FRAME for b in blobs) >= stop_after_frames:
                    break
            elif m.get("text") is not None:
                d = json.loads(m["text"])
                texts.append(d)
                order.append(d["type"])
                if d["type"] in ("end", "error", "cancelled"):
                    break
            else:
                break
    return texts, blobs, order


def test_job_lifecycle_json_and_multipart(c, photo):
    from avatarsync.io import probe_mp4

    r = c.post("/v1/videos", json={"text": "Peace and development. Hello there.", "seed": 1})
    assert r.status_code == 202 and r.headers["location"] == f"/v1/videos/{r.json()['id']}"
    job = r.json()
    assert job["status"] in ("queued", "running")
    st = wait(c, job["id"])
    assert st["status"] == "done" and st["progress"] == 1.0 and st["video"].endswith(".mp4"), st
    mp4 = c.get(st["video"])
    assert mp4.status_code == 200 and mp4.headers["content-type"] == "video/mp4"
    path = Path(c.app.state.engine.workdir) / "got.mp4"
    path.write_bytes(mp4.content)
    info = probe_mp4(path)
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac"
    assert info["video_frames"] == st["frames"] and abs(info["audio_duration"] - info["video_duration"]) <= 0.05
    assert (info["width"], info["height"]) == (256, 256)  # the bundle's avatar

    r = c.post("/v1/videos", data={"text": "Bob.", "seed": "2"}, files={"portrait": ("p.png", png(photo), "image/png")})
    assert r.status_code == 202, r.json()
    st = wait(c, r.json()["id"])
    assert st["status"] == "done", st
    path.write_bytes(c.get(st["video"]).content)
    assert (probe_mp4(path)["width"], probe_mp4(path)["height"]) == (photo.shape[1], photo.shape[0])


def test_dubbing_an_uploaded_video_as_a_job_and_a_stream(c, tmp_path):
    """A video upload is dubbed like `speak --video`: the clip's own frames, looped to the speech's
    length, only their mouths moved; as a job (multipart) and as a stream (base64)."""
    from avatarsync.faces.tracking import track_faces
    from avatarsync.io import probe_mp4, read_video_frames
    from avatarsync.mouth.dub import pingpong
    from avatarsync.mouth.warp import MouthWarp

    text = "Bob is here, and he brought some friends with him today."
    r = c.post("/v1/videos", data={"text": text, "dub_mouth": "first-frame"},
               files={"video": ("clip.mp4", GRID.read_bytes(), "video/mp4")})
    assert r.status_code == 202, r.json()
    st = wait(c, r.json()["id"])
    assert st["status"] == "done", st
    got = c.get(st["video"])
    path = tmp_path / "dub.mp4"
    path.write_bytes(got.content)
    info = probe_mp4(path)
    src, _ = read_video_frames(GRID, 25)
    assert (info["width"], info["height"]) == (src.shape[2], src.shape[1])
    assert info["video_frames"] == st["frames"] > len(src)  # longer than the clip: looped
    assert abs(info["audio_duration"] - info["video_duration"]) <= 0.05
    out, _ = read_video_frames(path, 25)
    idx = pingpong(len(src), len(out))
    points = track_faces(src).points
    for t in range(0, len(out), 11):  # outside the mouth region: the source frame (as H.264 keeps it)
        x0, y0, x1, y1 = MouthWarp(src[idx[t]], points[idx[t]]).box
        keep = np.ones(src.shape[1:3], bool)
        keep[y0:y1, x0:x1] = False
        assert np.abs(out[t][keep].astype(float) - src[idx[t]][keep]).mean() < 2.0
    texts, blobs, _ = stream(c, {"text": "Hi, Bob. Come in.", "video": base64.b64encode(GRID.read_bytes()).decode()})
    start, end = texts[1], texts[-1]
    assert start["render"] == "dub" and (start["width"], start["height"]) == (src.shape[2], src.shape[1])
    assert end["type"] == "end" and [b[1] for b in blobs if b[0] == FRAME] == list(range(end["frames"]))


def test_unknown_job_and_paths_never_reach_files(c):
    for bad in ("nope", "..%2F..%2Fetc%2Fpasswd", "0" * 32):
        r = c.get(f"/v1/videos/{bad}")
        assert r.status_code == 404 and set(r.json()) == {"error", "hint"}
        assert c.get(f"/v1/videos/{bad}.mp4").status_code == 404
    assert c.get("/v1/nothing").status_code == 404 and "error" in c.get("/v1/nothing").json()


def test_stream_first_frame_order_timestamps_and_joins(c, photo):
    import cv2

    texts, blobs, order = stream(c, {"text": "Hello there, and welcome. Bob is here.", "portrait": base64.b64encode(
        png(photo)).decode(), "mp4": True})
    kinds = [t["type"] for t in texts]
    assert kinds[0] == "queued" and kinds[1] == "start" and kinds[-1] == "end", kinds
    start, end = texts[1], texts[-1]
    assert start["render"] == "warp" and (start["width"], start["height"]) == (photo.shape[1], photo.shape[0])
    # the first frame comes before any audio or phrase: the portrait at rest
    assert order.index("frame") < order.index("audio") and order.index("frame") < order.index("phrase")
    frames = [b for b in blobs if b[0] == FRAME]
    audio = [b for b in blobs if b[0] == AUDIO]
    assert [f[1] for f in frames] == list(range(end["frames"]))  # every frame once, in order
    assert all(abs(f[2] - f[1] / start["fps"]) < 1e-9 for f in frames)
    phrases = [t for t in texts if t["type"] == "phrase"]
    assert len(phrases) == start["phrases"] == 3 == len(audio)
    sr = audio[0][3]
    pos = 0
    for ph, a in zip(phrases, audio):  # audio chunks cover their phrase's frames exactly, end to end
        assert a[1] == ph["start_frame"] == pos and abs(a[2] - pos / start["fps"]) < 1e-9
        assert len(a[4]) // 2 == round(ph["frames"] * sr / start["fps"])
        pos += ph["frames"]
    assert pos == end["frames"]
    # joins: the last frame of a phrase and the first of the next are both the portrait at rest
    dec = {f[1]: cv2.imdecode(np.frombuffer(f[4], np.uint8), cv2.IMREAD_COLOR).astype(np.float32) for f in frames}
    for ph in phrases[1:]:
        k = ph["start_frame"]
        assert np.abs(dec[k] - dec[k - 1]).mean() < 1.0
        assert np.abs(dec[k] - dec[0]).mean() < 1.0
    # the stream's MP4 is kept when asked
    assert end["video"] == f"/v1/videos/{end['id']}.mp4" and c.get(end["video"]).status_code == 200
    assert c.get(f"/v1/videos/{end['id']}").json()["status"] == "done"


def test_stream_of_the_avatar_and_an_upload_id(c, photo):
    texts, blobs, _ = stream(c, {"text": "Hi, Bob."})
    assert texts[1]["render"] == "tokens" and texts[-1]["type"] == "end"
    assert [b[1] for b in blobs if b[0] == FRAME] == list(range(texts[-1]["frames"]))
    up = c.post("/v1/uploads", files={"file": ("p.png", png(photo), "image/png")})
    assert up.status_code == 200
    texts, _, _ = stream(c, {"text": "Bob.", "portrait_id": up.json()["id"]})
    assert texts[-1]["type"] == "end" and texts[1]["width"] == photo.shape[1]
    texts, _, _ = stream(c, {"text": "Bob.", "portrait_id": "f" * 32})
    assert texts[-1]["type"] == "error" and texts[-1]["status"] == 422 and "upload" in texts[-1]["error"]


def test_malformed_requests_are_400_or_422_with_error_and_hint(c):
    cases = [
        (dict(content=b"{not json", headers={"content-type": "application/json"}), 400),
        (dict(json=["a", "list"]), 400),
        (dict(json={"text": "Hi.", "colour": "blue"}), 400),
        (dict(json={"text": "Hi.", "seed": "many"}), 400),
        (dict(json={"text": "Hi.", "portrait": "@@not base64@@"}), 400),
        (dict(json={}), 422),
        (dict(json={"text": "   "}), 422),
        (dict(json={"text": "Hi.", "audio": base64.b64encode(wav(0.5)).decode()}), 422),
        (dict(json={"text": "Hi.", "portrait": base64.b64encode(b"not an image").decode()}), 422),
        (dict(json={"audio": base64.b64encode(b"not audio").decode()}), 422),
        (dict(json={"text": "Hi.", "video": base64.b64encode(b"not a video").decode()}), 422),
        (dict(data={"text": "Hi."}, files={"video": ("v.mp4", GRID.read_bytes(), "video/mp4"),
                                             "portrait": ("p.png", b"\x89PNG", "image/png")}), 422),
        (dict(json={"text": "Hi.", "dub_mouth": "mirror"}), 400),
    ]
    for kw, status in cases:
        r = c.post("/v1/videos", **kw)
        assert r.status_code == status, (kw, r.json())
        assert set(r.json()) == {"error", "hint"} and r.json()["error"] and r.json()["hint"], r.json()
    texts, _, _ = stream(c, {"text": "Hi.", "render": "sideways"})
    assert texts[-1]["type"] == "error" and texts[-1]["status"] == 400
    with c.websocket_connect("/v1/stream") as ws:
        ws.send_text("{nope")
        assert ws.receive_json()["status"] == 400


def test_a_failing_request_leaves_the_server_up(c):
    blank = np.full((200, 200, 3), 200, np.uint8)
    r = c.post("/v1/videos", json={"text": "Bob.", "portrait": base64.b64encode(png(blank)).decode()})
    st = wait(c, r.json()["id"])
    assert st["status"] == "failed" and "face" in st["error"].lower() and st["hint"], st
    assert c.get(f"/v1/videos/{st['id']}.mp4").status_code == 410
    ok = wait(c, c.post("/v1/videos", json={"text": "Bob."}).json()["id"])
    assert ok["status"] == "done"


def test_each_limit_is_a_413_with_the_limit_named(bundle, photo):
    from avatarsync.serve.requests import LimitError, check_video

    limits = Limits(upload_bytes=200_000, image_pixels=50_000, text_chars=40, audio_seconds=1.0, video_seconds=1.0)
    with pytest.raises(LimitError, match="360x288, over this server's limit of 0.05 megapixels"):
        check_video(GRID.read_bytes(), Limits(video_pixels=50_000))
    check_video(GRID.read_bytes(), Limits())  # within the defaults
    with client(bundle, limits=limits) as cl:
        big = base64.b64encode(b"\0" * 300_000).decode()
        for body, word in [({"text": "x" * 41}, "characters"),
                           ({"text": "Hi.", "transcript": "y" * 41}, "characters"),
                           ({"text": "Hi.", "portrait": base64.b64encode(png(photo)).decode()}, "megapixels"),
                           ({"audio": base64.b64encode(wav(2.0)).decode()}, "2.0 s"),
                           ({"text": "Hi.", "video": base64.b64encode(GRID.read_bytes()).decode()}, "3.0 s long"),
                           ({"text": "Hi.", "portrait": big}, "MiB")]:
            r = cl.post("/v1/videos", json=body)
            assert r.status_code == 413, r.json()
            assert word in r.json()["error"] and r.json()["hint"], r.json()
        r = cl.post("/v1/videos", data={"text": "Hi."}, files={"portrait": ("p.png", b"\0" * 300_000, "image/png")})
        assert r.status_code == 413 and "MiB" in r.json()["error"]
        r = cl.post("/v1/videos", content=b"x" * (limits.body_bytes + 10), headers={"content-type": "application/json"})
        assert r.status_code == 413
        texts, _, _ = stream(cl, {"text": "z" * 41})
        assert texts[-1]["type"] == "error" and texts[-1]["status"] == 413


def test_queue_full_is_429_with_retry_after(bundle, monkeypatch):
    import avatarsync.serve.stream as stream_mod

    gate, entered = threading.Event(), threading.Event()

    def blocked(pipe, prepared, workdir, cancel=None, voice_pool=None):
        entered.set()
        gate.wait(30)
        return iter(())

    monkeypatch.setattr(stream_mod, "generate", blocked)
    with client(bundle, workers=1, queue_size=1, retry_after_s=7) as cl:
        a = cl.post("/v1/videos", json={"text": "One."})
        assert a.status_code == 202 and entered.wait(10)
        b = cl.post("/v1/videos", json={"text": "Two."})
        assert b.status_code == 202
        r = cl.post("/v1/videos", json={"text": "Three."})
        assert r.status_code == 429 and r.headers["retry-after"] == "7" and set(r.json()) == {"error", "hint"}
        texts, _, _ = stream(cl, {"text": "Four."})
        assert texts[-1]["status"] == 429 and texts[-1]["retry_after"] == 7
        gate.set()
        assert wait(cl, a.json()["id"])["status"] == "done" and wait(cl, b.json()["id"])["status"] == "done"
        assert cl.post("/v1/videos", json={"text": "Five."}).status_code == 202


def test_cancellation_on_disconnect_and_delete(c, photo):
    text = " ".join(f"Sentence number {i} is here." for i in range(12))
    texts, blobs, _ = stream(c, {"text": text, "portrait": base64.b64encode(png(photo)).decode()},
                             stop_after_frames=1)
    job_id = texts[0]["id"]
    st = wait(c, job_id, timeout=60)
    assert st["status"] == "cancelled", st
    assert st["frames"] < 12 * 25  # stopped long before twelve sentences
    r = c.post("/v1/videos", json={"text": text})
    c.delete(f"/v1/videos/{r.json()['id']}")
    assert wait(c, r.json()["id"])["status"] == "cancelled"
    assert c.get(f"/v1/videos/{r.json()['id']}.mp4").status_code == 410
    assert wait(c, c.post("/v1/videos", json={"text": "Bob."}).json()["id"])["status"] == "done"


def test_page_openapi_and_phrases(c):
    from avatarsync.serve.stream import ease, split_phrases

    page = c.get("/")
    assert page.status_code == 200 and "WebSocket" in page.text and "/v1/stream" in page.text
    spec = c.get("/openapi.json").json()
    assert {"/v1/videos", "/v1/videos/{job_id}", "/v1/videos/{job_id}.mp4"} <= set(spec["paths"])
    assert c.get("/v1/limits").json()["text_chars"] == 2000
    assert split_phrases("Hello there, and welcome. Bob is here!") == ["Hello there,", "and welcome.", "Bob is here!"]
    assert split_phrases("你好，世界。再见") == ["你好，", "世界。", "再见"]
    assert split_phrases("... Hi") == ["... Hi"]
    assert all(len(p) <= 160 for p in split_phrases("word " * 100))
    s = ease(np.ones((10, 2)), np.zeros(2))
    assert np.array_equal(s[0], [0, 0]) and np.array_equal(s[-1], [0, 0]) and s[5, 0] == 1.0


@pytest.mark.slow
def test_page_in_headless_chromium(bundle, photo, tmp_path):
    """The page in a real Chromium (Debian's chromium + Playwright): upload, play, first frame, MP4."""
    import shutil
    import socket

    sync_api = pytest.importorskip("playwright.sync_api")
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip("no chromium installed (apt-get install chromium)")
    import uvicorn

    from avatarsync.io import probe_mp4

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app = create_app(ServeConfig(checkpoint=str(bundle), device="cpu", warmup=False))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    th = threading.Thread(target=server.run, daemon=True)
    th.start()
    try:
        for _ in range(600):
            if server.started:
                break
            time.sleep(0.1)
        (tmp_path / "p.png").write_bytes(png(photo))
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=exe, args=["--autoplay-policy=no-user-gesture-required",
                                                                    "--no-sandbox"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/")
            page.set_input_files("#photo", str(tmp_path / "p.png"))
            page.fill("#text", "Hello there, and welcome.")
            page.click("#go")
            page.wait_for_function("window.avatarsync.done || window.avatarsync.error", timeout=120_000)
            state = page.evaluate("window.avatarsync")
            assert state["error"] is None and state["firstFrameMs"] is not None and state["frames"] > 0, state
            with page.expect_download() as dl:
                page.click("#download")
            dl.value.save_as(tmp_path / "got.mp4")
            # dubbing a clip from the page
            page.reload()
            page.set_input_files("#video", str(GRID))
            page.select_option("#dubmouth", "first-frame")
            page.fill("#text", "Bob is here.")
            page.click("#go")
            page.wait_for_function("window.avatarsync.done || window.avatarsync.error", timeout=120_000)
            dub = page.evaluate("window.avatarsync")
            browser.close()
        info = probe_mp4(tmp_path / "got.mp4")
        assert info["video_frames"] == state["frames"] and info["audio_codec"] == "aac"
        assert abs(info["audio_duration"] - state["audioSeconds"]) < 0.05
        assert dub["error"] is None and dub["frames"] > 0, dub
        assert (dub["render"], dub["width"], dub["height"]) == ("dub", 360, 288), dub  # the clip, dubbed
    finally:
        server.should_exit = True
        th.join(10)
