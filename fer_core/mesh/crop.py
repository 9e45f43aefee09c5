"""FaceMesh's input crop: MediaPipe's face ROI from a face detection, cut out at 192x192 (numpy + Pillow).

MediaPipe's face-detection -> face-landmark graph (``face_detection_front_detection_to_roi.pbtxt``):

* ``DetectionsToRectsCalculator``: rect centre = the detection box's centre, rect size = the box's,
  rotation = ``target - atan2(-(y1 - y0), x1 - x0)`` (keypoint 0 -> keypoint 1, the two eyes; target
  angle 0), normalised to [-pi, pi);
* ``RectTransformationCalculator``: ``square_long`` (both sides = the longer side, in pixels), then
  ``scale_x = scale_y = 1.5``; no shift;
* ``ImageToTensorCalculator``: the rotated square -> 192x192 RGB in [0, 1], corners to corners,
  bilinear, border pixels replicated;
* ``LandmarkProjectionCalculator``: crop point ``(u, v)`` -> ``centre + R(rotation) ((u, v) / 192 - 0.5) * size``.

Here the box and the eyes are MTCNN's (:class:`fer_core.detect.Detection`) instead of BlazeFace's. An MTCNN
box spans about brow to chin and is taller than wide (about 1.3 : 1), while BlazeFace's is square, so the square
of its longer side is larger than BlazeFace's box and the same 1.5 makes the face too small in the crop. The
scale here is measured instead: MediaPipe's own steady state, the ROI it derives from the previous mesh
(``face_landmark_landmarks_to_roi.pbtxt``: 1.5 x the mesh's bounding square), is 1.367 x the MTCNN box's longer
side when the mesh is computed from a 1.4 ROI and 1.416 x from a 1.5 ROI (median over 21 faces: the astronaut
and FER+ faces); the fixed point is about 1.33, and the mesh's eye centres lie nearest MTCNN's eyes around
1.3-1.35 (mean 0.056-0.059 of the eye distance, 0.074 at 1.5). Hence :data:`ROI_SCALE` = 1.35, centred on the
box (the mesh's centre sits only 0.03 box heights lower), rotated by the eye line as MediaPipe does. Presence is
>= 0.99 on all of those faces at 1.3-1.5 except a half profile cut by its crop's edge (0.91 at 1.35).

Coordinates: image pixels in Pillow's continuous frame (pixel ``(i, j)`` covers ``[i, i+1) x [j, j+1)``,
x right, y down); detections are read in the same frame. Crop pixels likewise, 0..192.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np
from PIL import Image


class FaceBox(Protocol):
    """A detected face as FaceMesh needs it (:class:`fer_core.detect.Detection` is one): ``box``
    ``(x1, y1, x2, y2)`` and ``landmarks`` ``(5, 2)`` whose rows 0 and 1 are the eyes, image pixels.
    A Protocol, so this package does not import the detector (which imports it)."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray

#: Side of FaceMesh's square input crop, pixels.
CROP_SIZE: int = 192
#: ROI side / longer side of the detection box (MediaPipe: 1.5 of BlazeFace's box).
ROI_SCALE: float = 1.35


def _normalize_radians(angle: float) -> float:
    """``angle`` wrapped to [-pi, pi) (MediaPipe's ``NormalizeRadians``)."""
    return angle - 2 * math.pi * math.floor((angle + math.pi) / (2 * math.pi))


def face_rois(detections: Sequence[FaceBox], scale: float = ROI_SCALE) -> np.ndarray:
    """MediaPipe's face ROI (``DetectionsToRects`` + ``RectTransformation``) of each detection.

    Args:
        detections: faces with ``box`` ``(x1, y1, x2, y2)`` and ``landmarks`` (5, 2) whose rows 0 and 1 are
            the image-left and image-right eyes (:class:`fer_core.detect.Detection`), image pixels.
        scale: ROI side / the box's longer side (> 0).

    Returns:
        float32 ``(N, 4)``: ``(cx, cy, size, angle)``: centre and side in image pixels, rotation in
        radians in [-pi, pi) (positive: the eye line descends to the right, clockwise on screen).

    Raises:
        ValueError: ``scale`` is not positive.
    """
    if not scale > 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    rois = np.zeros((len(detections), 4), dtype=np.float32)
    for i, det in enumerate(detections):
        x1, y1, x2, y2 = (float(v) for v in det.box)
        (ex0, ey0), (ex1, ey1) = np.asarray(det.landmarks, dtype=np.float64)[:2]
        angle = _normalize_radians(0.0 - math.atan2(-(ey1 - ey0), ex1 - ex0))
        rois[i] = ((x1 + x2) / 2, (y1 + y2) / 2, scale * max(x2 - x1, y2 - y1), angle)
    return rois


def roi_transforms(rois: np.ndarray) -> np.ndarray:
    """Affine maps crop pixel ``(u, v, 1)`` -> image pixel ``(x, y)`` of each ROI.

    Args:
        rois: float ``(N, 4)`` from :func:`face_rois`.

    Returns:
        float32 ``(N, 2, 3)``: ``[[k cos, -k sin, tx], [k sin, k cos, ty]]`` with ``k = size / 192``; the
        crop's corners go to the rotated square's corners, its centre (96, 96) to the ROI's centre.
    """
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 4)
    cx, cy, size, angle = rois.T
    k, cos, sin = size / CROP_SIZE, np.cos(angle), np.sin(angle)
    half = CROP_SIZE / 2
    out = np.empty((len(rois), 2, 3), dtype=np.float64)
    out[:, 0] = np.stack([k * cos, -k * sin, cx - k * half * (cos - sin)], axis=1)
    out[:, 1] = np.stack([k * sin, k * cos, cy - k * half * (sin + cos)], axis=1)
    return out.astype(np.float32)


def crop_rois(image: Image.Image, rois: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cut each ROI out of ``image`` as FaceMesh's 192x192 input (MediaPipe's ``ImageToTensor``).

    Bilinear (Pillow ``Image.transform`` AFFINE, no antialiasing, as MediaPipe's warp); pixels outside
    the image repeat its border pixels (MediaPipe's default ``BORDER_REPLICATE``).

    Args:
        image: ``PIL.Image`` in mode ``"RGB"``.
        rois: float ``(N, 4)`` from :func:`face_rois`.

    Returns:
        ``(crops, transforms)``: float32 ``(N, 192, 192, 3)`` RGB in [0, 1], and float32 ``(N, 2, 3)``
        crop pixel -> image pixel maps (:func:`roi_transforms`).

    Raises:
        ValueError: ``image`` is not RGB.
    """
    if image.mode != "RGB":
        raise ValueError(f"image must be RGB, got mode {image.mode!r}")
    transforms = roi_transforms(rois)
    crops = np.zeros((len(transforms), CROP_SIZE, CROP_SIZE, 3), dtype=np.float32)
    pixels = None
    for i, t in enumerate(transforms.astype(np.float64)):
        corners = np.array([[0, 0, 1], [CROP_SIZE, 0, 1], [0, CROP_SIZE, 1], [CROP_SIZE, CROP_SIZE, 1]]) @ t.T
        x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 2
        inside = x0 >= 0 and y0 >= 0 and x1 <= image.width and y1 <= image.height
        if inside:
            region = image.crop((x0, y0, x1, y1))
        else:  # replicate the border: pad the clipped region with its edge pixels
            pixels = np.asarray(image) if pixels is None else pixels
            cx0, cy0 = min(max(x0, 0), image.width - 1), min(max(y0, 0), image.height - 1)
            cx1, cy1 = max(min(x1, image.width), cx0 + 1), max(min(y1, image.height), cy0 + 1)
            part = pixels[cy0:cy1, cx0:cx1]
            pad = ((cy0 - y0, y1 - cy1), (cx0 - x0, x1 - cx1), (0, 0))
            region = Image.fromarray(np.pad(part, pad, mode="edge"))
        a, b, c, d, e, f = t.reshape(-1)
        warped = region.transform((CROP_SIZE, CROP_SIZE), Image.Transform.AFFINE, (a, b, c - x0, d, e, f - y0),
                                  resample=Image.Resampling.BILINEAR)
        crops[i] = np.asarray(warped, dtype=np.float32) / 255.0
    return crops, transforms


def to_image(landmarks: np.ndarray, transforms: np.ndarray) -> np.ndarray:
    """Map FaceMesh landmarks from crop pixels to image pixels (MediaPipe's ``LandmarkProjection``).

    Args:
        landmarks: float ``(N, 468, 3)`` ``(u, v, z)`` in crop pixels.
        transforms: float ``(N, 2, 3)`` from :func:`crop_rois`.

    Returns:
        float32 ``(N, 468, 3)``: ``(x, y)`` image pixels, ``z`` multiplied by the crop -> image scale
        ``size / 192`` (relative depth in image pixels).
    """
    landmarks = np.asarray(landmarks, dtype=np.float64)
    t = np.asarray(transforms, dtype=np.float64)
    xy = np.einsum("nij,nkj->nki", t[:, :, :2], landmarks[..., :2]) + t[:, None, :, 2]
    scale = np.sqrt(np.abs(np.linalg.det(t[:, :, :2])))[:, None, None]
    return np.concatenate([xy, landmarks[..., 2:3] * scale], axis=-1).astype(np.float32)
