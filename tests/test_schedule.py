"""Frame schedule: length to the frame, one pair per frame, tau in [0, 1], holds at the ends."""

from __future__ import annotations

import numpy as np
import pytest

from avatarsync.interpolation.schedule import (
    PhoneTable,
    ScheduleError,
    frame_schedule,
    keyframe_frames,
    keyframe_times,
    n_output_frames,
    track_schedule,
)
from avatarsync.phonemes.track import PhonemeTrack, PhonemeUnit


@pytest.mark.parametrize("duration", [0.28, 1.0, 1.37, 2.013, 3.333, 7.77, 0.91, 12.345])
def test_length_equals_rounded_duration(duration):
    s = frame_schedule([0.1, 0.2], duration, fps=25)
    assert s.n_frames == round(duration * 25)
    assert s.times[0] == 0.02 and np.allclose(np.diff(s.times), 1 / 25)  # frame centres
    assert frame_schedule([0.1, 0.2], duration, fps=25, phase=0.0).times[0] == 0.0


def test_length_other_fps_and_half_frames():
    assert n_output_frames(1.37, 30) == round(1.37 * 30) == 41
    assert n_output_frames(0.1, 25) == 3 and n_output_frames(0.9, 25) == 23  # x.5 frames round half up (not to even)
    assert n_output_frames(0.06, 25) == 2  # 1.5 (float 1.4999999999999998) still rounds up
    with pytest.raises(ScheduleError):
        n_output_frames(0.01, 25)  # a quarter of a frame
    with pytest.raises(ScheduleError):
        n_output_frames(-1.0, 25)


def test_every_frame_in_exactly_one_pair_with_tau_in_unit_interval():
    rng = np.random.default_rng(0)
    kt = np.sort(rng.uniform(0.2, 2.8, size=9))
    s = frame_schedule(kt, 3.1, fps=25)
    k = len(kt)
    assert s.left.shape == s.right.shape == s.tau.shape == (s.n_frames,)
    assert np.all(s.right == s.left + 1) and s.left.min() >= 0 and s.right.max() <= k - 1
    assert np.all((s.tau >= 0) & (s.tau <= 1))
    inside = ~s.hold
    t = s.times[inside]
    # the pair brackets the frame time and tau is its relative position
    assert np.all(kt[s.left[inside]] <= t) and np.all(t < kt[s.right[inside]])
    np.testing.assert_allclose(kt[s.left[inside]] + s.tau[inside] * s.interval[inside], t, atol=1e-12)
    # pair indices are monotone in time: frames of a pair are contiguous
    assert np.all(np.diff(s.left) >= 0)


def test_holds_before_first_and_after_last_keyframe():
    kt = [0.33, 0.61, 1.02]
    s = frame_schedule(kt, 1.5, fps=25)
    before = s.times < 0.33
    after = s.times >= 1.02
    assert before.sum() == 8 and after.sum() == 13  # frame centres 0.02, 0.06, ...: 8 before 0.33, 13 from 1.02
    assert np.all(s.left[before] == 0) and np.all(s.tau[before] == 0.0)
    assert np.all(s.left[after] == 1) and np.all(s.tau[after] == 1.0)
    np.testing.assert_array_equal(s.hold, before | after)
    assert np.all(s.is_keyframe_copy()[s.hold])


def test_single_keyframe_and_repeated_times():
    s = frame_schedule([0.5], 1.0)
    assert s.n_frames == 25 and np.all(s.left == 0) and np.all(s.right == 0) and np.all(s.tau == 0)
    s = frame_schedule([0.2, 0.5, 0.5, 0.9], 1.0)  # a zero-length pair gets no frames
    assert not np.any(s.left == 1)
    assert np.all((s.tau >= 0) & (s.tau <= 1))


def test_bad_keyframes_raise():
    with pytest.raises(ScheduleError, match="non-decreasing"):
        frame_schedule([0.5, 0.2], 1.0)
    with pytest.raises(ScheduleError):
        frame_schedule([], 1.0)
    with pytest.raises(ScheduleError):
        frame_schedule([0.1, float("nan")], 1.0)


def _track():
    units = [PhonemeUnit("sil", 0.0, 0.2, "rest"), PhonemeUnit("m", 0.2, 0.3, "bilabial"),
             PhonemeUnit("a", 0.3, 0.6, "open_vowel"), PhonemeUnit("sil", 0.6, 0.97, "rest")]
    return PhonemeTrack(units=units, lang="en", duration=0.97)


def test_keyframe_frames_snap_to_nearest_frame_centre():
    np.testing.assert_array_equal(keyframe_frames(np.array([0.0, 0.021, 0.05, 0.061, 5.0]), 10), [0, 1, 9])


def test_track_schedule_keyframes_at_unit_centres():
    tr = _track()
    np.testing.assert_allclose(keyframe_times(tr), [0.1, 0.25, 0.45, 0.785])
    s = track_schedule(tr, fps=25)
    assert s.n_frames == 24  # 0.97 * 25 = 24.25


def test_phone_window_in_tau_units():
    tr = _track()
    table = PhoneTable.from_track(tr)
    ids, spans = table.window(0.25, 0.45, max_phones=4, context=0)  # between the m and a centres
    assert ids.tolist()[:2] == [table.ids[1], table.ids[2]] and ids[2:].tolist() == [0, 0]
    np.testing.assert_allclose(spans[0], [-0.25, 0.25], atol=1e-6)  # m: 0.2..0.3 -> tau -0.25..0.25
    np.testing.assert_allclose(spans[1], [0.25, 1.75], atol=1e-6)
    ids, spans = table.window(0.25, 0.45, max_phones=5)  # one neighbour each side
    assert ids.tolist() == list(table.ids) + [0]
    np.testing.assert_allclose(spans[0], [-1.0, -0.25], atol=1e-6)  # sil 0..0.2 -> -1.25 clipped to -1
    ids, _ = table.window(0.25, 0.45, max_phones=2)  # too many: keep those nearest the middle
    assert ids.tolist() == [table.ids[1], table.ids[2]]
