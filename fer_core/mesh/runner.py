"""FaceMesh on detected faces: crop each face's ROI, run the network (torch or ONNX Runtime), map back.

Source: MediaPipe's face-detection -> face-landmark graph (Kartynnik et al., CVPR-W 2019), see
:mod:`fer_core.mesh.crop` for the ROI and :mod:`fer_core.mesh.net` for the network. The ONNX Runtime
backend imports no torch.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from ..errors import InvalidArgumentError
from ..onnx_runtime import resolve_threads
from ..options import BACKENDS
from .crop import FaceBox, crop_rois, face_rois, to_image

#: The shipped ONNX export of FaceMeshNet (``python -m fer_core.mesh.export``).
ONNX_PATH: Path = Path(__file__).with_name("face_mesh.onnx")
#: Faces per network call in :meth:`FaceMesh.run_batch`.
CHUNK: int = 64
NUM_LANDMARKS: int = 468


@dataclass(frozen=True)
class MeshOutput:
    """FaceMesh's result for the faces of one image, in the order of the detections given.

    Attributes:
        mesh: float32 ``(N, 468, 3)``: ``(x, y)`` image pixels (Pillow's continuous frame, as the
            detections), ``z`` relative depth in image pixels (smaller is nearer the camera; MediaPipe's
            canonical face-mesh topology).
        face_prob: float32 ``(N,)``: sigmoid of the presence logit, 0..1: whether the ROI holds a face.
        presence_logit: float32 ``(N,)``: the network's raw face-flag logit.
    """

    mesh: np.ndarray
    face_prob: np.ndarray
    presence_logit: np.ndarray


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically stable logistic function, float32."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(np.float32)


def _ort_session(path: Path, threads: int) -> Any:
    """The library's shared ONNX Runtime session settings (:func:`fer_core.onnx_runtime.session`)."""
    from ..onnx_runtime import session

    return session(path, threads)


class FaceMesh:
    """MediaPipe FaceMesh (468 3-D landmarks + face presence) on faces found by :class:`fer_core.detect.FaceDetector`.

    Loads the shipped weights once; nothing is downloaded. Thread-safe: concurrent calls are serialised.

    Args:
        backend: ``"torch"`` (FaceMeshNet with ``face_landmark.safetensors``) or ``"onnx"`` (ONNX Runtime
            with ``face_mesh.onnx``; imports no torch).
        threads: intra-op threads (>= 1); ``None``: ``FER_THREADS``, else ``min(cpu_count, 4)``. For torch it is applied
            with ``torch.set_num_threads`` during each call (a process-wide setting, restored afterwards).

    Raises:
        InvalidArgumentError: unknown backend or bad ``threads``.
    """

    def __init__(self, backend: str = "torch", threads: int | None = None) -> None:
        if backend not in BACKENDS:
            raise InvalidArgumentError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        self.backend = backend
        self.threads = resolve_threads(threads)  # the library's one thread check
        self._lock = threading.Lock()
        if backend == "onnx":
            self._session = _ort_session(ONNX_PATH, self.threads)
        else:
            from .net import load_facemesh_net

            self._net = load_facemesh_net()

    def infer(self, crops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run the network on prepared crops.

        Args:
            crops: float32 ``(N, 192, 192, 3)`` RGB in [0, 1] (:func:`fer_core.mesh.crop.crop_rois`).

        Returns:
            ``(landmarks, presence_logit)``: float32 ``(N, 468, 3)`` crop pixels and float32 ``(N,)``.
        """
        batch = np.ascontiguousarray(np.asarray(crops, dtype=np.float32).transpose(0, 3, 1, 2))
        if len(batch) == 0:
            return np.zeros((0, NUM_LANDMARKS, 3), np.float32), np.zeros((0,), np.float32)
        with self._lock:
            if self.backend == "onnx":
                landmarks, logits = self._session.run(None, {"image": batch})
                return landmarks.astype(np.float32), logits.astype(np.float32)
            import torch

            before = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            try:
                with torch.inference_mode():
                    landmarks, logits = self._net(torch.from_numpy(batch))
            finally:
                torch.set_num_threads(before)
            return landmarks.numpy(), logits.numpy()

    def run(self, image: Image.Image, detections: Sequence[FaceBox]) -> MeshOutput:
        """FaceMesh on every detected face of one image.

        Args:
            image: ``PIL.Image`` in mode ``"RGB"``, the image the detections were made on.
            detections: faces (``box``, ``landmarks`` of :class:`fer_core.detect.Detection`), image pixels.

        Returns:
            One :class:`MeshOutput` row per detection (empty arrays for none).

        Raises:
            InvalidArgumentError: ``image`` is not an RGB ``PIL.Image``.
        """
        return self.run_batch([image], [detections])[0]

    def run_batch(self, images: Sequence[Image.Image],
                  detections_per_image: Sequence[Sequence[FaceBox]]) -> list[MeshOutput]:
        """:meth:`run` for several images: the faces of all images go through the network together,
        :data:`CHUNK` at a time.

        Returns:
            One :class:`MeshOutput` per image, in input order.

        Raises:
            InvalidArgumentError: the two sequences differ in length, or an image is not an RGB ``PIL.Image``.
        """
        if len(images) != len(detections_per_image):
            raise InvalidArgumentError(f"got {len(images)} images but {len(detections_per_image)} detection lists")
        rois, counts = [], []
        for image, detections in zip(images, detections_per_image):
            if not isinstance(image, Image.Image) or image.mode != "RGB":
                raise InvalidArgumentError(f"images must be RGB PIL images, got {image!r}")
            r = face_rois(list(detections))
            rois.append(r)
            counts.append(len(r))
        # crops are cut CHUNK faces at a time (442 kB each as float32), so memory does not grow with the faces
        jobs = [(i, j) for i, r in enumerate(rois) for j in range(len(r))]
        landmarks = np.zeros((len(jobs), NUM_LANDMARKS, 3), np.float32)
        logits = np.zeros((len(jobs),), np.float32)
        t_all = np.zeros((len(jobs), 2, 3), np.float32)
        for start in range(0, len(jobs), CHUNK):
            part = jobs[start:start + CHUNK]
            crops = []
            for i in sorted({i for i, _ in part}):
                wanted = [j for k, j in part if k == i]
                c, t = crop_rois(images[i], rois[i][wanted])
                crops.append(c)
                where = [start + n for n, (k, _) in enumerate(part) if k == i]
                t_all[where] = t
            lm, lg = self.infer(np.concatenate(crops))
            landmarks[start:start + len(part)], logits[start:start + len(part)] = lm, lg
        outputs, start = [], 0
        for count in counts:
            lm, lg, t = landmarks[start:start + count], logits[start:start + count], t_all[start:start + count]
            outputs.append(MeshOutput(to_image(lm, t), _sigmoid(lg), lg.astype(np.float32)))
            start += count
        return outputs
