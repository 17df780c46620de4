"""Mouth motion for real photos: phonemes -> per-frame mouth shape -> the portrait's own mouth, moved.

- ``shape``: the mouth-shape parameters measured on mediapipe's 478 landmarks (lip gap, mouth width).
- ``motion``: ``MouthMotion``, a small temporal convolution over the phoneme track that predicts
  those parameters at the video's frame rate (trained on real video: ``avatarsync train mouth``).
- ``interior``: the inner mouth (teeth, tongue, dark cavity) as real video shows it, in mouth
  coordinates, learned from prepared footage.
- ``warp``: ``MouthWarp`` moves the portrait's lips and jaw to each frame's shape at the portrait's
  own resolution and fills the opened lips with the interior; every other pixel is the portrait's.
"""
