"""``config.json``: the contract between training and serving.

Everything needed to rebuild a model and prepare its input travels in this file beside
``model.safetensors``. :class:`ModelConfig` validates it, so a wrong or missing key is reported as a
:class:`~fer_core.errors.ModelLoadError` naming the key, not as a failure deep inside torch.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .backbones import IMAGENET_MEAN, IMAGENET_STD, backbone_names, get_backbone
from .errors import InvalidArgumentError, ModelLoadError
from .labels import LABELS


@dataclass
class ModelConfig:
    """Architecture and preprocessing of one emotion model, as stored in ``config.json``.

    Attributes:
        backbone: a name from :func:`fer_core.backbones.backbone_names`: a torchvision model name,
            or one registered with :func:`fer_core.backbones.register_backbone`.
        labels: class names in output order (default: the 8 FER+ labels).
        input_size: side of the square network input, pixels (16..1024).
        color_mode: ``"grayscale"`` (crop converted to gray, replicated to 3 channels, as FER+
            faces are gray) or ``"rgb"``.
        native_size: side in pixels the crop is first resized to before being resized to
            ``input_size``, so inference sees the same resolution as the training data (48 for
            FER+'s 48x48 faces); ``None`` resizes straight to ``input_size``.
        mean, std: per-channel normalisation of pixel values scaled to [0, 1] (3 floats each).
        temperature: softmax temperature ``T > 0`` fitted on validation data (Guo et al. 2017,
            "On Calibration of Modern Neural Networks"); probabilities are ``softmax(logits / T)``.
        crop_margin: extra border around the detector's box, as a fraction of the box's longer
            side, added before cropping (0.2 = 20 % larger square crop, -0.05 = 5 % smaller;
            -0.5..2). The default -0.05 matches FER2013's tight crops: on 860 FER+ Train faces
            MTCNN found, the crop side was a median 0.951x (margin -0.049, IQR -0.12..+0.04) of
            MTCNN's longer box side (``benchmarks/bench_crop_margin.py --split train``). Through the
            whole pipeline (``python -m research.pipeline_eval``, faces upscaled to 96/160/320 px) it
            measures FER+ Valid accuracy 0.876/0.886/0.885 against 0.876/0.871/0.879 with 0.0
            (the classifier on the dataset's own crops: 0.89; the bundled model's first stage).
        align: rotate each face so its eyes are level before cropping.
        dropout: dropout probability before the classification head (0..1).
        prior: the training set's class frequencies in ``labels`` order (positive, summing to 1),
            or ``None``; needed for balanced decisions.
        tau: strength of the balanced (logit-adjusted) operating point, ``>= 0``: balanced
            probabilities are ``softmax(logits / temperature - tau * log(prior))``, i.e. the
            calibrated probabilities divided by ``prior ** tau`` and renormalised (post-hoc logit
            adjustment, Menon et al. 2021, "Long-tail learning via logit adjustment", ICLR; ``tau
            = 1`` targets the balanced error, 0 is the plain argmax).
        balanced: the model's default operating point: ``True`` reports balanced probabilities
            unless a caller asks otherwise (needs ``prior``).
        recipe: free-form summary of how the model was trained (for the model card).
    """

    backbone: str = "mobilenet_v2"
    labels: list[str] = field(default_factory=lambda: list(LABELS))
    input_size: int = 96
    color_mode: str = "grayscale"
    native_size: int | None = 48
    mean: list[float] = field(default_factory=lambda: list(IMAGENET_MEAN))
    std: list[float] = field(default_factory=lambda: list(IMAGENET_STD))
    temperature: float = 1.0
    crop_margin: float = -0.05
    align: bool = True
    dropout: float = 0.2
    prior: list[float] | None = None
    tau: float = 1.0
    balanced: bool = False
    recipe: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        """Number of output classes, ``len(labels)``."""
        return len(self.labels)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field's type and range.

        Raises:
            ModelLoadError: naming the first bad field and what was expected.
        """

        def bad(key: str, expected: str) -> ModelLoadError:
            return ModelLoadError(
                f"config.json: '{key}' must be {expected}, got {getattr(self, key)!r}"
            )

        if self.backbone not in backbone_names():
            raise bad("backbone", f"one of {', '.join(backbone_names())} (a backbone registered by other "
                                  "code, fer_core.register_backbone, needs that code imported first)")
        if (
            not isinstance(self.labels, list)
            or len(self.labels) < 2
            or not all(isinstance(x, str) and x for x in self.labels)
            or len(set(self.labels)) != len(self.labels)
        ):
            raise bad("labels", "a list of at least 2 distinct non-empty strings")
        if not isinstance(self.input_size, int) or not 16 <= self.input_size <= 1024:
            raise bad("input_size", "an integer from 16 to 1024")
        min_side = get_backbone(self.backbone).min_input_size
        if self.input_size < min_side:
            raise bad("input_size", f"at least {min_side} for backbone {self.backbone}")
        if self.color_mode not in ("grayscale", "rgb"):
            raise bad("color_mode", "'grayscale' or 'rgb'")
        if self.native_size is not None and (
            not isinstance(self.native_size, int) or not 8 <= self.native_size <= 1024
        ):
            raise bad("native_size", "null or an integer from 8 to 1024")
        for key in ("mean", "std"):
            value = getattr(self, key)
            if (
                not isinstance(value, list)
                or len(value) != 3
                or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in value)
            ):
                raise bad(key, "a list of 3 finite numbers")
        if not all(s > 0 for s in self.std):
            raise bad("std", "3 positive numbers")
        t = self.temperature
        if not isinstance(t, (int, float)) or not math.isfinite(t) or t <= 0:
            raise bad("temperature", "a finite number > 0")
        if not isinstance(self.crop_margin, (int, float)) or not -0.5 <= self.crop_margin <= 2:
            raise bad("crop_margin", "a number from -0.5 to 2")
        if not isinstance(self.align, bool):
            raise bad("align", "true or false")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise bad("dropout", "a number in [0, 1)")
        if self.prior is not None and (
            not isinstance(self.prior, list)
            or len(self.prior) != len(self.labels)
            or not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in self.prior)
            or abs(sum(self.prior) - 1.0) > 1e-3
        ):
            raise bad("prior", f"null or {len(self.labels)} positive numbers summing to 1")
        if not isinstance(self.tau, (int, float)) or not math.isfinite(self.tau) or not 0 <= self.tau <= 5:
            raise bad("tau", "a number from 0 to 5")
        if not isinstance(self.balanced, bool):
            raise bad("balanced", "true or false")
        if self.balanced and self.prior is None:
            raise bad("balanced", "false when there is no 'prior'")
        if not isinstance(self.recipe, dict):
            raise bad("recipe", "an object")

    def resolve_balanced(self, balanced: bool | None) -> bool:
        """The operating point a call asks for: ``balanced``, or this model's default when ``None``.

        Raises:
            InvalidArgumentError: balanced decisions asked of a model without ``prior``, or ``balanced`` is
                neither a boolean nor ``"true"``/``"false"`` (:func:`fer_core.options.check_bool`).
        """
        from .options import check_bool

        balanced = check_bool("balanced", balanced)
        wanted = self.balanced if balanced is None else balanced
        if wanted and self.prior is None:
            raise InvalidArgumentError("balanced decisions need the class prior, and this model's config.json has none")
        return wanted

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config.json") -> ModelConfig:
        """Build and validate a config from a parsed ``config.json``.

        Unknown keys are ignored (Hub tooling adds some). ``num_classes``, if present, must equal
        ``len(labels)``.

        Raises:
            ModelLoadError: ``data`` is not an object, ``backbone`` is missing, a value is
                invalid, or ``num_classes`` disagrees with ``labels``.
        """
        if not isinstance(data, dict):
            raise ModelLoadError(f"{source}: expected a JSON object, got {type(data).__name__}")
        if "backbone" not in data:
            raise ModelLoadError(f"{source}: missing required key 'backbone'")
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        try:
            config = cls(**kwargs)
        except ModelLoadError as exc:
            raise ModelLoadError(f"{source}: {exc}".replace("config.json: ", "")) from exc
        if "num_classes" in data and data["num_classes"] != config.num_classes:
            raise ModelLoadError(
                f"{source}: 'num_classes' is {data['num_classes']!r} but 'labels' has "
                f"{config.num_classes} entries"
            )
        return config

    @classmethod
    def from_file(cls, path: str | Path) -> ModelConfig:
        """Read and validate a ``config.json`` file.

        Raises:
            ModelLoadError: the file is missing, not valid JSON, or invalid (see :meth:`from_dict`).
        """
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ModelLoadError(f"{path}: config.json not found") from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"{path}: not a readable JSON file ({exc})") from exc
        return cls.from_dict(data, source=str(path))

    def to_dict(self) -> dict[str, Any]:
        """The JSON-serialisable dict written to ``config.json`` (includes ``num_classes``)."""
        data = dataclasses.asdict(self)
        data["num_classes"] = self.num_classes
        return data
