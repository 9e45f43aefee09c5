"""Face detection with MTCNN, on ONNX Runtime (:mod:`fer_core.mtcnn`, no torch) or on facenet-pytorch.

MTCNN: Zhang et al., "Joint Face Detection and Alignment Using Multitask Cascaded Convolutional
Networks", IEEE SPL 2016; implementation and weights from facenet-pytorch (timesler/facenet-pytorch),
exported to ONNX for the default backend. This module imports torch only for ``backend="torch"``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from PIL import Image

from .errors import InvalidArgumentError
from .options import (
    DEFAULT_FACE_PROB_THRESHOLD,
    DEFAULT_THRESHOLD,
    DEFAULT_TRUSTED_SCORE,
    MIN_FACE_SIZE_FLOOR,
    check_bool,
    check_face_prob_threshold,
    check_max_faces,
    check_min_face_size,
    check_threshold,
    resolve_backend,
)

#: Images are downscaled for detection so that their longer side is at most this many pixels;
#: boxes and landmarks are mapped back to the original image.
DEFAULT_MAX_SIDE: int = 1280

#: With ``min_face_size=None`` the smallest face searched for is the image's shorter side divided
#: by this (but at least :data:`MIN_FACE_FLOOR` pixels): 40 px in a 640x480 frame, a little below the
#: 48 px FER+ faces the classifier is trained on.
MIN_FACE_DIVISOR: int = 12
MIN_FACE_FLOOR: int = 20

#: At most this many same-size images go through MTCNN as one batch (bounds its memory).
MAX_DETECT_BATCH: int = 8

#: With ``max_faces`` / ``max_total`` set, at most this many times the cap go through FaceMesh verification
#: (the highest MTCNN scores; the rest count as dropped), so the caps bound its work too: a crowd of a
#: thousand boxes costs what the cap allows, not a thousand FaceMesh runs.
VERIFY_HEADROOM: int = 2

#: MTCNN's first stage (P-Net) looks at 12x12 windows of its scale pyramid.
P_NET_WINDOW: float = 12.0

#: Faces whose box's longer side is below this fraction of the minimum face size are dropped.
MIN_FACE_TOLERANCE: float = 0.8


@dataclass(frozen=True)
class Detection:
    """One detected face, in the pixel frame of the image given to :meth:`FaceDetector.detect`.

    Attributes:
        box: ``(x1, y1, x2, y2)`` float pixels, clipped to the image.
        score: MTCNN detection probability, 0..1.
        landmarks: float32 ``(5, 2)`` ``(x, y)`` pixels: left eye, right eye, nose, left and right
            mouth corner (left/right as seen in the image).
        face_prob: FaceMesh's face-presence probability on the face's region, 0..1, when the face was
            verified (:class:`FaceDetector` ``verify=True``); else ``None``.
        mesh: float32 ``(468, 3)`` FaceMesh landmarks, ``(x, y)`` image pixels and ``z`` relative depth
            in pixels (MediaPipe's face-mesh topology), when the face was verified; else ``None``.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray
    face_prob: float | None = None
    mesh: np.ndarray | None = None


def adaptive_min_face_size(width: int, height: int) -> int:
    """Smallest face size searched for when none is given: ``max(20, min(W, H) // 12)`` pixels."""
    return max(MIN_FACE_FLOOR, min(width, height) // MIN_FACE_DIVISOR)


class FaceDetector:
    """MTCNN face detector that returns every face above a probability threshold, each confirmed
    by MediaPipe FaceMesh (:mod:`fer_core.mesh`) unless ``verify=False``.

    Verification runs FaceMesh on every MTCNN box (its region 1.35x the box, rotated by the eye line)
    and drops the boxes that MTCNN scored under ``trusted_score`` (0.95) and FaceMesh under
    ``face_prob_threshold`` (0.5): a hand, a fabric pattern or a card table that MTCNN scores above
    its threshold is dropped, while a face FaceMesh does not recognise (a laughing half-profile,
    a blurred face) but MTCNN is sure of stays. Each face carries FaceMesh's 468 landmarks
    (:attr:`Detection.mesh`) and ``face_prob``. It costs about 2-3 ms per face with ONNX Runtime on
    a 2-core CPU, plus about 1 ms to cut the face's region (``benchmarks/bench_inference.py``).

    Thread-safe: concurrent :meth:`detect` calls are serialised.

    Args:
        threshold: minimum detection probability (0..1) of a returned face.
        min_face_size: smallest face side searched for, in pixels of the input image; ``None``
            adapts it to the image (:func:`adaptive_min_face_size`). Larger is faster. Boxes whose
            longer side is under ``0.8 * min_face_size`` are dropped.
        max_side: images whose longer side exceeds this are downscaled for detection.
        device: torch device for MTCNN (``backend="torch"`` only).
        backend: ``"onnx"`` (:class:`fer_core.mtcnn.OnnxMTCNN`: ONNX Runtime and numpy, no torch; the
            same boxes as facenet-pytorch's within 1e-3 px) or ``"torch"`` (facenet-pytorch's MTCNN);
            ``None``: ``"onnx"`` when onnxruntime is installed (:func:`~fer_core.options.resolve_backend`).
        threads: ONNX Runtime threads (``None``: ``FER_THREADS`` or its default, see
            :mod:`fer_core.onnx_runtime`); ignored by the torch backend.
        verify: confirm every detection with FaceMesh (default ``True``).
        face_prob_threshold: the FaceMesh face-presence probability (0..1) a verified face needs
            (:data:`~fer_core.options.DEFAULT_FACE_PROB_THRESHOLD`).
        trusted_score: MTCNN probability (0..1) from which a face is kept whatever FaceMesh says
            (:data:`~fer_core.options.DEFAULT_TRUSTED_SCORE`); 1.0 makes FaceMesh decide alone.

    Raises:
        InvalidArgumentError: a parameter is out of range, or an unknown backend.
    """

    def __init__(
        self,
        threshold: float = DEFAULT_THRESHOLD,
        min_face_size: int | None = None,
        max_side: int = DEFAULT_MAX_SIDE,
        device: Any = "cpu",
        backend: str | None = None,
        threads: int | None = None,
        verify: bool = True,
        face_prob_threshold: float = DEFAULT_FACE_PROB_THRESHOLD,
        trusted_score: float = DEFAULT_TRUSTED_SCORE,
    ) -> None:
        threshold, min_face_size = check_threshold(threshold), check_min_face_size(min_face_size)
        self.verify = bool(check_bool("verify", verify))
        self.face_prob_threshold = check_face_prob_threshold(face_prob_threshold)
        self.trusted_score = check_threshold(trusted_score)
        if max_side < 64:
            raise InvalidArgumentError(f"max_side must be >= 64 pixels, got {max_side}")
        self.threshold = float(threshold)
        self.min_face_size = min_face_size
        self.max_side = int(max_side)
        self.backend = resolve_backend(backend)
        self.mtcnn = _load_mtcnn(self.backend, device, threads)
        self._threads = threads
        self._mesh: Any = None  # FaceMesh, loaded at the first verification
        self._lock = threading.Lock()  # MTCNN's min_face_size is per-call state on a shared object

    @property
    def face_mesh(self) -> Any:
        """The :class:`fer_core.mesh.FaceMesh` verification runs (same backend), loaded on first use."""
        if self._mesh is None:
            with self._lock:  # one FaceMesh, even when two threads verify first at once
                if self._mesh is None:
                    from .mesh import FaceMesh

                    self._mesh = FaceMesh(backend=self.backend, threads=self._threads)
        return self._mesh

    def detect(
        self,
        image: Image.Image,
        threshold: float | None = None,
        min_face_size: int | None = None,
        verify: bool | None = None,
        rejected: list[int] | None = None,
    ) -> list[Detection]:
        """Detect all faces in one RGB image.

        Args:
            image: ``PIL.Image`` in mode ``"RGB"`` (see :func:`fer_core.io.load_image`).
            threshold: overrides the detector's threshold for this call.
            min_face_size: overrides the detector's minimum face size (pixels) for this call.
            verify: overrides the detector's ``verify`` for this call.
            rejected: if given, the number of MTCNN boxes FaceMesh rejected (0 without verification)
                is appended to it.

        Returns:
            Detections in reading order (:func:`reading_order`), possibly empty; always empty for an
            image whose shorter side is below the smallest face size searched for (a 16x16 image
            with the adaptive 20-pixel minimum, a 200x15 strip): no such face fits in it.

        Raises:
            InvalidArgumentError: ``threshold`` or ``min_face_size`` out of range.
        """
        return self.detect_batch([image], threshold=threshold, min_face_size=min_face_size, verify=verify,
                                 rejected=rejected)[0]

    def detect_batch(
        self,
        images: Sequence[Image.Image],
        threshold: float | None = None,
        min_face_size: int | None = None,
        verify: bool | None = None,
        rejected: list[int] | None = None,
        max_faces: int | None = None,
        max_total: int | None = None,
        dropped: list[int] | None = None,
    ) -> list[list[Detection]]:
        """:meth:`detect` for several images; images of the same size go through MTCNN together,
        :data:`MAX_DETECT_BATCH` at a time (the frames of a video: 68 -> 49 ms per 640x480 frame at
        8 frames per batch on a 2-core CPU, ``benchmarks/bench_video.py``).

        Args:
            images, threshold, min_face_size, verify: as in :meth:`detect`.
            rejected: if given, one count per image (input order) of the boxes FaceMesh rejected.
            max_faces, max_total: keep at most this many faces per image and over all the images, the
                highest MTCNN scores (:func:`limit_faces`); with verification, at most
                :data:`VERIFY_HEADROOM` x the caps are verified. ``None``: no cap.
            dropped: if given, one count per image of the faces left out by the caps.

        Returns:
            One list of detections per image, in input order (empty for an image too small for the
            smallest face searched for, as in :meth:`detect`).

        Raises:
            InvalidArgumentError: ``threshold``, ``min_face_size`` or a cap out of range.
        """
        max_faces, max_total = check_max_faces(max_faces), check_max_faces(max_total, "max_total")
        threshold = self.threshold if threshold is None else check_threshold(threshold)
        min_face = self.min_face_size if min_face_size is None else check_min_face_size(min_face_size)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(image.size, []).append(i)
        out: list[list[Detection]] = [[] for _ in images]
        chunks = [(size, indices[i:i + MAX_DETECT_BATCH]) for size, indices in groups.items()
                  for i in range(0, len(indices), MAX_DETECT_BATCH)]
        for (width, height), indices in chunks:
            wanted = adaptive_min_face_size(width, height) if min_face is None else min_face
            scale = min(1.0, self.max_side / max(width, height))
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            smallest = max(MIN_FACE_SIZE_FLOOR, int(round(wanted * scale)))  # in the (downscaled) image
            if not _has_pyramid(min(size), smallest):
                continue  # no face of the smallest size fits in the image: no face (MTCNN would fail)
            small = [images[i] if scale == 1.0 else images[i].resize(size, Image.Resampling.BILINEAR)
                     for i in indices]
            with self._lock, _no_grad(self.backend):
                self.mtcnn.min_face_size = smallest
                batch_boxes, batch_probs, batch_points = self.mtcnn.detect(small, landmarks=True)
            for i, boxes, probs, points in zip(indices, batch_boxes, batch_probs, batch_points):
                if boxes is not None:
                    out[i] = self._keep(boxes, probs, points, scale, width, height, threshold, wanted)
        refused, lost = [0] * len(images), [0] * len(images)
        verify = check_bool("verify", verify)
        if self.verify if verify is None else verify:
            pre_faces, pre_total = (None if c is None else VERIFY_HEADROOM * c for c in (max_faces, max_total))
            out, lost = limit_faces(out, pre_faces, pre_total)
            out, refused = self.verify_faces(images, out)
        out, capped = limit_faces(out, max_faces, max_total)
        if rejected is not None:
            rejected.extend(refused)
        if dropped is not None:
            dropped.extend(a + b for a, b in zip(lost, capped))
        return out

    def verify_faces(self, images: Sequence[Image.Image], detections: Sequence[Sequence[Detection]],
                     drop: bool = True) -> tuple[list[list[Detection]], list[int]]:
        """Run FaceMesh on detected faces: fill in ``face_prob`` and ``mesh``, and drop the faces
        under both ``trusted_score`` (MTCNN) and ``face_prob_threshold`` (FaceMesh).

        Args:
            images: RGB ``PIL.Image`` s.
            detections: one list of :class:`Detection` per image (image pixels).
            drop: ``False`` keeps every face (only fills in ``face_prob`` and ``mesh``).

        Returns:
            ``(kept, rejected)``: the verified detections per image (same order, the rejected left
            out) and the number rejected per image.
        """
        outputs = self.face_mesh.run_batch(list(images), [list(d) for d in detections])
        kept, lost = [], []
        for dets, output in zip(detections, outputs):
            faces = [replace(d, face_prob=float(p), mesh=m) for d, p, m in zip(dets, output.face_prob, output.mesh)]
            good = [f for f in faces
                    if not drop or f.face_prob >= self.face_prob_threshold or f.score >= self.trusted_score]
            kept.append(good)
            lost.append(len(faces) - len(good))
        return kept, lost

    @staticmethod
    def _keep(boxes: np.ndarray, probs: np.ndarray, points: np.ndarray, scale: float, width: int, height: int,
              threshold: float, min_face: int) -> list[Detection]:
        """MTCNN's raw output for one image -> thresholded, clipped detections in reading order."""
        boxes = np.asarray(boxes, dtype=np.float32) / scale
        points = np.asarray(points, dtype=np.float32) / scale
        probs = np.asarray(probs, dtype=np.float32)
        found = []
        for box, prob, pts in zip(boxes, probs, points):
            if prob < threshold:
                continue
            x1, y1 = max(0.0, float(box[0])), max(0.0, float(box[1]))
            x2, y2 = min(float(width), float(box[2])), min(float(height), float(box[3]))
            if max(x2 - x1, y2 - y1) < MIN_FACE_TOLERANCE * min_face:
                continue  # MTCNN's pyramid can still regress smaller boxes: enforce the minimum
            found.append(Detection((x1, y1, x2, y2), float(prob), pts.reshape(5, 2)))
        return reading_order(found)


def _load_mtcnn(backend: str, device: Any, threads: int | None) -> Any:
    """The MTCNN object of a backend: both have ``min_face_size`` and facenet-pytorch's ``detect``."""
    if backend == "onnx":
        from .mtcnn.pipeline import OnnxMTCNN

        return OnnxMTCNN(threads=threads)
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device=device)
    mtcnn.eval()
    return mtcnn


def _no_grad(backend: str) -> contextlib.AbstractContextManager:
    """``torch.inference_mode()`` for the torch backend; nothing for ONNX (which has no torch)."""
    if backend == "torch":
        import torch

        return torch.inference_mode()
    return contextlib.nullcontext()


def _has_pyramid(short_side: int, min_face: int) -> bool:
    """Whether MTCNN's scale pyramid for an image of this shorter side and this smallest face size
    (pixels) has a scale: the scales at which a ``min_face``-pixel face fills P-Net's 12-pixel
    window while the image stays at least 12 pixels. None when the face is larger than the image,
    and facenet-pytorch then fails (``torch.cat`` of an empty list). Computed as facenet-pytorch
    does, in floating point: ``47 * (12 / 47)`` is just under 12, so a 47-pixel face in a 47-pixel
    image has no scale either."""
    return short_side * (P_NET_WINDOW / min_face) >= P_NET_WINDOW


def limit_faces(detections: Sequence[Sequence[Detection]], max_faces: int | None = None,
                max_total: int | None = None) -> tuple[list[list[Detection]], list[int]]:
    """Keep at most ``max_faces`` detections per image and ``max_total`` over all images.

    The kept faces are those with the highest detection score (ties: the larger box area), per
    image first, then over all images; each image's kept faces stay in their original (reading)
    order. ``None`` means no cap.

    Args:
        detections: one list of :class:`Detection` per image.
        max_faces: cap per image (>= 0) or ``None``.
        max_total: cap over all images (>= 0) or ``None``.

    Returns:
        ``(kept, dropped)``: one list of detections per image, and the number dropped per image.

    Raises:
        InvalidArgumentError: a cap is not a whole number >= 0.
    """
    max_faces, max_total = check_max_faces(max_faces), check_max_faces(max_total, "max_total")

    def rank(d: Detection) -> tuple[float, float]:
        return d.score, (d.box[2] - d.box[0]) * (d.box[3] - d.box[1])

    chosen = []  # (image, position) of each face kept by the per-image cap
    for i, dets in enumerate(detections):
        order = sorted(range(len(dets)), key=lambda j, dets=dets: rank(dets[j]), reverse=True)
        chosen.extend((i, j) for j in (order if max_faces is None else order[:max_faces]))
    if max_total is not None and len(chosen) > max_total:
        chosen = sorted(chosen, key=lambda ij: rank(detections[ij[0]][ij[1]]), reverse=True)[:max_total]
    keep = set(chosen)
    kept = [[d for j, d in enumerate(dets) if (i, j) in keep] for i, dets in enumerate(detections)]
    return kept, [len(dets) - len(k) for dets, k in zip(detections, kept)]


def reading_order(faces: list[Detection]) -> list[Detection]:
    """Sort faces as text is read: rows top to bottom, left to right within a row.

    A face joins the current row when its box centre is less than half the median face height
    below the row's first face; otherwise it starts a new row.
    """
    if len(faces) < 2:
        return list(faces)
    heights = sorted(f.box[3] - f.box[1] for f in faces)
    tolerance = 0.5 * heights[len(heights) // 2]
    by_y = sorted(faces, key=lambda f: f.box[1] + f.box[3])
    rows: list[list[Detection]] = []
    for f in by_y:
        cy = (f.box[1] + f.box[3]) / 2
        if rows and cy - (rows[-1][0].box[1] + rows[-1][0].box[3]) / 2 < tolerance:
            rows[-1].append(f)
        else:
            rows.append([f])
    return [f for row in rows for f in sorted(row, key=lambda f: f.box[0] + f.box[2])]

