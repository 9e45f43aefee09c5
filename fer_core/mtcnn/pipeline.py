"""The MTCNN cascade on ONNX Runtime and numpy: facenet-pytorch's ``MTCNN.detect`` without torch.

MTCNN: Zhang et al., "Joint Face Detection and Alignment Using Multitask Cascaded Convolutional
Networks", IEEE Signal Processing Letters 23(10), 2016. This is a port of facenet-pytorch 2.5.3's
``detect_face`` (timesler/facenet-pytorch, MIT) step for step, with its numeric conventions (float32
box arithmetic, torch's area resizing, torchvision's NMS), so that boxes, probabilities and landmarks
agree with facenet-pytorch's to float32 rounding of the networks (~1e-5). Imports numpy, Pillow and
onnxruntime only.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..onnx_runtime import session
from .nms import batched_nms, batched_nms_min
from .resize import crop_resize_area, integral_image, resize_area

#: Folder of ``pnet.onnx``, ``rnet.onnx``, ``onet.onnx`` (see NOTICE.md).
MODEL_DIR = Path(__file__).resolve().parent
#: facenet-pytorch's defaults.
DEFAULT_MIN_FACE_SIZE: int = 20
DEFAULT_THRESHOLDS: tuple[float, float, float] = (0.6, 0.7, 0.7)
DEFAULT_FACTOR: float = 0.709
#: R-Net and O-Net run on at most this many crops at once (facenet-pytorch's ``fixed_batch_process``).
NET_BATCH: int = 512

_F32 = np.float32


def _normalise(pixels: np.ndarray) -> np.ndarray:
    """0..255 float32 -> the networks' input, ``(x - 127.5) * 0.0078125`` in float32."""
    pixels -= _F32(127.5)
    pixels *= _F32(0.0078125)
    return pixels


def scale_pyramid(height: int, width: int, min_face_size: float, factor: float) -> list[float]:
    """facenet-pytorch's scales: ``12 / min_face_size * factor**k`` while the scaled shorter side is >= 12 px.

    Returns:
        The scales (possibly empty: no face of ``min_face_size`` fits), largest first.
    """
    m = 12.0 / min_face_size
    minl = min(height, width) * m
    scale, scales = m, []
    while minl >= 12:
        scales.append(scale)
        scale *= factor
        minl *= factor
    return scales


def _generate_boxes(reg: np.ndarray, prob: np.ndarray, scale: float, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """facenet-pytorch's ``generateBoundingBox``: P-Net cells with face probability ``>= threshold``
    -> float32 ``(n, 9)`` rows ``x1, y1, x2, y2, score, reg x4`` in image pixels, and their image index."""
    mask = prob >= threshold
    b, y, x = np.nonzero(mask)
    score = prob[b, y, x]
    r = reg[b, :, y, x]  # (n, 4)
    scale32 = _F32(scale)
    bb = np.stack([x, y], axis=1).astype(_F32)
    q1 = np.floor((2 * bb + 1) / scale32)
    q2 = np.floor((2 * bb + 12 - 1 + 1) / scale32)
    return np.concatenate([q1, q2, score[:, None], r], axis=1).astype(_F32, copy=False), b


def _rerec(boxes: np.ndarray) -> np.ndarray:
    """facenet-pytorch's ``rerec``: boxes to squares of their longer side, same centre (in place)."""
    h = boxes[:, 3] - boxes[:, 1]
    w = boxes[:, 2] - boxes[:, 0]
    side = np.maximum(w, h)
    boxes[:, 0] = boxes[:, 0] + w * _F32(0.5) - side * _F32(0.5)
    boxes[:, 1] = boxes[:, 1] + h * _F32(0.5) - side * _F32(0.5)
    boxes[:, 2] = boxes[:, 0] + side
    boxes[:, 3] = boxes[:, 1] + side
    return boxes


def _bbreg(boxes: np.ndarray, reg: np.ndarray) -> np.ndarray:
    """facenet-pytorch's ``bbreg``: apply regression offsets (fractions of the ``+1`` box size), in place."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    new = np.stack([boxes[:, 0] + reg[:, 0] * w, boxes[:, 1] + reg[:, 1] * h,
                    boxes[:, 2] + reg[:, 2] * w, boxes[:, 3] + reg[:, 3] * h], axis=1)
    boxes[:, :4] = new
    return boxes


def _crops(integral: np.ndarray, boxes: np.ndarray, image_inds: np.ndarray, width: int, height: int,
           side: int) -> tuple[np.ndarray, np.ndarray]:
    """facenet-pytorch's ``pad`` + crop + ``imresample``: boxes truncated to whole pixels, clipped to the
    image, area-resized to ``side``. Returns the normalised float32 ``(k, 3, side, side)`` crops and the
    boolean mask of the boxes that had a crop (facenet-pytorch skips empty ones)."""
    t = np.trunc(boxes[:, :4]).astype(np.int32)
    x, y, ex, ey = t[:, 0], t[:, 1], t[:, 2], t[:, 3]
    x, y = np.maximum(x, 1), np.maximum(y, 1)
    ex, ey = np.minimum(ex, width), np.minimum(ey, height)
    ok = (ey > y - 1) & (ex > x - 1)
    x, y, ex, ey = x[ok], y[ok], ex[ok], ey[ok]
    # facenet-pytorch crops rows y-1 .. ey-1 and columns x-1 .. ex-1 (Python slices img[y-1:ey, x-1:ex])
    pixels = crop_resize_area(integral, image_inds[ok], y - 1, x - 1, ey - y + 1, ex - x + 1, side)
    return _normalise(pixels), ok


def _run_batched(sess, inputs: np.ndarray) -> list[np.ndarray]:
    """Run an R-/O-Net session over ``inputs`` in chunks of :data:`NET_BATCH`; outputs concatenated."""
    parts = [sess.run(None, {"input": inputs[i:i + NET_BATCH]}) for i in range(0, len(inputs), NET_BATCH)]
    return [np.concatenate(p, axis=0) for p in zip(*parts)]


class OnnxMTCNN:
    """MTCNN face detector on ONNX Runtime: a drop-in for ``facenet_pytorch.MTCNN(keep_all=True).detect``.

    Same networks (facenet-pytorch's weights exported by :mod:`fer_core.mtcnn.export`), same cascade,
    same results to ~1e-5 (boxes and landmarks in pixels, probabilities). Differences: an image too
    small for ``min_face_size`` gives "no face" where facenet-pytorch raises; a box whose crop is empty
    is dropped where facenet-pytorch would fail on mismatched arrays. Not thread-safe while
    ``min_face_size`` etc. are changed between calls (the ORT sessions themselves are).

    Attributes:
        min_face_size: smallest face side searched for, pixels (settable, > 0).
        thresholds: face-probability thresholds of P-, R- and O-Net (0..1).
        factor: scale step of the image pyramid (0 < factor < 1).
        select_largest: order each image's faces by decreasing box area (facenet-pytorch's default, as
            ``MTCNN(keep_all=True)`` has it); ``False``: by decreasing probability.

    Args:
        min_face_size, thresholds, factor, select_largest: as the attributes (facenet-pytorch's defaults).
        threads: ORT intra-op threads; ``None`` = :func:`fer_core.onnx_runtime.default_threads`.
        model_dir: folder with ``pnet.onnx``, ``rnet.onnx``, ``onet.onnx``.

    Raises:
        FileNotFoundError: a network file is missing.
        ImportError: onnxruntime is not installed.
    """

    def __init__(self, min_face_size: int = DEFAULT_MIN_FACE_SIZE,
                 thresholds: Sequence[float] = DEFAULT_THRESHOLDS, factor: float = DEFAULT_FACTOR,
                 select_largest: bool = True, threads: int | None = None,
                 model_dir: str | Path = MODEL_DIR) -> None:
        self.min_face_size = min_face_size
        self.select_largest = select_largest
        self.thresholds = list(thresholds)
        self.factor = factor
        model_dir = Path(model_dir)
        self.pnet = session(model_dir / "pnet.onnx", threads)
        self.rnet = session(model_dir / "rnet.onnx", threads)
        self.onet = session(model_dir / "onet.onnx", threads)

    def detect(self, img: Image.Image | np.ndarray | Sequence[Image.Image | np.ndarray], landmarks: bool = False):
        """Detect faces, with facenet-pytorch's ``MTCNN.detect`` conventions (``keep_all=True``).

        Args:
            img: one RGB ``PIL.Image`` or uint8 ``(H, W, 3)`` array, or a list/tuple of them (or a uint8
                ``(B, H, W, 3)`` array), all the same size; a batch goes through each network together.
            landmarks: also return the five landmarks.

        Returns:
            ``(boxes, probs)`` or ``(boxes, probs, points)``. For a batch, numpy object arrays with one
            entry per image built as facenet-pytorch builds them: float32 ``(K, 4)`` ``x1, y1, x2, y2``
            pixel boxes (not clipped to the image), ``(K,)`` probabilities 0..1 and ``(K, 5, 2)`` ``(x, y)``
            landmarks (left eye, right eye, nose, left and right mouth corner), largest box first
            (``select_largest``) or highest probability first; ``None``, ``[None]``, ``None`` for an image
            without faces.
            For a single image, that image's entries.

        Raises:
            ValueError: images of different sizes, or not 3-channel.
        """
        batch = isinstance(img, (list, tuple)) or (isinstance(img, np.ndarray) and img.ndim == 4)
        boxes_list, points_list = self._detect_face(img if batch else [img])
        # as facenet-pytorch's detect_face and MTCNN.detect assemble their outputs
        batch_boxes = np.array(boxes_list, dtype=object)
        batch_points = np.array(points_list, dtype=object)
        boxes, probs, points = [], [], []
        for box, point in zip(batch_boxes, batch_points):
            box, point = np.array(box), np.array(point)
            if len(box) == 0:
                boxes.append(None)
                probs.append([None])
                points.append(None)
                continue
            if self.select_largest:
                box_order = np.argsort((box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]))[::-1]
                box, point = box[box_order], point[box_order]
            boxes.append(box[:, :4])
            probs.append(box[:, 4])
            points.append(point)
        boxes = np.array(boxes, dtype=object)
        probs = np.array(probs, dtype=object)
        points = np.array(points, dtype=object)
        if not batch:
            boxes, probs, points = boxes[0], probs[0], points[0]
        return (boxes, probs, points) if landmarks else (boxes, probs)

    def _detect_face(self, imgs) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """facenet-pytorch's ``detect_face``: per image, float32 ``(K, 5)`` boxes+score and ``(K, 5, 2)`` points."""
        if isinstance(imgs, np.ndarray):
            images = np.ascontiguousarray(imgs, dtype=np.uint8)
        else:
            arrays = [np.asarray(im, dtype=np.uint8) for im in imgs]
            if any(a.shape != arrays[0].shape for a in arrays):
                raise ValueError("MTCNN batch processing needs images of the same size")
            images = np.stack(arrays)
        if images.ndim != 4 or images.shape[3] != 3:
            raise ValueError(f"expected RGB images (B, H, W, 3), got shape {images.shape}")
        batch_size, h, w = images.shape[:3]
        threshold = self.thresholds
        integral = integral_image(images)

        # First stage: P-Net on the scale pyramid, NMS per scale and image, then per image
        all_boxes, all_inds = [], []
        for scale in scale_pyramid(h, w, self.min_face_size, self.factor):
            pixels = _normalise(resize_area(integral, int(h * scale + 1), int(w * scale + 1)))
            reg, prob = self.pnet.run(None, {"input": pixels})
            boxes_scale, inds_scale = _generate_boxes(reg, prob[:, 1], scale, threshold[0])
            pick = batched_nms(boxes_scale[:, :4], boxes_scale[:, 4], inds_scale, 0.5)
            all_boxes.append(boxes_scale[pick])
            all_inds.append(inds_scale[pick])
        empty_points = np.zeros((0, 5, 2), dtype=_F32)
        if not all_boxes:
            return [np.zeros((0, 5), _F32)] * batch_size, [empty_points] * batch_size
        boxes = np.concatenate(all_boxes, axis=0)
        image_inds = np.concatenate(all_inds, axis=0)
        pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
        boxes, image_inds = boxes[pick], image_inds[pick]
        regw = boxes[:, 2] - boxes[:, 0]
        regh = boxes[:, 3] - boxes[:, 1]
        boxes = np.stack([boxes[:, 0] + boxes[:, 5] * regw, boxes[:, 1] + boxes[:, 6] * regh,
                          boxes[:, 2] + boxes[:, 7] * regw, boxes[:, 3] + boxes[:, 8] * regh, boxes[:, 4]], axis=1)
        boxes = _rerec(boxes)

        # Second stage: R-Net on 24x24 crops
        if len(boxes) > 0:
            crops, ok = _crops(integral, boxes, image_inds, w, h, 24)
            boxes, image_inds = boxes[ok], image_inds[ok]
        if len(boxes) > 0:  # (every crop can be empty: boxes wholly outside the image)
            reg, prob = _run_batched(self.rnet, crops)
            score = prob[:, 1]
            ipass = score > threshold[1]
            boxes = np.concatenate([boxes[ipass, :4], score[ipass, None]], axis=1)
            image_inds, mv = image_inds[ipass], reg[ipass]
            pick = batched_nms(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
            boxes, image_inds, mv = boxes[pick], image_inds[pick], mv[pick]
            boxes = _rerec(_bbreg(boxes, mv))

        # Third stage: O-Net on 48x48 crops, landmarks, 'Min' NMS
        points = empty_points
        if len(boxes) > 0:
            crops, ok = _crops(integral, boxes, image_inds, w, h, 48)
            boxes, image_inds = boxes[ok], image_inds[ok]
        if len(boxes) > 0:
            reg, marks, prob = _run_batched(self.onet, crops)
            score = prob[:, 1]
            ipass = score > threshold[2]
            marks = marks[ipass]
            boxes = np.concatenate([boxes[ipass, :4], score[ipass, None]], axis=1)
            image_inds, mv = image_inds[ipass], reg[ipass]
            w_i = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
            h_i = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
            points_x = w_i * marks[:, :5] + boxes[:, 0:1] - 1
            points_y = h_i * marks[:, 5:10] + boxes[:, 1:2] - 1
            points = np.stack([points_x, points_y], axis=2)
            boxes = _bbreg(boxes, mv)
            pick = batched_nms_min(boxes[:, :4], boxes[:, 4], image_inds, 0.7)
            boxes, image_inds, points = boxes[pick], image_inds[pick], points[pick]

        return ([boxes[image_inds == b].copy() for b in range(batch_size)],
                [points[image_inds == b].copy() for b in range(batch_size)])
