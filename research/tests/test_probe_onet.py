"""research/probe_onet.py runs ONet's trunk as MTCNN does: its feature, read by ONet's own face head,
gives ONet's face probability on a real face and a real non-face crop."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from research import probe_onet


def _probe():
    return probe_onet


def _onet_input(crop: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> MTCNN's ONet input (1, 3, 48, 48): ``(x - 127.5) / 128``."""
    face = np.asarray(Image.fromarray(crop).resize((48, 48), Image.Resampling.BILINEAR), np.float32)
    return torch.from_numpy((face - 127.5) / 128.0).permute(2, 0, 1)[None]


def test_probe_trunk_is_onets_feature(astronaut):
    probe = _probe()
    model = probe.ONetClassifier(pretrained=True).eval()
    face = _onet_input(astronaut[63:173, 180:268])        # the astronaut's face box
    wall = _onet_input(astronaut[300:400, 400:500])       # no face there
    x = torch.cat([face, wall])
    with torch.no_grad():
        _, _, onet_prob = model.onet(x)
        prob = torch.softmax(model.onet.dense6_1(model.features(x)), dim=1)
        logits = model(x)
    torch.testing.assert_close(prob, onet_prob, rtol=0, atol=1e-6)
    assert prob[0, 1] > 0.9 and prob[1, 1] < 0.5         # ONet: face, not a face
    assert logits.shape == (2, 8)
