"""Non-maximum suppression equal to torchvision's ``batched_nms`` and facenet-pytorch's ``batched_nms_numpy``.

Greedy NMS (Neubeck & Van Gool, ICPR 2006) as MTCNN uses it: torchvision's ``ops.batched_nms`` (IoU,
boxes without the ``+1`` pixel convention) for the first two stages and facenet-pytorch's
``batched_nms_numpy`` ('Min' overlap, ``+1`` convention) for the last. Arithmetic, sorting and tie
rules are reproduced: float32 box arithmetic, stable descending score order, the per-image coordinate
offset for at most 1000 boxes and per-image NMS above (torchvision's CPU switch), overlap compared
in float64 with the threshold.
"""

from __future__ import annotations

import numpy as np

#: torchvision's ``batched_nms`` runs NMS per image above this many box coordinates on CPU.
VANILLA_ABOVE: int = 4000


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """torchvision's ``ops.nms`` (CPU kernel) in numpy.

    Args:
        boxes: float32 ``(N, 4)`` ``(x1, y1, x2, y2)`` pixels.
        scores: float32 ``(N,)``.
        iou_threshold: boxes overlapping a kept box with IoU ``>`` this are dropped.

    Returns:
        int64 indices of the kept boxes, by decreasing score (ties: input order).
    """
    order = np.argsort(-scores, kind="stable")
    b = boxes[order]
    x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 2], b[:, 3]
    areas = (x2 - x1) * (y2 - y1)
    threshold = np.float64(iou_threshold)
    zero = np.float32(0)
    keep = []
    cand = np.arange(len(order))
    while cand.size:
        i, rest = cand[0], cand[1:]
        keep.append(i)
        w = np.maximum(zero, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(zero, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        ovr = inter / (areas[i] + areas[rest] - inter)
        cand = rest[~(ovr > threshold)]
    return order[np.asarray(keep, dtype=np.int64)]


def batched_nms(boxes: np.ndarray, scores: np.ndarray, idxs: np.ndarray, iou_threshold: float) -> np.ndarray:
    """torchvision's ``ops.batched_nms`` on CPU: NMS within each ``idxs`` group (image).

    Args:
        boxes: float32 ``(N, 4)`` ``(x1, y1, x2, y2)``.
        scores: float32 ``(N,)``.
        idxs: int ``(N,)`` group of each box.
        iou_threshold: IoU above which the lower-scored box is dropped.

    Returns:
        int64 indices of the kept boxes, by decreasing score. Above :data:`VANILLA_ABOVE` coordinates
        torchvision orders equal scores with torch's unstable sort; here they keep their input order
        (the kept set is the same).
    """
    if boxes.size == 0:
        return np.empty(0, dtype=np.int64)
    if boxes.size > VANILLA_ABOVE:
        keep_mask = np.zeros(len(scores), dtype=bool)
        for group in np.unique(idxs):
            members = np.flatnonzero(idxs == group)
            keep_mask[members[nms(boxes[members], scores[members], iou_threshold)]] = True
        kept = np.flatnonzero(keep_mask)
        return kept[np.argsort(-scores[kept], kind="stable")]
    offsets = idxs.astype(np.float32) * (boxes.max() + np.float32(1))
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def batched_nms_min(boxes: np.ndarray, scores: np.ndarray, idxs: np.ndarray, threshold: float) -> np.ndarray:
    """facenet-pytorch's ``batched_nms_numpy(..., method="Min")``: overlap = intersection over the
    smaller box, both with the ``+1`` pixel convention, kept while ``<= threshold``.

    Args:
        boxes: float32 ``(N, 4)``; scores: float32 ``(N,)``; idxs: int ``(N,)`` image of each box.
        threshold: overlap above which the lower-scored box is dropped.

    Returns:
        int64 indices of the kept boxes, highest score first (numpy's default ``argsort`` ties).
    """
    if boxes.size == 0:
        return np.empty(0, dtype=np.int64)
    offsets = idxs.astype(np.float32) * (boxes.max() + np.float32(1))
    b = boxes + offsets[:, None]
    x1, y1, x2, y2 = b[:, 0].copy(), b[:, 1].copy(), b[:, 2].copy(), b[:, 3].copy()
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(scores)
    pick = []
    while order.size > 0:
        i = order[-1]
        pick.append(i)
        idx = order[0:-1]
        w = np.maximum(0.0, np.minimum(x2[i], x2[idx]) - np.maximum(x1[i], x1[idx]) + 1)
        h = np.maximum(0.0, np.minimum(y2[i], y2[idx]) - np.maximum(y1[i], y1[idx]) + 1)
        o = w * h / np.minimum(area[i], area[idx])
        order = order[np.where(o <= threshold)]
    return np.asarray(pick, dtype=np.int64)
