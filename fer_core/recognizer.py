"""EmotionRecognizer: image in, one :class:`FaceResult` per face out.

image -> :func:`~fer_core.io.load_image` -> :class:`~fer_core.detect.FaceDetector` (MTCNN, then
FaceMesh verification) -> :func:`~fer_core.align.crop_face` -> :mod:`~fer_core.preprocess` -> one
batched run of the classifier (:mod:`fer_core.classifier`: ONNX Runtime or torch) ->
``softmax(logits / temperature)`` (:mod:`fer_core.calibration`).

With ``backend="onnx"`` (the default when onnxruntime is installed) nothing here imports torch.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from .align import crop_face
from .classifier import CLASSIFY_BATCH, Classifier, OnnxClassifier, TorchClassifier, load_classifier
from .config import ModelConfig
from .detect import Detection, FaceDetector
from .errors import InvalidImageError
from .hub import DEFAULT_MODEL_DIR, ONNX_NAME, resolve_model_folder
from .io import ImageInput, load_image
from .options import (
    DEFAULT_HALF_LIFE_S,
    DEFAULT_THRESHOLD,
    PHOTO_MIN_FACE_SIZE,
    PredictOptions,
    check_bool,
    check_max_faces,
    check_min_face_size,
    resolve_backend,
)
from .result import FaceResult

if TYPE_CHECKING:
    from .model import EmotionNet
    from .saliency import FaceSaliency
    from .video_analysis import VideoAnalysis

__all__ = ["BUNDLED_SOURCE", "CLASSIFY_BATCH", "DEFAULT_MODEL_DIR", "EmotionRecognizer"]

#: :attr:`EmotionRecognizer.source` of the bundled default model.
BUNDLED_SOURCE: str = "bundled default"


class EmotionRecognizer:
    """Multi-face facial-expression recognizer.

    Build it with :meth:`from_pretrained`; then :meth:`predict` one image, :meth:`predict_batch`
    several, or :meth:`classify_crops` for faces that are already cropped.

    The classifier is an :class:`~fer_core.classifier.OnnxClassifier` (``model.onnx`` in ONNX
    Runtime, no torch) or a :class:`~fer_core.classifier.TorchClassifier` (a BatchNorm-folded copy of
    an :class:`EmotionNet`, made once: changing the model's weights afterwards does not reach it;
    build a new recognizer instead). Both find the same faces (boxes within 1e-3 px) and give the same
    probabilities within 1e-4 on the same crops; end to end up to about 5e-3, as boxes 1e-4 px apart can move a
    crop pixel by one grey level.

    Args:
        model: a loaded :class:`EmotionNet` (wrapped in a ``TorchClassifier`` on ``device``) or a
            classifier from :func:`~fer_core.classifier.load_classifier`.
        detector: the face detector; default ``FaceDetector()`` on the classifier's backend
            (threshold 0.9, adaptive min size, FaceMesh verification).
        device: torch device for an :class:`EmotionNet` ``model``.
        source: where the model came from (folder or repo id), for display.
        revision: the Hub commit the model was loaded from, if any.

    Attributes:
        classifier: the classifier; backend: ``"onnx"`` or ``"torch"`` (the classifier's);
        model: the :class:`EmotionNet` for the torch backend, ``None`` for ONNX.
    """

    def __init__(
        self,
        model: EmotionNet | Classifier,
        detector: FaceDetector | None = None,
        device: Any = "cpu",
        source: str = "<in memory>",
        revision: str | None = None,
    ) -> None:
        if isinstance(model, OnnxClassifier | TorchClassifier):
            self.classifier: OnnxClassifier | TorchClassifier = model
        else:
            self.classifier = TorchClassifier(model, device)
        self.backend = "onnx" if isinstance(self.classifier, OnnxClassifier) else "torch"
        self.model: EmotionNet | None = getattr(self.classifier, "model", None)
        self.device = getattr(self.classifier, "device", "cpu")
        self.detector = detector if detector is not None else FaceDetector(device=self.device, backend=self.backend)
        self.source = source
        self.revision = revision

    @classmethod
    def from_pretrained(
        cls,
        model_id: str | os.PathLike | None = None,
        revision: str | None = None,
        *,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        device: Any = "cpu",
        threshold: float = DEFAULT_THRESHOLD,
        min_face_size: int | None = None,
        verify_faces: bool = True,
        backend: str | None = None,
        threads: int | None = None,
    ) -> EmotionRecognizer:
        """Load a model from the bundled default, a local folder, or a Hugging Face Hub repo.

        Args:
            model_id: ``None`` for the bundled default model; a folder holding ``config.json`` +
                ``model.safetensors``; or a Hub repo id ``"user/name"`` (downloaded with
                huggingface_hub and cached; works offline from the cache, e.g. with
                ``HF_HUB_OFFLINE=1``; ``HF_ENDPOINT`` selects the server).
            revision: Hub branch, tag or commit (ignored for folders).
            cache_dir, local_files_only, token: passed to ``huggingface_hub.snapshot_download``.
            device: torch device (``backend="torch"``; the ONNX backend runs on the CPU).
            threshold, min_face_size: face-detector defaults (see :class:`FaceDetector`).
            verify_faces: confirm detections with FaceMesh by default (``FaceDetector(verify=...)``).
            backend: ``"onnx"`` (ONNX Runtime: the model's ``model.onnx``, MTCNN and FaceMesh as
                ONNX; torch is never imported) or ``"torch"``; ``None``: ``"onnx"`` when onnxruntime is
                installed and the model has a ``model.onnx`` (and a non-CPU ``device`` is not asked
                for), else ``"torch"``.
            threads: ONNX Runtime intra-op threads (``None``: ``FER_THREADS``, else
                ``min(cpu_count, 4)``; :mod:`fer_core.onnx_runtime`).

        Raises:
            ModelLoadError: the folder or repo does not exist or cannot be reached, ``config.json``
                is missing or invalid, or the weights are missing or do not match it (for
                ``backend="onnx"``: no ``model.onnx``; ``python -m fer_core.export_onnx FOLDER``
                writes one).
            InvalidArgumentError: an unknown backend, or a non-CPU device for ``"onnx"``.
        """
        source = BUNDLED_SOURCE if model_id is None else str(model_id)
        hub = dict(cache_dir=cache_dir, local_files_only=local_files_only, token=token)
        if backend is None:
            backend = resolve_backend(None)
            # torch only where it is installed: otherwise a wrong path or an unreachable Hub must give the
            # ONNX loader's real ModelLoadError, not "install torch"
            if (backend == "onnx" and importlib.util.find_spec("torch") is not None
                    and (str(device) != "cpu" or not _has_onnx(model_id, revision, hub))):
                backend = "torch"
        backend = resolve_backend(backend)
        classifier = load_classifier(model_id, revision, backend=backend, device=device, name=source, threads=threads,
                                     **hub)
        detector = FaceDetector(threshold=threshold, min_face_size=min_face_size, device=device, verify=verify_faces,
                                backend=backend, threads=threads)
        return cls(classifier, detector, device=device, source=source, revision=classifier.revision)

    @property
    def labels(self) -> list[str]:
        """The model's label names in output order (the 8 FER+ labels for FER+ models)."""
        return list(self.config.labels)

    @property
    def config(self) -> ModelConfig:
        """The model's :class:`ModelConfig` (from its ``config.json``)."""
        return self.classifier.config

    def options(self, threshold: Any = None, min_face_size: Any = None, align: bool | None = None,
                balanced: bool | None = None, verify_faces: bool | None = None) -> PredictOptions:
        """Validated per-call options for this recognizer: every value left ``None`` is its own
        default (its detector's threshold, minimum face size and ``verify``, its ``config.json``'s
        ``align`` and ``balanced``); a ``min_face_size`` of 0 means the default for the input (see
        :meth:`predict`).

        Raises:
            InvalidArgumentError: a value is out of range, an on/off value is not a boolean (or
                ``"true"``/``"false"``), or balanced decisions are asked of a model without a class prior.
        """
        align, balanced = check_bool("align", align), check_bool("balanced", balanced)
        verify_faces = check_bool("verify_faces", verify_faces)
        return PredictOptions(
            threshold=self.detector.threshold if threshold is None else threshold,
            min_face_size=self.detector.min_face_size if min_face_size is None else min_face_size,
            align=self.config.align if align is None else align,
            balanced=self.config.resolve_balanced(balanced),
            verify_faces=self.detector.verify if verify_faces is None else verify_faces,
        )

    def classify_crops(self, crops: Sequence[ImageInput], *, batch_size: int = CLASSIFY_BATCH,
                       balanced: bool | None = None) -> np.ndarray:
        """Emotion probabilities of faces that are already cropped (no detection, no alignment).

        Args:
            crops: N face crops, each anything :func:`load_image` accepts.
            batch_size: faces per forward pass.
            balanced: balanced (prior-corrected) instead of plain probabilities; ``None`` for the
                model's default (see :meth:`EmotionNet.probabilities`).

        Returns:
            float32 ``(N, num_classes)``, rows summing to 1, columns in :attr:`labels` order;
            ``(0, num_classes)`` for no crops.

        Raises:
            InvalidImageError: a crop is not a valid image (message gives its index).
            InvalidArgumentError: ``balanced=True`` for a model without a class prior.
        """
        images = [_load_indexed(c, i) for i, c in enumerate(crops)]
        return self.classifier.probabilities(images, balanced, batch_size)

    def predict(
        self,
        image: ImageInput,
        *,
        threshold: float | None = None,
        min_face_size: int | None = None,
        align: bool | None = None,
        balanced: bool | None = None,
        max_faces: int | None = None,
        dropped: list[int] | None = None,
        verify_faces: bool | None = None,
        rejected: list[int] | None = None,
        photo: bool = True,
        mesh: bool | None = None,
    ) -> list[FaceResult]:
        """Detect every face in one image and classify them all in one batched forward pass
        (:data:`CLASSIFY_BATCH` faces per pass).

        Args:
            image: a path, encoded bytes, ``PIL.Image`` or uint8 ``(H, W, 3)`` RGB array.
            threshold: detection-probability threshold (0..1) for this call.
            min_face_size: smallest face side in pixels for this call (>= 12); ``None`` (or 0): the
                detector's own, and if that is adaptive, :data:`~fer_core.options.PHOTO_MIN_FACE_SIZE`
                (20 px) for a still photo, else the adaptive size (shorter side / 12).
            align: override the model config's eye-levelling for this call.
            balanced: balanced (prior-corrected) probabilities and labels instead of plain ones;
                ``None`` for the model's default, ``config.balanced`` (see
                :meth:`EmotionNet.probabilities`).
            max_faces: classify at most this many faces (>= 0), the highest detection scores
                first (ties: the larger box), so the work of a crowd photo is bounded; ``None``
                classifies every face found. The others are dropped, not returned.
            dropped: if given, the number of faces dropped by ``max_faces`` (0 if none) is
                appended to it.
            verify_faces: confirm each MTCNN box with FaceMesh and drop those under the detector's
                ``face_prob_threshold`` (``None``: the detector's ``verify``, on by default).
            rejected: if given, the number of boxes FaceMesh rejected (0 if none) is appended to it.
            photo: ``True`` for a still photo (the small-face default above); ``False`` for a video
                or live frame (the adaptive, speed-first smallest face).
            (``align``, ``balanced`` and ``verify_faces`` take booleans or ``"true"``/``"false"``.)
            mesh: ``None``: each :class:`FaceResult` carries FaceMesh's 468 points when verification
                computed them; ``True``: compute them even without verification; ``False``: leave
                them out.

        Returns:
            One :class:`FaceResult` per face, in reading order (rows top to bottom, left to right); empty if
            there is no face, including an image smaller than the smallest face searched for (e.g.
            16x16 with the adaptive minimum of 20 px).

        Raises:
            InvalidImageError: the image is invalid (see :func:`load_image`).
            InvalidArgumentError: ``threshold``, ``min_face_size`` or ``max_faces`` out of range, or
                ``balanced=True`` for a model without a class prior.
        """
        return self.predict_batch([image], threshold=threshold, min_face_size=min_face_size, align=align,
                                  balanced=balanced, max_faces=max_faces, dropped=dropped, verify_faces=verify_faces,
                                  rejected=rejected, photo=photo, mesh=mesh)[0]

    def predict_batch(
        self,
        images: Sequence[ImageInput],
        *,
        threshold: float | None = None,
        min_face_size: int | None = None,
        align: bool | None = None,
        balanced: bool | None = None,
        max_faces: int | None = None,
        max_total_faces: int | None = None,
        dropped: list[int] | None = None,
        verify_faces: bool | None = None,
        rejected: list[int] | None = None,
        photo: bool = True,
        mesh: bool | None = None,
    ) -> list[list[FaceResult]]:
        """:meth:`predict` for several images; the faces of all of them go through the
        classifier together, :data:`CLASSIFY_BATCH` at a time.

        All images are validated before any work is done, so a bad one fails fast; callers that
        must keep going past bad files (the CLI, the app) load each with :func:`load_image` first.

        Args:
            images: N images, each anything :meth:`predict` accepts.
            threshold, min_face_size, align, balanced, verify_faces, photo, mesh: as in :meth:`predict`.
            max_faces: at most this many faces per image (:func:`~fer_core.detect.limit_faces`);
                ``None``: no cap.
            max_total_faces: at most this many faces over all the images (the highest scores
                of the whole call); ``None``: no cap.
            dropped: if given, one count per image (in input order) of the faces dropped by the caps
                is appended to it.
            rejected: if given, one count per image (in input order) of the boxes FaceMesh rejected.

        Returns:
            One list of :class:`FaceResult` per input image, in input order.

        Raises:
            InvalidImageError: an image is invalid (message gives its index).
            InvalidArgumentError: ``threshold``, ``min_face_size``, ``max_faces`` or ``max_total_faces``
                out of range, or ``balanced=True`` for a model without a class prior.
        """
        max_faces, max_total_faces = check_max_faces(max_faces), check_max_faces(max_total_faces, "max_total_faces")
        verify_faces, align, balanced = (check_bool(name, value) for name, value in
                                         (("verify_faces", verify_faces), ("align", align), ("balanced", balanced)))
        self.config.resolve_balanced(balanced)  # a bad request fails before any detection work
        verify = self.detector.verify if verify_faces is None else verify_faces
        min_face = check_min_face_size(min_face_size)
        if min_face is None and self.detector.min_face_size is None and photo:
            min_face = PHOTO_MIN_FACE_SIZE
        pil_images = [_load_indexed(img, i) for i, img in enumerate(images)]
        detections: list[list[Detection]] = self.detector.detect_batch(
            pil_images, threshold=threshold, min_face_size=min_face, verify=verify, rejected=rejected,
            max_faces=max_faces, max_total=max_total_faces, dropped=dropped)
        if mesh and not verify:
            detections = [[replace(d, face_prob=None) for d in dets]  # computed, but these faces were not verified
                          for dets in self.detector.verify_faces(pil_images, detections, drop=False)[0]]
        elif mesh is False:
            detections = [[replace(d, mesh=None) for d in dets] for dets in detections]
        return self.classify_detections(pil_images, detections, align=align, balanced=balanced)

    def classify_detections(self, images: Sequence[Image.Image], detections: Sequence[Sequence[Detection]], *,
                            align: bool | None = None, balanced: bool | None = None) -> list[list[FaceResult]]:
        """Crop, align and classify faces already found: ``detections[i]`` in ``images[i]`` (RGB
        PIL images, e.g. from :func:`load_image`). :meth:`predict_batch` is this after detection;
        video analysis also uses it to reuse a frame's detections on the next frames.

        Returns:
            One list of :class:`FaceResult` per image, in the order of its detections.

        Raises:
            InvalidArgumentError: ``balanced=True`` for a model without a class prior.
        """
        cfg = self.config
        do_align = cfg.align if align is None else bool(align)
        crops = [
            crop_face(img, d.box, d.landmarks, margin=cfg.crop_margin, align=do_align)
            for img, dets in zip(images, detections)
            for d in dets
        ]
        probs = self.classifier.probabilities(crops, balanced, CLASSIFY_BATCH)
        results, k = [], 0
        for dets in detections:
            faces = []
            for d in dets:
                row = probs[k]
                k += 1
                p = {label: float(v) for label, v in zip(self.labels, row)}
                faces.append(FaceResult(d.box, d.score, d.landmarks, p, self.labels[int(row.argmax())],
                                        face_prob=d.face_prob, mesh=d.mesh))
            results.append(faces)
        return results

    def torch_copy(self) -> EmotionRecognizer:
        """This recognizer on the torch backend, for what only torch can do (:meth:`explain`): the same
        model (bundled, folder, or Hub repo at the same :attr:`revision`) loaded from ``model.safetensors``,
        sharing this recognizer's detector; ``self`` when it is torch-backed already. Loading takes a few
        seconds and 0.7-1 GB (torch and the network); callers keep the copy.

        Raises:
            MissingDependencyError: torch is not installed (``pip install 'fer-core[torch]'``).
            ModelLoadError: the model has no ``model.safetensors`` (an ONNX-only folder), or its source
                cannot be reached again.
        """
        if self.backend == "torch":
            return self
        source = None if self.source == BUNDLED_SOURCE else self.source
        classifier = load_classifier(source, self.revision, backend="torch", name=self.source)
        return EmotionRecognizer(classifier, detector=self.detector, source=self.source, revision=self.revision)

    def explain(self, image: ImageInput, *, target: str | None = None, method: str = "gradcam", batch_size: int = 8,
                faces: Sequence[FaceResult] | None = None, layer: str | None = None, align: bool | None = None,
                **predict_options: Any) -> list[FaceSaliency]:
        """Saliency per face: where the network looked for a label (Grad-CAM: Selvaraju et al., ICCV
        2017, through the ``grad-cam`` package), on the unfused network; torch backend only.

        See :func:`fer_core.saliency.explain` for every argument: ``target`` a label name (``None``:
        each face's predicted label), ``method`` ``"gradcam"``, ``"gradcam++"`` or ``"layercam"``,
        ``faces`` from an earlier :meth:`predict` to skip detection, ``layer`` a module path.

        Returns:
            One :class:`~fer_core.saliency.FaceSaliency` per face: ``heatmap`` float32 ``(S, S)`` in
            [0, 1] over the face crop, ``image_heatmap`` float32 ``(H, W)`` in [0, 1] in image pixels.

        Raises:
            InvalidArgumentError: the ONNX backend (use ``backend="torch"``), an unknown target,
                method or layer, or ``batch_size`` < 1.
            MissingDependencyError: grad-cam is not installed (``pip install 'fer-core[torch]'``).
        """
        from .saliency import explain

        return explain(self, image, target=target, method=method, batch_size=batch_size, faces=faces, layer=layer,
                       align=align, **predict_options)

    def analyze_video(self, source: str | os.PathLike, *, sample_fps: float | None = None,
                      max_seconds: float | None = None, smoothing: float | None = None, progress: bool = True,
                      **options: Any) -> VideoAnalysis:
        """Track every face through a video file and record its expression over time.

        See :func:`fer_core.video_analysis.analyze_video` for every option (``threshold``,
        ``min_face_size``, ``align``, ``balanced``, ``max_missed_s``, ``batch_frames``, ``detect_every``,
        and the work caps ``max_frames``, decoded frames, ``max_faces``, faces classified per frame,
        and ``time_budget_s``, seconds of analysis).

        Args:
            source: path to a video file (mp4, webm, mov, avi, mkv, ...; audio is ignored).
            sample_fps: analyse at most this many frames per second, up to 60 (``None`` or 0: every frame).
            max_seconds: analyse only the first seconds of the video (``None`` or 0: all).
            smoothing: EMA half-life of the per-face probabilities in seconds (``None``: the
                default, :data:`fer_core.options.DEFAULT_HALF_LIFE_S`; 0: none).
            progress: show a tqdm progress bar.

        Returns:
            A :class:`~fer_core.video_analysis.VideoAnalysis` (``.to_dataframe()``, ``.summary()``,
            ``.write_annotated(path)``, ``.to_csv(path)``, ``.to_json(path)``;
            ``.truncated`` says when ``max_frames`` or ``time_budget_s`` stopped it early).

        Raises:
            InvalidVideoError: not a readable video (missing, empty, corrupt, too large frames).
            InvalidArgumentError: an option is out of range.
        """
        from .video_analysis import analyze_video

        return analyze_video(self, source, sample_fps=sample_fps, max_seconds=max_seconds,
                             smoothing=DEFAULT_HALF_LIFE_S if smoothing is None else smoothing,
                             progress=progress, **options)


def _has_onnx(model_id: str | os.PathLike | None, revision: str | None, hub: dict[str, Any]) -> bool:
    """Whether a model (bundled, folder or Hub repo) has a ``model.onnx``; ``False`` when that cannot
    be told (the torch loader then gives the real error)."""
    if model_id is None:
        return (DEFAULT_MODEL_DIR / ONNX_NAME).is_file()
    if Path(model_id).is_dir():
        return (Path(model_id) / ONNX_NAME).is_file()
    try:
        folder, _ = resolve_model_folder(model_id, revision, files=(ONNX_NAME,), **hub)
    except Exception:  # noqa: BLE001 - unreachable, missing file, bad id: fall back to torch, which reports it
        return False
    return (folder / ONNX_NAME).is_file()


def _load_indexed(image: ImageInput, index: int) -> Image.Image:
    try:
        return load_image(image)
    except InvalidImageError as exc:
        raise InvalidImageError(f"image {index}: {exc.source}", exc.reason) from exc
