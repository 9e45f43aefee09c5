"""Export facenet-pytorch's pretrained MTCNN networks (P-Net, R-Net, O-Net) to ONNX.

MTCNN: Zhang et al., "Joint Face Detection and Alignment Using Multitask Cascaded Convolutional
Networks", IEEE Signal Processing Letters 23(10), 2016. Weights: facenet-pytorch 2.5.3
(timesler/facenet-pytorch, MIT), converted by its author from the MTCNN authors' Caffe models.

Run ``python -m fer_core.mtcnn.export`` (needs torch, onnx and facenet-pytorch) to regenerate
``pnet.onnx``, ``rnet.onnx`` and ``onet.onnx`` beside this file; the library itself only reads them
(:mod:`fer_core.mtcnn.pipeline`), without torch.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: Folder of the committed ONNX files.
HERE = Path(__file__).resolve().parent
#: ONNX opset of the exported graphs.
OPSET = 18
#: File name of each network, by facenet-pytorch class name.
FILES = {"PNet": "pnet.onnx", "RNet": "rnet.onnx", "ONet": "onet.onnx"}
#: Output names of each network, in facenet-pytorch's order: (box regression, face probability[, landmarks]).
OUTPUTS = {"PNet": ["reg", "prob"], "RNet": ["reg", "prob"], "ONet": ["reg", "landmarks", "prob"]}
#: Input side of R-Net and O-Net (P-Net takes any size >= 12).
INPUT_SIDE = {"PNet": 12, "RNet": 24, "ONet": 48}


def export(out_dir: Path = HERE, opset: int = OPSET) -> list[Path]:
    """Write the three networks as ONNX files into ``out_dir``.

    Inputs are float32 ``(N, 3, H, W)`` RGB scaled as ``(pixel - 127.5) / 128``; ``N`` is dynamic,
    and ``H, W`` too for P-Net (24x24 for R-Net, 48x48 for O-Net). Outputs (float32) as facenet-pytorch's
    ``forward``: P-Net ``reg (N, 4, h, w)``, ``prob (N, 2, h, w)``; R-Net ``reg (N, 4)``, ``prob (N, 2)``;
    O-Net ``reg (N, 4)``, ``landmarks (N, 10)``, ``prob (N, 2)``.

    Args:
        out_dir: destination folder (created if missing).
        opset: ONNX opset (>= 18: torch's exporter writes 18 natively).

    Returns:
        The written paths, P-Net, R-Net, O-Net.

    Raises:
        ImportError: torch, onnx or facenet-pytorch is not installed.
    """
    import torch
    from facenet_pytorch.models.mtcnn import ONet, PNet, RNet
    from torch.export import Dim

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for cls in (PNet, RNet, ONet):
        name = cls.__name__
        net = cls(pretrained=True).eval()
        side = INPUT_SIDE[name]
        example = torch.zeros(2, 3, side if name != "PNet" else 37, side if name != "PNet" else 53)
        dynamic = {0: Dim("batch", min=1)}
        if name == "PNet":
            dynamic.update({2: Dim("height", min=12), 3: Dim("width", min=12)})
        path = out_dir / FILES[name]
        with torch.no_grad():
            torch.onnx.export(net, (example,), str(path), input_names=["input"], output_names=OUTPUTS[name],
                              dynamic_shapes=(dynamic,), opset_version=opset, dynamo=True, external_data=False,
                              verbose=False)
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m fer_core.mtcnn.export [--out DIR] [--opset N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: beside this file)")
    parser.add_argument("--opset", type=int, default=OPSET, help=f"ONNX opset (default {OPSET})")
    args = parser.parse_args(argv)
    for path in export(args.out, args.opset):
        print(f"{path} ({path.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
