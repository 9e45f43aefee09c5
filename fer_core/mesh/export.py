"""Export :class:`~fer_core.mesh.net.FaceMeshNet` with the shipped weights to ONNX.

``python -m fer_core.mesh.export [--out PATH]`` regenerates the shipped ``fer_core/mesh/face_mesh.onnx``
(opset 18, dynamic batch) that :class:`fer_core.mesh.runner.FaceMesh` runs with ONNX Runtime (``backend="onnx"``),
so that path needs neither torch nor the tflite file. Exported with torch's dynamo exporter, which folds the SAME
paddings into the convolutions: 45 Conv, 23 PRelu, 20 Add, 5 MaxPool, 3 Pad (channel padding), 2 Reshape.
"""

from __future__ import annotations

import argparse
from pathlib import Path

#: The shipped ONNX model.
DEFAULT_ONNX: Path = Path(__file__).with_name("face_mesh.onnx")
OPSET: int = 18


def export_onnx(out_path: str | Path = DEFAULT_ONNX, weights: str | Path | None = None) -> Path:
    """Write FaceMeshNet as ONNX: input ``image`` float32 ``(N, 3, 192, 192)`` in [0, 1]; outputs
    ``landmarks`` float32 ``(N, 468, 3)`` crop pixels and ``presence_logit`` float32 ``(N,)``.

    Args:
        out_path: file to write.
        weights: safetensors weights (default: the shipped ``face_landmark.safetensors``).

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.
    """
    import torch

    from .net import DEFAULT_WEIGHTS, INPUT_SIZE, load_facemesh_net

    net = load_facemesh_net(weights or DEFAULT_WEIGHTS)
    example = torch.rand(2, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    torch.onnx.export(net, (example,), str(out_path), input_names=["image"],
                      output_names=["landmarks", "presence_logit"], opset_version=OPSET, dynamo=True,
                      dynamic_shapes=({0: torch.export.Dim("batch")},), optimize=True, external_data=False)
    return Path(out_path)


def main(argv: list[str] | None = None) -> None:
    """Command line: export to ``--out`` (default: the shipped file)."""
    parser = argparse.ArgumentParser(prog="python -m fer_core.mesh.export", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_ONNX, help=f"output file (default: {DEFAULT_ONNX})")
    print(export_onnx(parser.parse_args(argv).out))


if __name__ == "__main__":
    main()
