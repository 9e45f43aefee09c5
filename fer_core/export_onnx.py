"""``python -m fer_core.export_onnx FOLDER``: write ``FOLDER/model.onnx`` for a model folder, checked against torch.

:func:`export_onnx` exports an :class:`~fer_core.model.EmotionNet` with torch's ONNX exporter
(input ``"input"`` float32 ``(N, 3, S, S)``, output ``"logits"`` ``(N, num_classes)``, dynamic
``N``), then runs the file in ONNX Runtime on real face crops and compares the *probabilities* with
torch's, plain and balanced: the file is only put in place when they agree within
:data:`TOLERANCE`. The unfused network is exported: ONNX Runtime folds BatchNorm into the
convolutions itself, and the BatchNorm-folded export measured the same speed (1.18 vs 1.22 ms per
face, 8 faces, 1 thread, 2-core CPU), so the file keeps the model's own layers.

Default check faces: :data:`CHECK_FACES` (the astronaut photo's face, scikit-image, public domain,
cut by fer_core's MTCNN + aligned crop) and mirrored, shifted, darkened, blurred, covered, cut and
rotated versions of it (:func:`default_check_crops`);
training export (:mod:`fer_train.export`) passes FER+ Valid faces instead.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps
from torch import nn

from .calibration import probabilities
from .errors import ExportCheckError, FERError
from .hub import ONNX_NAME
from .model import EmotionNet, load_model
from .preprocess import crops_to_array

#: Largest allowed difference between the ONNX and torch probabilities on the check faces.
TOLERANCE: float = 1e-5
#: Folder of the face crops the default check uses.
CHECK_FACES: Path = Path(__file__).resolve().parent / "check_faces"


def default_check_crops() -> list[Image.Image]:
    """Real face crops for the export check: each ``*.png`` of :data:`CHECK_FACES` (RGB) and, of each,
    9 variants: mirrored, two crops shifted by 8 % of the side, darker (0.7x), blurred (Gaussian,
    radius 4 % of the side), the mouth covered (lower 38 % grey), the upper half alone, rotated 90
    and 180 degrees. The astronaut's smile alone gives the bundled model p(happiness) = 1.0 to
    float32 rounding, where any two networks agree; the covered, cut and rotated faces give spread
    probabilities (largest 0.37-0.90), where a wrong network shows.

    Returns:
        RGB ``PIL.Image`` crops, 10 per face.
    """
    crops: list[Image.Image] = []
    for path in sorted(CHECK_FACES.glob("*.png")):
        with Image.open(path) as img:
            face = img.convert("RGB")
        w, h = face.size
        dx, dy = round(0.08 * w), round(0.08 * h)
        covered = face.copy()
        ImageDraw.Draw(covered).rectangle((0, round(0.62 * h), w, h), fill=(128, 128, 128))
        crops += [face, ImageOps.mirror(face), face.crop((0, 0, w - dx, h - dy)), face.crop((dx, dy, w, h)),
                  ImageEnhance.Brightness(face).enhance(0.7), face.filter(ImageFilter.GaussianBlur(0.04 * w)),
                  covered, face.crop((0, 0, w, h // 2)), face.rotate(90), face.rotate(180)]
    return crops


def _write_onnx(model: nn.Module, path: Path, input_size: int, opset: int) -> None:
    dummy = torch.zeros((2, 3, input_size, input_size), dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notices
        # dynamo=False: the TorchScript exporter writes one self-contained file at opset 17 (the
        # dynamo exporter splits the weights into model.onnx.data and asks for opset 18)
        torch.onnx.export(model, (dummy,), str(path), input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                          do_constant_folding=True, dynamo=False)


def _onnx_logits(path: Path, batch: np.ndarray) -> np.ndarray:
    import onnxruntime

    options = onnxruntime.SessionOptions()  # a fresh session: the file is new
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    # all at once, then one face alone: the batch dimension must really be dynamic
    return np.concatenate([session.run(["logits"], {"input": batch})[0],
                           session.run(["logits"], {"input": batch[:1]})[0]])


def check_difference(path: str | os.PathLike, reference: nn.Module, model: EmotionNet,
                     crops: Sequence[Image.Image]) -> float:
    """Largest absolute difference between the probabilities of the ONNX file at ``path`` (ONNX
    Runtime, CPU) and of ``reference`` (torch, float32, CPU) on ``crops``, over both operating points
    (plain, and balanced when the config has a prior), the crops run as one batch and the first alone.

    Args:
        path: a ``model.onnx``. reference: the torch network it must agree with (logits ``(N, C)``).
        model: whose config gives the preprocessing and the probability math.
        crops: at least one face crop (PIL images).

    Returns:
        The difference, a probability in [0, 1].
    """
    batch = crops_to_array(crops, model.config)
    got = _onnx_logits(Path(path), batch)
    device = next(reference.parameters()).device
    with torch.inference_mode():
        want = reference.eval()(torch.from_numpy(batch).to(device)).float().cpu().numpy()
    want = np.concatenate([want, want[:1]])
    settings = [False, True] if model.config.prior is not None else [False]
    return max(float(np.abs(probabilities(got, model.config, b) - probabilities(want, model.config, b)).max())
               for b in settings)


def export_onnx(model: EmotionNet, out_path: str | os.PathLike, *, check_crops: Sequence[Image.Image] | None = None,
                opset: int = 17, reference: nn.Module | None = None) -> float:
    """Write ``model`` as an ONNX file and check it against torch before putting it in place.

    The file has input ``"input"`` float32 ``(N, 3, S, S)`` (:func:`fer_core.preprocess.crops_to_array`)
    and output ``"logits"`` float32 ``(N, num_classes)``, ``N`` dynamic; temperature and prior stay in
    ``config.json`` (:func:`fer_core.calibration.probabilities` applies them).

    Args:
        model: the model to export (any device; it is exported from a CPU float32 copy, in eval mode).
        out_path: where to write, normally ``FOLDER/model.onnx`` beside ``config.json``; replaced
            only when the check passes (written to a temporary file in the same folder first).
        check_crops: real face crops to check on (PIL images); ``None``: :func:`default_check_crops`.
        opset: ONNX opset version.
        reference: the torch network the file must agree with (default: ``model``); training export
            passes the model it just saved and loaded back.

    Returns:
        The largest absolute difference between ONNX Runtime's and torch's probabilities (<= 1e-5).

    Raises:
        ExportCheckError: the difference exceeds :data:`TOLERANCE` (message gives it); nothing written.
        ValueError: ``check_crops`` is empty.
    """
    crops = default_check_crops() if check_crops is None else list(check_crops)
    if not crops:
        raise ValueError("check_crops is empty: the export needs real face crops to check the file on")
    out_path = Path(out_path)
    net = EmotionNet(model.config)
    net.load_state_dict({k: v.detach().float().cpu() for k, v in model.state_dict().items()})
    net.eval()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")  # same folder: os.replace is atomic
    try:
        _write_onnx(net, tmp, model.config.input_size, opset)
        diff = check_difference(tmp, reference if reference is not None else net, model, crops)
        if not diff <= TOLERANCE:
            raise ExportCheckError(f"{out_path}: ONNX Runtime's probabilities differ from torch's by {diff:.3g} "
                                   f"(> {TOLERANCE:g}) on {len(crops)} check faces; the file was not written")
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return diff


def main(argv: list[str] | None = None) -> int:
    """CLI entry point: ``python -m fer_core.export_onnx FOLDER [--opset N]``."""
    p = argparse.ArgumentParser(prog="python -m fer_core.export_onnx", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", help="model folder with config.json + model.safetensors; model.onnx is written there")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    args = p.parse_args(argv)
    folder = Path(args.folder)
    if not folder.is_dir():
        print(f"error: {folder} is not a folder (download a Hub model first, e.g. with `hf download`)",
              file=sys.stderr)
        return 1
    try:
        diff = export_onnx(load_model(folder), folder / ONNX_NAME, opset=args.opset)
    except FERError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {folder / ONNX_NAME}: max |p_onnx - p_torch| = {diff:.2g} on the check faces")
    return 0


if __name__ == "__main__":
    sys.exit(main())
