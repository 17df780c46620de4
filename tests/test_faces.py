"""Face landmarks, alignment and paste-back (avatarsync/faces)."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from avatarsync.errors import BackendUnavailable, FaceError, InputError
from avatarsync.faces import (IBUG_68, AlignedFace, FaceLandmarks, GivenLandmarks, LandmarkDetector, MultipleFacesWarning,
                              align_face, alignment_matrix, crop_mask, find_face, get_detector, get_layout,
                              landmarks_from_five, landmarks_from_points, paste_back, PasteBack, select_face,
                              similarity_transform, template_points, transform_points)
from avatarsync.faces.synthetic import toy_face


def smooth_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour blobs (low-frequency noise), uint8 RGB."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (h // 16 + 2, w // 16 + 2, 3)).astype(np.float32)
    return np.clip(cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def five_points(cx: float, cy: float, iod: float, angle: float = 0.0) -> np.ndarray:
    canon = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, 0.5], [-0.4, 1.0], [0.4, 1.0]]) * iod
    c, s = np.cos(angle), np.sin(angle)
    return canon @ np.array([[c, s], [-s, c]]) + [cx, cy]


# -- transforms ---------------------------------------------------------------------------------
def test_similarity_transform_recovers_a_known_similarity():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 100, (6, 2))
    ang, scale, t = 0.3, 1.7, np.array([5.0, -12.0])
    rot = scale * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    dst = src @ rot.T + t
    m = similarity_transform(src, dst)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(m[:, 2], t, atol=1e-9)


def test_alignment_maps_eyes_to_template_and_inverse_is_inverse():
    face = landmarks_from_five(five_points(200, 150, 60, angle=0.2))
    m = alignment_matrix(face, 128)
    eyes = transform_points(np.stack([face.left_eye, face.right_eye]), m)
    tpl = template_points(128)
    # eyes are level and symmetric about the crop centre after alignment
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1e-6
    assert abs((eyes[0, 0] + eyes[1, 0]) / 2 - 64) < 1e-6
    assert abs(eyes[0, 1] - tpl[0, 1]) < 3.0
    aligned = align_face(np.zeros((300, 400, 3), np.uint8), face, 128)
    full = np.vstack([aligned.matrix, [0, 0, 1]]) @ np.vstack([aligned.inverse, [0, 0, 1]])
    np.testing.assert_allclose(full, np.eye(3), atol=1e-9)
    assert aligned.crop.shape == (128, 128, 3) and aligned.crop.dtype == np.uint8
    assert aligned.source_shape == (300, 400)


@pytest.mark.parametrize("size", [64, 128, 256])
def test_output_size_is_configurable_and_face_scales_with_it(size):
    img, five = toy_face(np.random.default_rng(0), 200)
    aligned = align_face(img, landmarks_from_five(five), size=size)
    assert aligned.crop.shape == (size, size, 3)
    iod = np.linalg.norm(aligned.landmarks.right_eye - aligned.landmarks.left_eye)
    assert 0.2 * size < iod < 0.32 * size


def test_crop_then_paste_back_returns_the_face_region():
    img = smooth_image(240, 320, seed=3)
    face = landmarks_from_five(five_points(150, 110, 38, angle=-0.15))
    aligned = align_face(img, face, 128)
    out = paste_back(img, aligned, aligned.crop, feather=0.1)
    inside = cv2.warpAffine(crop_mask(128, 0.1).astype(np.float32), aligned.inverse, (320, 240)) > 0.99
    assert inside.sum() > 3000  # the face region is big
    err = np.abs(out.astype(int) - img.astype(int))[inside]
    assert err.mean() < 1.5 and err.max() <= 12
    # outside the mask the portrait is untouched
    outside = cv2.warpAffine(np.ones((128, 128), np.float32), aligned.inverse, (320, 240)) == 0
    assert np.array_equal(out[outside], img[outside])


def test_paste_back_puts_new_content_inside_with_a_soft_edge():
    img = np.full((200, 200, 3), 10, np.uint8)
    face = landmarks_from_five(five_points(100, 90, 40))
    aligned = align_face(img, face, 64)
    out = paste_back(img, aligned, np.full((64, 64, 3), 250, np.uint8), feather=0.2)
    centre = transform_points(np.array([[32.0, 32.0]]), aligned.inverse)[0].round().astype(int)
    assert out[centre[1], centre[0]].min() >= 245
    assert out[0, 0].max() == 10
    # along a row from the centre to the crop edge values fall monotonically (soft mask)
    row = out[centre[1], centre[0]:, 0].astype(int)
    assert np.all(np.diff(row) <= 1) and len(np.unique(row)) > 5
    # a float crop in [0, 1] is accepted, and a crop of another size is resized
    out2 = paste_back(img, aligned, np.ones((32, 32, 3), np.float32))
    assert out2[centre[1], centre[0]].min() >= 250


def _paste_whole_image(portrait, aligned, crop, feather):
    """Reference: warp and blend over the whole portrait."""
    h, w = portrait.shape[:2]
    warped = cv2.warpAffine(crop, aligned.inverse, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    soft = cv2.warpAffine(crop_mask(aligned.size, feather).astype(np.float32), aligned.inverse, (w, h),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)[..., None]
    out = soft * warped.astype(np.float32) + (1.0 - soft) * portrait.astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("centre", [(150, 110), (20, 25), (310, 230)])  # inside, cut by two borders each
def test_paste_back_box_equals_whole_image_blend(centre):
    img = smooth_image(240, 320, seed=4)
    aligned = align_face(img, landmarks_from_five(five_points(*centre, 38, angle=0.2)), 128)
    paste = PasteBack(img, aligned, feather=0.1)
    for seed in range(3):
        crop = smooth_image(128, 128, seed=10 + seed)  # OpenCV samples at 1/32 px: a shifted origin may round
        got, want = paste(crop), _paste_whole_image(img, aligned, crop, 0.1)  # a coordinate the other way
        assert np.abs(got.astype(int) - want.astype(int)).max() <= 2
        assert np.array_equal(paste_back(img, aligned, crop), got)


def test_paste_back_refuses_another_portrait_size():
    aligned = align_face(np.zeros((100, 100, 3), np.uint8), landmarks_from_five(five_points(50, 45, 20)), 32)
    with pytest.raises(InputError):
        paste_back(np.zeros((120, 100, 3), np.uint8), aligned, aligned.crop)


def test_mask_shapes():
    rect, ell = crop_mask(32, 0.1, "rect"), crop_mask(32, 0.1, "ellipse")
    assert rect[16, 16] == 1.0 and rect[0, 0] < 0.2 and ell[0, 0] == 0.0 and ell[16, 16] == 1.0
    with pytest.raises(InputError):
        crop_mask(32, 0.1, "star")


# -- detection and selection --------------------------------------------------------------------
def test_given_backend_and_largest_face_selection_warns():
    small = landmarks_from_five(five_points(50, 50, 10))
    big = landmarks_from_five(five_points(200, 120, 40))
    det = get_detector("given", faces=[small, big])
    assert isinstance(det, LandmarkDetector)
    with pytest.warns(MultipleFacesWarning, match="2 faces"):
        chosen = find_face(np.zeros((300, 300, 3), np.uint8), det)
    assert chosen is big
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select_face([small]) is small  # one face: no warning


def test_no_face_raises_face_error():
    with pytest.raises(FaceError, match="no face"):
        find_face(np.zeros((64, 64, 3), np.uint8), GivenLandmarks([]))


def test_dense_layouts_reduce_to_five_points():
    pts = np.zeros((68, 2))
    pts[36:42] = [10, 20]
    pts[42:48] = [30, 20]
    pts[48], pts[54], pts[30] = [12, 40], [28, 40], [20, 30]
    f = landmarks_from_points(pts, IBUG_68)
    np.testing.assert_allclose(f.left_eye, [10, 20])
    np.testing.assert_allclose(f.mouth_right, [28, 40])
    assert get_layout("wflw98").num_points == 98
    with pytest.raises(InputError):
        landmarks_from_points(np.zeros((10, 2)), "ibug68")
    with pytest.raises(InputError):
        get_layout("no-such-layout")
    given = GivenLandmarks(pts[None], layout="ibug68").detect(np.zeros((8, 8, 3), np.uint8))
    assert len(given) == 1 and isinstance(given[0], FaceLandmarks)


def test_unknown_backend_is_refused():
    with pytest.raises(InputError):
        get_detector("dlib-magic")


# -- mmpose (optional): a fake mmpose.apis module --------------------------------------------
class _FakeInstances:
    def __init__(self, kpts):
        self.keypoints = kpts[None]
        self.keypoint_scores = np.full((1, len(kpts)), 0.9)


class _FakeSample:
    def __init__(self, kpts):
        self.pred_instances = _FakeInstances(kpts)


def test_mmpose_backend_with_a_fake_module(tmp_path, monkeypatch):
    import sys
    import types

    calls = {}

    def init_model(config, checkpoint, device="cpu"):
        calls["init"] = (config, checkpoint, device)
        return "model"

    def inference_topdown(model, img, bboxes=None, bbox_format="xyxy"):
        calls["boxes"] = bboxes
        out = []
        for x0, y0, x1, y1 in bboxes:
            pts = np.zeros((98, 2))
            cx, cy, s = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0)
            pts[:] = [cx, cy]
            pts[60:68] = [cx - 0.2 * s, cy - 0.1 * s]
            pts[68:76] = [cx + 0.2 * s, cy - 0.1 * s]
            pts[76], pts[82] = [cx - 0.15 * s, cy + 0.2 * s], [cx + 0.15 * s, cy + 0.2 * s]
            out.append(_FakeSample(pts))
        return out

    apis = types.SimpleNamespace(init_model=init_model, inference_topdown=inference_topdown)
    monkeypatch.setitem(sys.modules, "mmpose", types.SimpleNamespace(apis=apis))
    monkeypatch.setitem(sys.modules, "mmpose.apis", apis)
    cfg, ckpt = tmp_path / "face.py", tmp_path / "face.pth"
    cfg.write_text("# config")
    ckpt.write_bytes(b"0")
    det = get_detector("mmpose", config=str(cfg), checkpoint=str(ckpt),
                       box_detector=lambda img: [(10, 10, 50, 50), (100, 20, 200, 120)])
    faces = det.detect(np.zeros((200, 240, 3), np.uint8))
    assert calls["init"] == (str(cfg), str(ckpt), "cpu") and calls["boxes"].shape == (2, 4)
    assert len(faces) == 2 and abs(faces[1].score - 0.9) < 1e-9
    np.testing.assert_allclose(faces[1].left_eye, [130, 60])
    with pytest.warns(MultipleFacesWarning):
        assert find_face(np.zeros((200, 240, 3), np.uint8), det) is not None


def test_mmpose_backend_without_files_is_unavailable(tmp_path):
    with pytest.raises(BackendUnavailable):
        get_detector("mmpose", config=str(tmp_path / "missing.py"), checkpoint=str(tmp_path / "missing.pth"))


# -- mediapipe (default backend, offline models in the wheel) ----------------------------------
def _sample_photo() -> np.ndarray | None:
    try:
        import matplotlib
    except ImportError:
        return None
    import os

    path = os.path.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")
    img = cv2.imread(path)
    return None if img is None else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def test_mediapipe_finds_no_face_in_a_blank_image():
    pytest.importorskip("mediapipe")
    with pytest.raises(FaceError):
        find_face(np.full((128, 128, 3), 128, np.uint8), "mediapipe")


def test_mediapipe_on_a_photo_picks_the_largest_of_two_faces():
    pytest.importorskip("mediapipe")
    photo = _sample_photo()
    if photo is None:
        pytest.skip("no sample photo (matplotlib's grace_hopper.jpg) available")
    det = get_detector("mediapipe")
    face = find_face(photo, det)
    assert face.left_eye[0] < face.right_eye[0] < face.bbox[2]
    assert face.mouth_left[1] > face.left_eye[1] + 40  # mouth below the eyes
    aligned = align_face(photo, face, 128)
    assert isinstance(aligned, AlignedFace)
    eyes = np.stack([aligned.landmarks.left_eye, aligned.landmarks.right_eye])
    assert np.abs(eyes - template_points(128)[:2]).max() < 8
    small = cv2.resize(photo, None, fx=0.5, fy=0.5)
    two = np.zeros((photo.shape[0], photo.shape[1] + small.shape[1], 3), np.uint8)
    two[:, : photo.shape[1]] = photo
    two[: small.shape[0], photo.shape[1]:] = small
    with pytest.warns(MultipleFacesWarning):
        chosen = find_face(two, det)
    assert chosen.bbox[2] <= photo.shape[1] + 5  # the big face, on the left


def test_mouth_region_paste_changes_only_the_lower_face_and_matches_colour():
    from avatarsync.faces.align import MOUTH_REGION

    img = smooth_image(480, 640, seed=5)
    aligned = align_face(img, landmarks_from_five(five_points(320, 220, 80, angle=0.1)), 128)
    mouth = crop_mask(128, 0.1, "mouth")
    (cx, cy), _ = MOUTH_REGION
    assert mouth[int(cy * 128), int(cx * 128)] == 1.0  # the mouth is inside
    assert mouth[int(0.39 * 128), int(0.37 * 128)] == 0.0  # an eye is not
    assert mouth[int(0.39 * 128), :].max() == 0.0 and mouth[:, 2].max() == 0.0
    # a crop that is the portrait's own plus a colour cast: the cast is taken out at the seam
    cast = np.clip(aligned.crop.astype(int) + [30, -20, 10], 0, 255).astype(np.uint8)
    out = PasteBack(img, aligned, mask="mouth", match_colour=True)(cast)
    plain = PasteBack(img, aligned, mask="mouth")(cast)
    region = cv2.warpAffine(mouth.astype(np.float32), aligned.inverse, (640, 480)) > 0
    assert np.array_equal(out[~region], img[~region])  # everything else is the portrait's own pixels
    err_matched = np.abs(out.astype(int) - img.astype(int))[region].mean()
    err_plain = np.abs(plain.astype(int) - img.astype(int))[region].mean()
    assert err_matched < 3 < err_plain
    with pytest.raises(InputError, match="mouth"):
        crop_mask(32, 0.1, "star")
