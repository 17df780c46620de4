"""Articulation: phoneme track -> per-frame face states (coarticulation, closures, blinks, pose)."""

from __future__ import annotations

import numpy as np
import pytest

from avatarsync.data.articulation import ArticulationError, FrameState, articulate, truth_arrays
from avatarsync.errors import InputError
from avatarsync.phonemes.track import PhonemeTrack, PhonemeUnit
from avatarsync.phonemes.visemes import VISEME_INDEX, VISEMES

FPS = 25.0


def make_track(spec: list[tuple[str, float]], lead: float = 0.0) -> PhonemeTrack:
    """Track from (viseme, duration) pairs; silence is the symbol 'sil'."""
    t, units = lead, []
    for vis, d in spec:
        units.append(PhonemeUnit("sil" if vis == "rest" else vis[:2], t, t + d, vis))
        t += d
    return PhonemeTrack(units=units, lang="en", duration=t)


def frames_of(track: PhonemeTrack) -> int:
    return int(np.ceil(track.duration * FPS))


def test_same_seed_same_states_and_different_seed_different_motion():
    track = make_track([("rest", 0.3), ("open_vowel", 0.2), ("bilabial", 0.08), ("rounded_vowel", 0.25), ("rest", 2.0)])
    n = frames_of(track)
    a = truth_arrays(articulate(track, n, FPS, seed=3))
    b = truth_arrays(articulate(track, n, FPS, seed=3))
    c = truth_arrays(articulate(track, n, FPS, seed=4))
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert not np.allclose(a["yaw"], c["yaw"])
    np.testing.assert_array_equal(a["viseme"], c["viseme"])  # the mouth class follows the track, not the seed


def test_truth_arrays_keys_dtypes_shapes():
    track = make_track([("rest", 0.2), ("mid_vowel", 0.3), ("rest", 0.3)])
    states = articulate(track, 20, FPS, seed=0)
    assert len(states) == 20 and all(isinstance(s, FrameState) for s in states)
    arr = truth_arrays(states)
    for key in ("viseme", "openness", "width", "rounding", "blink", "yaw", "pitch", "roll", "tx", "ty", "smile"):
        assert arr[key].shape == (20,), key
    assert arr["viseme"].dtype == np.int64
    assert all(arr[k].dtype == np.float32 for k in arr if k != "viseme")
    assert articulate(track, 0, FPS) == []


def test_silence_gives_a_mouth_at_rest():
    track = make_track([("rest", 3.0)])
    arr = truth_arrays(articulate(track, frames_of(track), FPS, seed=1))
    assert (arr["viseme"] == VISEME_INDEX["rest"]).all()
    assert arr["openness"].max() < 1e-3
    # a long pause inside speech also returns to rest
    track = make_track([("open_vowel", 0.3), ("rest", 1.0), ("open_vowel", 0.3)])
    arr = truth_arrays(articulate(track, frames_of(track), FPS, seed=1))
    mid = slice(int(0.6 * FPS), int(1.0 * FPS))  # 0.3 s into the pause .. 0.3 s before its end
    assert arr["openness"][mid].max() < 0.02
    assert (arr["viseme"][mid] == VISEME_INDEX["rest"]).all()
    # frames past the end of the track are at rest too
    arr = truth_arrays(articulate(make_track([("open_vowel", 0.4)]), 40, FPS, seed=1))
    assert arr["openness"][-10:].max() < 0.02


@pytest.mark.parametrize("dur", [0.02, 0.035, 0.05, 0.08])
@pytest.mark.parametrize("lead", [0.0, 0.013, 0.027])
def test_short_bilabial_closes_the_lips(dur, lead):
    track = make_track([("rest", 0.4), ("open_vowel", 0.16), ("bilabial", dur), ("open_vowel", 0.16), ("rest", 0.4)],
                       lead=lead)
    arr = truth_arrays(articulate(track, frames_of(track), FPS, seed=0))
    p = track.units[2]
    k = int(np.floor((p.start + p.end) / 2 * FPS))
    near = slice(max(0, k - 1), k + 2)
    assert arr["openness"][near].min() <= 0.03
    closed = near.start + int(np.argmin(arr["openness"][near]))
    assert arr["viseme"][closed] == VISEME_INDEX["bilabial"]
    assert arr["lip_contact"][closed] >= 0.9
    # the vowels around it still open the jaw
    assert arr["openness"][: k].max() > 0.4 and arr["openness"][k + 1:].max() > 0.4


def test_long_vowels_reach_their_targets_and_labiodental_shows_teeth():
    track = make_track([("rest", 0.3), ("open_vowel", 0.32), ("labiodental", 0.1), ("rounded_vowel", 0.32),
                        ("rest", 0.3)])
    states = articulate(track, frames_of(track), FPS, seed=0)
    arr = truth_arrays(states)
    vis = arr["viseme"]
    target = VISEMES[VISEME_INDEX["open_vowel"]].openness
    assert arr["openness"][vis == VISEME_INDEX["open_vowel"]].max() > 0.8 * target
    rounded = vis == VISEME_INDEX["rounded_vowel"]
    assert arr["rounding"][rounded].max() > 0.85 and arr["width"][rounded].min() < 0.3
    lab = vis == VISEME_INDEX["labiodental"]
    assert lab.any() and arr["teeth"][lab].max() >= 0.7 and arr["openness"][lab].max() < 0.25


def test_coarticulation_is_smooth_and_anticipates_rounding():
    track = make_track([("rest", 0.3), ("spread_vowel", 0.2), ("alveolar", 0.08), ("alveolar", 0.08),
                        ("rounded_vowel", 0.25), ("rest", 0.4)])
    arr = truth_arrays(articulate(track, frames_of(track), FPS, seed=0))
    # no jumps between frames (the only fast motion allowed is a closure, none here)
    assert np.abs(np.diff(arr["openness"])).max() < 0.35
    assert np.abs(np.diff(arr["width"])).max() < 0.35
    # lips start rounding during the consonants, over 100 ms before the rounded vowel
    start = track.units[4].start
    times = (np.arange(len(arr["rounding"])) + 0.5) / FPS
    k = int(np.flatnonzero((times > start - 0.14) & (times < start - 0.1))[0])
    assert arr["viseme"][k] == VISEME_INDEX["alveolar"]
    assert arr["rounding"][k] > 0.25


def test_blinks_every_few_seconds_and_short():
    track = make_track([("rest", 40.0)])
    arr = truth_arrays(articulate(track, frames_of(track), FPS, seed=7))
    b = arr["blink"]
    assert b.min() >= 0 and b.max() <= 1
    onsets = np.flatnonzero((b[1:] > 0.3) & (b[:-1] <= 0.3))
    assert 40 / 6 - 1 <= len(onsets) <= 40 / 2 + 4
    runs = np.diff(np.flatnonzero(np.diff(np.concatenate([[0], (b > 0.05).astype(int), [0]]))))[::2]
    assert runs.max() <= 6  # <= 240 ms above 5 % closed
    assert np.mean(b > 0.05) < 0.12  # eyes open most of the time


def test_head_motion_small_smooth_and_alive():
    track = make_track([("rest", 1.0), ("mid_vowel", 0.3), ("alveolar", 0.1), ("open_vowel", 0.3), ("rest", 8.0)])
    arr = truth_arrays(articulate(track, frames_of(track), FPS, seed=11))
    for key, lim in (("yaw", 6), ("pitch", 5), ("roll", 4), ("tx", 3), ("ty", 2)):
        v = arr[key]
        assert np.abs(v).max() <= lim + 1e-6, key
        assert v.std() > 0.1, f"{key} never moves"
        assert np.abs(np.diff(v)).max() < 0.6, f"{key} jumps"
    assert 0 <= arr["smile"].min() and arr["smile"].max() <= 1
    assert arr["smile"].std() > 0.005  # slow expression drift


def test_bad_arguments_raise_clear_errors():
    track = make_track([("rest", 1.0)])
    with pytest.raises(ArticulationError):
        articulate(track, -1)
    with pytest.raises(InputError):
        articulate(track, 10, fps=0.0)
    bad = PhonemeTrack(units=[PhonemeUnit("x", 0.0, 0.2, "nonsense")], lang="en", duration=0.2)
    with pytest.raises(ArticulationError, match="unknown viseme"):
        articulate(bad, 5)


def test_for_viseme_builds_the_class_targets():
    st = FrameState.for_viseme("rounded_vowel", blink=0.5)
    v = VISEMES[VISEME_INDEX["rounded_vowel"]]
    assert (st.openness, st.width, st.rounding, st.viseme, st.blink) == (v.openness, v.width, v.rounding,
                                                                          VISEME_INDEX["rounded_vowel"], 0.5)
