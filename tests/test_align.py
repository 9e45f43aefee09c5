"""Alignment: the eyes come out level whatever the head tilt."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from fer_core.align import crop_face, eye_angle
from fer_core.detect import FaceDetector


@pytest.mark.parametrize("tilt", [-20, 15])
def test_aligned_crop_has_level_eyes(astronaut, tilt):
    det = FaceDetector()
    img = Image.fromarray(astronaut).rotate(tilt, resample=Image.Resampling.BICUBIC, center=(224, 118))
    (face,) = det.detect(img)
    assert abs(math.degrees(eye_angle(face.landmarks)) + tilt) < 6  # the tilt is seen
    crop = crop_face(img, face.box, face.landmarks, margin=0.6, align=True)
    again = det.detect(crop, min_face_size=20)
    assert len(again) == 1
    assert abs(math.degrees(eye_angle(again[0].landmarks))) < 5  # and removed
    unaligned = crop_face(img, face.box, face.landmarks, margin=0.6, align=False)
    (face_u,) = det.detect(unaligned, min_face_size=20)
    assert abs(math.degrees(eye_angle(face_u.landmarks)) + tilt) < 6


def test_crop_geometry(astronaut):
    img = Image.fromarray(astronaut)
    crop = crop_face(img, (100, 100, 200, 150), margin=0.0, align=False)
    assert crop.size == (100, 100)
    # without rotation the crop is the image region centred on the box
    region = np.asarray(img.crop((100, 75, 200, 175)), dtype=float)
    assert np.abs(np.asarray(crop, dtype=float) - region).mean() < 3
    assert crop_face(img, (0, 0, 2000, 2000), align=False).size == (256, 256)  # capped
    # a negative margin cuts inside the box, still centred on it
    tight = crop_face(img, (100, 100, 200, 150), margin=-0.2, align=False)
    assert tight.size == (80, 80)
    inner = np.asarray(img.crop((110, 85, 190, 165)), dtype=float)
    assert np.abs(np.asarray(tight, dtype=float) - inner).mean() < 3
    with pytest.raises(ValueError):
        crop_face(img, (10, 10, 5, 20))
    with pytest.raises(ValueError):
        crop_face(img, (0, 0, 10, 10), margin=-1)
