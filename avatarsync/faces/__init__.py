"""Face landmarks (mediapipe / mmpose / given), aligned crops and pasting generated faces back.

    face = find_face(portrait)                      # FaceError if none; largest + warning if several
    aligned = align_face(portrait, face, size=128)  # crop + 2x3 matrix / inverse
    out = paste_back(portrait, aligned, new_crop)   # soft-masked composite
"""

from .align import (AlignedFace, PasteBack, align_face, alignment_matrix, crop_mask, invert_affine, paste_back,
                    similarity_transform, template_points, transform_points, warp_to_crop)
from .backends import GivenLandmarks, MediaPipeDetector, MMPoseDetector, as_rgb_uint8
from .detect import BACKENDS, MultipleFacesWarning, find_face, get_detector, select_face
from .landmarks import (IBUG_68, MEDIAPIPE_478, WFLW_98, FaceLandmarks, LandmarkDetector, LandmarkLayout, get_layout,
                        landmarks_from_five, landmarks_from_points, register_layout)

__all__ = [
    "AlignedFace", "PasteBack", "align_face", "alignment_matrix", "crop_mask", "invert_affine", "paste_back", "similarity_transform",
    "template_points", "transform_points", "warp_to_crop", "GivenLandmarks", "MediaPipeDetector", "MMPoseDetector",
    "as_rgb_uint8", "BACKENDS", "MultipleFacesWarning", "find_face", "get_detector", "select_face", "IBUG_68",
    "MEDIAPIPE_478", "WFLW_98", "FaceLandmarks", "LandmarkDetector", "LandmarkLayout", "get_layout",
    "landmarks_from_five", "landmarks_from_points", "register_layout",
]
