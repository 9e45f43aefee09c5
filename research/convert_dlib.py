"""Read dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) into PyTorch.

The ``.dat`` file is dlib's own serialisation of the trained ``anet_type`` network (dlib's
``dnn_face_recognition_ex.cpp``); it ships, CC0, in the PyPI package ``face-recognition-models``,
from which it is read in place (never copied into this repository). This module parses that
format directly, without dlib, and fills :class:`research.dlib_resnet.DlibResNet`:

- integers: one byte ``0x80 * negative + number_of_bytes``, then the magnitude little-endian;
- floats: an integer mantissa and an integer exponent (``mantissa * 2 ** exponent``);
- strings: an integer length, then the bytes; bools: the characters ``'1'`` / ``'0'``;
- tensors: version 2, ``num_samples, k, nr, nc``, then float32 little-endian values;
- a network is serialised outer layer first: the loss, each layer's version number down to the
  input layer, then each computational layer's details from the input up (``con_4``,
  ``affine_``, ``relu_``, ``max_pool_2``, ``avg_pool_2``, ``add_prev_``, ``fc_2``), each followed
  by 3 bools and 3 (empty) tensors of training state. Tag and skip layers carry no details.

``python -m research.convert_dlib --out dlib_face_resnet.safetensors`` writes the converted
descriptor network; ``--pretrained dlib-face`` in ``python -m fer_train`` uses
:func:`dlib_backbone_state_dict`. ``research/tests/test_convert_dlib.py`` proves the conversion against
dlib's own ``compute_face_descriptor`` on real faces.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from research.dlib_resnet import DLIB_MEAN_RGB, DlibResNet

#: The file's name inside the ``face_recognition_models`` package.
DLIB_MODEL_FILE = "dlib_face_recognition_resnet_model_v1.dat"


class DlibFormatError(ValueError):
    """The file is not the dlib face-recognition ResNet this converter knows."""


def find_dlib_model() -> Path:
    """Path of ``dlib_face_recognition_resnet_model_v1.dat`` in the installed
    ``face-recognition-models`` package (located without importing it).

    Raises:
        FileNotFoundError: the package is not installed (the message says how to install it).
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        for folder in spec.submodule_search_locations:
            path = Path(folder) / "models" / DLIB_MODEL_FILE
            if path.is_file():
                return path
    raise FileNotFoundError(
        f"{DLIB_MODEL_FILE} not found: pip install face-recognition-models==0.3.0 "
        "(CC0 weights of dlib's face-recognition ResNet), or pass the file's path"
    )


@dataclass
class DlibLayer:
    """One computational layer read from the file: dlib's layer name, its integer settings and
    its parameters as float32 arrays (``weight``/``bias`` for ``con_4`` and ``fc_2``,
    ``gamma``/``beta`` for ``affine_``)."""

    kind: str
    settings: dict[str, int] = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNet:
    """A parsed dlib network: input means (RGB, 0..255), input side, layers from input to output."""

    mean_rgb: tuple[float, float, float]
    input_size: int
    layers: list[DlibLayer]


class _Reader:
    """Sequential reader of dlib's serialisation primitives."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def need(self, n: int) -> None:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"file ends early (at byte {self.pos}, {n} more needed)")

    def int(self) -> int:
        self.need(1)
        head = self.data[self.pos]
        size = head & 0x0F
        self.need(1 + size)
        value = int.from_bytes(self.data[self.pos + 1:self.pos + 1 + size], "little")
        self.pos += 1 + size
        return -value if head & 0x80 else value

    def float(self) -> float:
        mantissa = self.int()
        return mantissa * 2.0 ** self.int()

    def str(self) -> str:
        n = self.int()
        self.need(n)
        raw = self.data[self.pos:self.pos + n]
        self.pos += n
        return raw.decode("latin-1")

    def bool(self) -> bool:
        self.need(1)
        char = self.data[self.pos:self.pos + 1]
        if char not in (b"0", b"1"):
            raise DlibFormatError(f"expected a bool at byte {self.pos}, found {char!r}")
        self.pos += 1
        return char == b"1"

    def tensor(self) -> np.ndarray:
        start = self.pos
        if self.int() != 2:
            raise DlibFormatError(f"unsupported tensor version at byte {start}")
        shape = tuple(self.int() for _ in range(4))
        n = int(np.prod(shape))
        self.need(4 * n)
        values = np.frombuffer(self.data, dtype="<f4", count=n, offset=self.pos).astype(np.float32)
        self.pos += 4 * n
        return values.reshape(shape)

    def alias(self) -> tuple[int, ...]:
        if self.int() != 1:
            raise DlibFormatError(f"unsupported alias_tensor version at byte {self.pos}")
        return tuple(self.int() for _ in range(4))


def _read_layer(r: _Reader, kind: str) -> DlibLayer:
    layer = DlibLayer(kind)
    if kind == "con_4":
        params = r.tensor().ravel()
        keys = ("num_filters", "nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        layer.settings = {k: r.int() for k in keys}
        filters, biases = r.alias(), r.alias()
        for _ in range(4):  # learning-rate and weight-decay multipliers
            r.float()
        n_w = int(np.prod(filters))
        layer.params = {"weight": params[:n_w].reshape(filters),
                        "bias": params[n_w:n_w + int(np.prod(biases))]}
    elif kind == "affine_":
        params = r.tensor().ravel()
        gamma, _beta = r.alias(), r.alias()
        layer.settings = {"mode": r.int()}
        n = int(np.prod(gamma))
        layer.params = {"gamma": params[:n], "beta": params[n:2 * n]}
    elif kind in ("max_pool_2", "avg_pool_2"):
        keys = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
        layer.settings = {k: r.int() for k in keys}
    elif kind == "fc_2":
        layer.settings = {"num_outputs": r.int(), "num_inputs": r.int()}
        params = r.tensor().ravel()
        weights, _biases = r.alias(), r.alias()
        layer.settings["bias_mode"] = r.int()
        for _ in range(4):
            r.float()
        n_in, n_out = weights[0], weights[1]
        # dlib stores fc weights as (num_inputs, num_outputs); torch wants (out, in)
        layer.params = {"weight": params[:n_in * n_out].reshape(n_in, n_out).T.copy()}
    elif kind not in ("relu_", "add_prev_"):
        raise DlibFormatError(f"unknown layer {kind!r} at byte {r.pos}")
    return layer


def read_dlib_net(path: str | Path) -> DlibNet:
    """Parse a dlib ``loss_metric`` network file (the face-recognition ResNet).

    Args:
        path: the ``.dat`` file.

    Returns:
        The input means and size and every computational layer, input first.

    Raises:
        OSError: the file cannot be read. DlibFormatError: it is not a dlib metric-loss network
            made of the layer types above.
    """
    r = _Reader(Path(path).read_bytes())
    if r.int() != 1 or r.str() != "loss_metric_2":
        raise DlibFormatError(f"{path}: not a dlib loss_metric network")
    r.float(), r.float()  # margin, distance threshold
    while True:  # one version number per layer, outermost first; 3 marks the input layer's
        version = r.int()
        if version == 3:
            break
        if version not in (1, 2):
            raise DlibFormatError(f"{path}: unexpected layer version {version} at byte {r.pos}")
    if r.str() != "input_rgb_image_sized":
        raise DlibFormatError(f"{path}: expected an input_rgb_image_sized input layer")
    mean_rgb = (r.float(), r.float(), r.float())
    nr, nc = r.int(), r.int()
    layers = []
    while r.pos < len(r.data):
        layers.append(_read_layer(r, r.str()))
        for _ in range(3):
            r.bool()
        for _ in range(3):
            r.tensor()
        if len(layers) == 1:
            r.int()  # the input-side layer (version 3) stores one more number
    return DlibNet(mean_rgb, nr if nr == nc else -1, layers)


def dlib_state_dict(net: DlibNet) -> dict[str, torch.Tensor]:
    """Map a parsed network onto :class:`~research.dlib_resnet.DlibResNet`'s ``state_dict``.

    dlib's affine layers become BatchNorm modules with ``running_mean = 0`` and
    ``running_var = 1 - eps``, so in eval mode they compute exactly ``gamma * x + beta``.

    Returns:
        float32 tensors for every entry of ``DlibResNet().state_dict()`` (the 128-D ``fc`` included).

    Raises:
        DlibFormatError: the layers do not match the architecture (count, order, shapes, strides
            or paddings), or the input means differ from :data:`DLIB_MEAN_RGB`.
    """
    if not np.allclose(net.mean_rgb, DLIB_MEAN_RGB, atol=1e-3):
        raise DlibFormatError(f"input means {net.mean_rgb} differ from DLIB_MEAN_RGB {DLIB_MEAN_RGB}")
    model = DlibResNet()
    target = model.state_dict()
    modules = dict(model.named_modules())
    convs = [n for n, m in modules.items() if isinstance(m, torch.nn.Conv2d)]
    bns = [n for n, m in modules.items() if isinstance(m, torch.nn.BatchNorm2d)]
    con_layers = [x for x in net.layers if x.kind == "con_4"]
    affine_layers = [x for x in net.layers if x.kind == "affine_"]
    fc_layers = [x for x in net.layers if x.kind == "fc_2"]
    if (len(con_layers), len(affine_layers), len(fc_layers)) != (len(convs), len(bns), 1):
        raise DlibFormatError(
            f"expected {len(convs)} convolutions, {len(bns)} affine layers and 1 fc layer, found "
            f"{len(con_layers)}, {len(affine_layers)} and {len(fc_layers)}"
        )
    state: dict[str, torch.Tensor] = {}
    for name, layer in zip(convs, con_layers):
        conv = modules[name]
        s = layer.settings
        if (s["stride_y"], s["padding_y"]) != (conv.stride[0], conv.padding[0]):
            raise DlibFormatError(f"{name}: stride/padding {s} do not match {conv}")
        state[f"{name}.weight"] = torch.from_numpy(layer.params["weight"])
        state[f"{name}.bias"] = torch.from_numpy(layer.params["bias"])
    for name, layer in zip(bns, affine_layers):
        bn = modules[name]
        state[f"{name}.weight"] = torch.from_numpy(layer.params["gamma"])
        state[f"{name}.bias"] = torch.from_numpy(layer.params["beta"])
        state[f"{name}.running_mean"] = torch.zeros(bn.num_features)
        state[f"{name}.running_var"] = torch.full((bn.num_features,), 1.0 - bn.eps)
        state[f"{name}.num_batches_tracked"] = torch.tensor(0)
    state["fc.weight"] = torch.from_numpy(fc_layers[0].params["weight"])
    for key, value in state.items():
        if key not in target or value.shape != target[key].shape:
            raise DlibFormatError(f"{key}: shape {tuple(value.shape)} does not fit the architecture")
    missing = sorted(set(target) - set(state))
    if missing:
        raise DlibFormatError(f"no weights for {missing[:3]}")
    return state


def load_dlib_resnet(path: str | Path | None = None) -> DlibResNet:
    """The converted dlib descriptor network, in eval mode.

    Args:
        path: the ``.dat`` file; default :func:`find_dlib_model`.

    Raises:
        FileNotFoundError, DlibFormatError: see :func:`find_dlib_model`, :func:`read_dlib_net`.
    """
    model = DlibResNet()
    model.load_state_dict(dlib_state_dict(read_dlib_net(path or find_dlib_model())))
    return model.eval()


def dlib_backbone_state_dict(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The converted weights without the 128-D descriptor layer (``fc``), for initialising a
    classifier whose backbone is ``dlib_resnet``."""
    state = dlib_state_dict(read_dlib_net(path or find_dlib_model()))
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def main(argv: list[str] | None = None) -> int:
    """``python -m research.convert_dlib [--dat FILE] --out FILE.safetensors``."""
    p = argparse.ArgumentParser(prog="python -m research.convert_dlib", description=__doc__.split("\n")[0])
    p.add_argument("--dat", default=None, help=f"{DLIB_MODEL_FILE} (default: from face-recognition-models)")
    p.add_argument("--out", required=True, help="safetensors file to write (the DlibResNet state dict)")
    args = p.parse_args(argv)
    try:
        state = dlib_state_dict(read_dlib_net(args.dat or find_dlib_model()))
    except (OSError, DlibFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    save_file({k: v.contiguous() for k, v in state.items()}, args.out, metadata={"source": DLIB_MODEL_FILE})
    print(f"wrote {args.out}: {sum(v.numel() for k, v in state.items() if 'running' not in k):,} parameters")
    return 0


if __name__ == "__main__":
    sys.exit(main())
