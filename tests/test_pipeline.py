"""End to end on a tiny untrained bundle: the plumbing, lengths, A/V sync and bad input (not quality)."""

import json
from pathlib import Path

import numpy as np
import pytest

from avatarsync.cli import main
from avatarsync.errors import InputError
from avatarsync.io import probe_mp4
from avatarsync.pipeline import Pipeline


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from avatarsync.untrained import make_untrained_bundle

    return make_untrained_bundle(tmp_path_factory.mktemp("untrained"))


@pytest.fixture(scope="module")
def pipe(bundle) -> Pipeline:
    return Pipeline.from_pretrained(bundle, device="cpu")


def test_text_to_mp4_matches_audio_length(pipe, tmp_path):
    out = tmp_path / "a.mp4"
    res = pipe.speak(text="Peace and development.", out=out, seed=1)
    info = probe_mp4(out)
    assert info["video_codec"] == "h264" and info["audio_codec"] == "aac" and info["fps"] == 25
    assert info["video_frames"] == len(res.frames) == round(res.track.duration * 25)
    assert abs(info["audio_duration"] - info["video_duration"]) <= 1 / 25
    avatar = json.loads((pipe.folder / "avatar.json").read_text())
    assert res.frames.shape[1:] == (256, 256, 3)  # pasted back into the 256 px avatar
    assert set(res.timings) == {"phonemes", "crop", "keyframes", "interpolation", "decode", "mux"}
    assert avatar["five"]


def test_same_seed_same_frames_and_crop_only(pipe):
    a = pipe.speak(text="Hello there.", out=None, seed=3, crop_only=True)
    b = pipe.speak(text="Hello there.", out=None, seed=3, crop_only=True)
    np.testing.assert_array_equal(a.frames, b.frames)
    assert a.frames.shape[1:] == (128, 128, 3)


def test_pixel_interpolation_keeps_decoded_keyframes(pipe):
    """The default layout decodes only keyframes and interpolates pixels: frames at keyframe times are
    exactly the decoded keyframes (against the portrait reference)."""
    import torch

    from avatarsync.interpolation.schedule import track_schedule

    assert pipe.pixel_factor == 8 and pipe.tokenizer.needs_reference
    res = pipe.speak(text="Peace.", out=None, seed=0, crop_only=True)
    units = [u for u in res.track.units if u.end > u.start]
    keys = pipe.keyframes(pipe.crop(None)[1].crop, type(res.track)(units=units, lang="en", duration=res.track.duration),
                          seed=0)
    decoded = pipe.decode_keyframes(keys, pipe.reference(pipe.crop(None)[1].crop))
    key_u8 = ((decoded.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    sched = track_schedule(type(res.track)(units=units, lang="en", duration=res.track.duration), 25.0,
                           res.track.duration)
    copies = np.nonzero(sched.is_keyframe_copy() & (sched.tau == 0))[0]
    assert len(copies) > 0
    for f in copies:
        np.testing.assert_array_equal(res.frames[f], key_u8[sched.left[f]])


def test_code_space_bundle_without_reference(tmp_path):
    from avatarsync.untrained import make_untrained_bundle

    folder = make_untrained_bundle(tmp_path, reference=False, pixel_factor=0)
    p = Pipeline.from_pretrained(folder, device="cpu")
    assert p.pixel_factor == 0 and not p.tokenizer.needs_reference
    res = p.speak(text="Hello.", out=None, crop_only=True)
    assert res.frames.shape[1:] == (128, 128, 3) and len(res.frames) == round(res.track.duration * 25)


def test_windowed_guided_bundle_changes_only_the_window_and_reads_its_guidance(tmp_path):
    from avatarsync.fkg.layout import window_cells
    from avatarsync.untrained import make_untrained_bundle

    box = [0.25, 0.5, 0.75, 1.0]
    folder = make_untrained_bundle(tmp_path, fkg_window=box, fkg_unit_context=True, guidance=2.0)
    p = Pipeline.from_pretrained(folder, device="cpu")
    assert p.fkg.frame_window == tuple(box) and p.fkg.unit_context and p.info.guidance == 2.0
    aligned = p.crop(None)[1]
    res = p.speak(text="Hello.", out=None, crop_only=True)
    units = [u for u in res.track.units if u.end > u.start]
    track = type(res.track)(units=units, lang="en", duration=res.track.duration)
    guided = p.keyframes(aligned.crop, track)  # the bundle's guidance
    plain = p.keyframes(aligned.crop, track, guidance=1.0)
    import torch

    ref = p.tokenizer.encode(torch.from_numpy(aligned.crop[None]).permute(0, 3, 1, 2).float() / 127.5 - 1,
                             reference=torch.from_numpy(aligned.crop[None]).permute(0, 3, 1, 2).float() / 127.5 - 1)[0]
    r0, r1, c0, c1 = window_cells(tuple(ref.shape), box)
    outside = torch.ones_like(ref, dtype=torch.bool)
    outside[r0:r1, c0:c1] = False
    for codes in (guided, plain):
        assert bool((codes[:, outside] == ref[outside]).all())
    assert not torch.equal(guided, plain)


@pytest.mark.parametrize("pixel_factor", [8, 0])
def test_expected_keyframe_decode_is_the_codebook_mean_and_reaches_the_video(tmp_path, pixel_factor):
    """keyframe_decode "expected": each cell's code vector is the softmax-weighted mean of the codebook,
    so it lies between the argmax code's and others'; the bundle default and the speak option agree."""
    import torch

    from avatarsync.untrained import make_untrained_bundle

    folder = make_untrained_bundle(tmp_path, fkg_window=[0.25, 0.5, 0.75, 1.0], pixel_factor=pixel_factor,
                                   reference=bool(pixel_factor), keyframe_decode="expected")
    p = Pipeline.from_pretrained(folder, device="cpu")
    assert p.info.keyframe_decode == "expected"
    aligned = p.crop(None)[1]
    res = p.speak(text="Hello.", out=None, crop_only=True, seed=2)
    track = type(res.track)(units=[u for u in res.track.units if u.end > u.start], lang="en",
                            duration=res.track.duration)
    hard = p.keyframe_latents(aligned.crop, track, keyframe_decode="argmax")
    soft = p.keyframe_latents(aligned.crop, track)
    assert hard.shape == soft.shape and hard.dtype == soft.dtype
    torch.testing.assert_close(hard, p.tokenizer.indices_to_codes(p.keyframes(aligned.crop, track)))
    assert not torch.allclose(hard, soft)
    assert bool((soft.abs() <= hard.abs().amax() + 1e-6).all())  # a mean of codebook vectors (LFQ: +-1 bits)
    again = p.speak(text="Hello.", out=None, crop_only=True, seed=2, keyframe_decode="argmax")
    assert again.frames.shape == res.frames.shape and not np.array_equal(again.frames, res.frames)
    with pytest.raises(Exception, match="unknown keyframe decode"):
        p.keyframe_latents(aligned.crop, track, keyframe_decode="mode")


def test_mandarin_text_runs_through_visual_units(pipe):
    res = pipe.speak(text="和平与发展", lang="zh", out=None, crop_only=True)
    assert len(res.frames) == round(res.track.duration * 25)


def test_bad_inputs_give_messages_and_no_file(bundle, tmp_path, capsys):
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not an image")
    silent = tmp_path / "silent.wav"
    import soundfile as sf

    sf.write(str(silent), np.zeros(16000, np.float32), 16000)
    cases = [
        (["--text", "hello", "--image", str(blank)], "face"),
        (["--text", "hello", "--image", str(corrupt)], "image"),
        (["--text", "   "], "empty"),
        (["--text", "bonjour", "--lang", "fr"], "language"),
        (["--audio", str(silent)], "silent"),
        (["--text", "hello", "-o", str(tmp_path / "missing" / "x.mp4")], "does not exist"),
    ]
    for argv, word in cases:
        out = tmp_path / "out.mp4"
        argv = ["speak", "--checkpoint", str(bundle), "--quiet", *argv]
        if "-o" not in argv:
            argv += ["-o", str(out)]
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, argv
        assert "error:" in err and word in err.lower() and "Traceback" not in err, (argv, err)
        assert not out.exists()
        assert not list(tmp_path.glob(".out.*"))


def test_missing_bundle_is_explained(tmp_path, capsys):
    assert main(["speak", "--text", "hi", "--checkpoint", str(tmp_path), "-o", str(tmp_path / "o.mp4")]) == 2
    assert "pipeline.yaml" in capsys.readouterr().err


def test_mouth_paste_region_keeps_the_rest_of_a_real_photo(pipe):
    """On a real GRID frame (tests/data/grid_s1, CC BY 4.0) only the mouth region changes."""
    import cv2

    from avatarsync.faces.align import crop_mask
    from avatarsync.io import read_video_frames

    frames, _ = read_video_frames(Path(__file__).parent / "data" / "grid_s1" / "video" / "bbal7s.mp4")
    photo = frames[0]
    res = pipe.speak(text="Bob.", image=photo, out=None, paste_region="mouth")
    face = pipe.speak(text="Bob.", image=photo, out=None, paste_region="face")
    _, aligned = pipe.crop(photo)
    h, w = photo.shape[:2]
    region = cv2.warpAffine(crop_mask(aligned.size, 0.1, "mouth").astype(np.float32), aligned.inverse, (w, h)) > 0
    assert region.sum() > 1000
    for f in res.frames:
        assert np.array_equal(f[~region], photo[~region])
    assert any(not np.array_equal(f[~region], photo[~region]) for f in face.frames)  # the whole crop changes
    with pytest.raises(InputError, match="paste region"):
        pipe.speak(text="Bob.", out=None, paste_region="hair")


def test_warp_render_on_a_real_photo_and_its_errors(bundle, tmp_path, capsys):
    """A bundle with a mouth-motion model warps a photo (render auto); one without explains itself."""
    from avatarsync.io import read_video_frames
    from avatarsync.untrained import make_untrained_bundle

    frames, _ = read_video_frames(Path(__file__).parent / "data" / "grid_s1" / "video" / "bbal7s.mp4")
    photo = frames[0]
    with_mouth = Pipeline.from_pretrained(make_untrained_bundle(tmp_path / "m", mouth=True), device="cpu")
    res = with_mouth.speak(text="Bob.", image=photo, out=tmp_path / "w.mp4")
    assert list(res.timings) == ["phonemes", "crop", "motion", "render", "mux"]
    info = probe_mp4(tmp_path / "w.mp4")
    assert info["video_frames"] == len(res.frames) == round(res.track.duration * 25)
    assert abs(info["audio_duration"] - info["video_duration"]) <= 1 / 25
    assert res.frames.shape[1:] == photo.shape
    assert with_mouth.speak(text="Bob.", out=None).timings.keys() >= {"keyframes", "decode"}  # the avatar: tokens
    tokens = with_mouth.speak(text="Bob.", image=photo, out=None, render="tokens")
    assert "keyframes" in tokens.timings
    plain = Pipeline.from_pretrained(bundle, device="cpu")
    with pytest.raises(Exception, match="mouth-motion"):
        plain.speak(text="Bob.", image=photo, out=None, render="warp")
    with pytest.raises(InputError, match="unknown render"):
        plain.speak(text="Bob.", out=None, render="paint")
    import cv2

    cv2.imwrite(str(tmp_path / "p.png"), cv2.cvtColor(photo, cv2.COLOR_RGB2BGR))
    assert main(["speak", "--text", "Bob.", "--image", str(tmp_path / "p.png"), "--checkpoint", str(bundle),
                 "--render", "warp", "-o", str(tmp_path / "x.mp4"), "--quiet"]) == 2
    assert "mouth-motion" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()
