"""Saliency per face (fer_core.saliency): the crop geometry's inverse, Grad-CAM maps of the bundled model on
real faces, and the sanity checks of Adebayo et al. 2018 ("Sanity Checks for Saliency Maps", NeurIPS).

The 20 real faces: the astronaut, the six FER+ Valid faces of the shared canvas, and 13 more FER+ Valid
faces on a second canvas (all found and verified by MTCNN + FaceMesh, which gives each its 468-point mesh).
"""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
import torch
from matplotlib.path import Path as PolygonPath
from PIL import Image, ImageDraw
from scipy.spatial import ConvexHull
from scipy.stats import spearmanr

from fer_core.align import crop_face
from fer_core.classifier import OnnxClassifier
from fer_core.config import ModelConfig
from fer_core.errors import InvalidArgumentError
from fer_core.model import EmotionNet
from fer_core.recognizer import DEFAULT_MODEL_DIR, EmotionRecognizer
from fer_core.saliency import (
    TARGET_LAYERS,
    CropTransform,
    combined_heatmap,
    crop_heatmap_to_image,
    explain,
    overlay,
    target_layer_name,
    write_saliency,
)
from tests.conftest import CANVAS_CROPS, compose_canvas

#: 13 more FER+ Valid faces MTCNN and FaceMesh find on a 5-column canvas (model labels: neutral x2, sadness x2,
#: surprise x4, anger x2, fear, happiness x2).
EXTRA_CROPS = ["fer0028638.png", "fer0028639.png", "fer0028644.png", "fer0028655.png", "fer0028649.png",
               "fer0028651.png", "fer0028653.png", "fer0028654.png", "fer0028661.png", "fer0028662.png",
               "fer0028667.png", "fer0028668.png", "fer0028670.png"]


# --- geometry -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("box", "tilt", "margin", "align"), [
    ((300.0, 260.0, 420.0, 400.0), 0.35, 0.2, True),     # tilted face, crop of 168 px
    ((300.0, 260.0, 420.0, 400.0), -0.6, -0.05, True),   # the other way, tighter than the box
    ((300.0, 260.0, 420.0, 400.0), 0.35, 0.2, False),    # no levelling
    ((40.0, 30.0, 700.0, 620.0), 0.25, 0.0, True),       # 660 px square: reduced by 2, then 256 px
])
def test_crop_transform_maps_a_known_point_back_through_crop_face(box, tilt, margin, align):
    """A white dot painted at a known image point is found in crop_face's crop where to_crop says, and
    to_image maps the dot's position in the crop back onto the painted point (within a pixel)."""
    image = Image.new("RGB", (760, 680))
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    # eyes on a line tilted by `tilt`, 40 px either side of the centre
    landmarks = np.array([[cx - 40 * math.cos(tilt), cy - 40 - 40 * math.sin(tilt)],
                          [cx + 40 * math.cos(tilt), cy - 40 + 40 * math.sin(tilt)],
                          [cx, cy], [cx - 30, cy + 40], [cx + 30, cy + 40]], dtype=np.float32)
    dot = np.array([cx + 25.0, cy - 18.0])
    r = 3.0 * max(1.0, (box[2] - box[0]) / 256)  # a few crop pixels wide
    ImageDraw.Draw(image).ellipse((dot[0] - r, dot[1] - r, dot[0] + r, dot[1] + r), fill=(255, 255, 255))

    crop = np.asarray(crop_face(image, box, landmarks, margin=margin, align=align).convert("L"), dtype=np.float64)
    tf = CropTransform.from_face(box, landmarks, margin, align)
    assert crop.shape == (tf.size, tf.size)
    assert tf.angle == (pytest.approx(tilt, abs=1e-6) if align else 0.0)
    ys, xs = np.nonzero(crop > 40)
    w = crop[ys, xs]
    found = np.array([(xs + 0.5) @ w / w.sum(), (ys + 0.5) @ w / w.sum()])  # the dot's centroid, crop pixels
    assert np.abs(tf.to_crop(dot) - found).max() < 0.75
    assert np.abs(tf.to_image(found) - dot).max() < 0.75 * tf.scale
    # the two maps are each other's inverse; the crop's centre is the box centre
    pts = np.random.default_rng(0).uniform(-50, 300, size=(20, 2))
    np.testing.assert_allclose(tf.to_crop(tf.to_image(pts)), pts, atol=1e-9)
    np.testing.assert_allclose(tf.to_image([tf.size / 2, tf.size / 2]), [cx, cy], atol=1e-9)


def test_crop_heatmap_lands_where_the_crop_had_it_and_nowhere_else():
    """A crop heatmap hot in one spot, mapped into the image, peaks at that spot's image position and is 0
    outside the rotated crop square."""
    tf = CropTransform(cx=200.0, cy=150.0, side=120.0, angle=0.5, size=60)
    heat = np.zeros((60, 60), np.float32)
    heat[10:14, 40:44] = 1.0  # crop pixels x 40..43, y 10..13: centre (42, 12)
    (x0, y0, x1, y1), region = crop_heatmap_to_image(heat, tf, (400, 300))
    assert region.shape == (y1 - y0, x1 - x0) and region.dtype == np.float32
    iy, ix = np.unravel_index(np.argmax(region), region.shape)
    expected = tf.to_image([42.0, 12.0])
    assert abs(x0 + ix + 0.5 - expected[0]) <= 2 * tf.scale and abs(y0 + iy + 0.5 - expected[1]) <= 2 * tf.scale
    assert 0.0 <= region.min() and region.max() <= 1.0
    # the hot mass is preserved up to the change of pixel size (scale 2: each crop pixel covers 4 image pixels)
    assert region.sum() == pytest.approx(heat.sum() * tf.scale**2, rel=0.1)
    # an all-hot crop covers exactly the rotated square: area side^2, nothing outside it
    (x0, y0, x1, y1), full = crop_heatmap_to_image(np.ones((60, 60), np.float32), tf, (400, 300))
    assert (full > 0).sum() == pytest.approx(tf.side**2, rel=0.03)
    xs, ys = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
    uv = tf.to_crop(np.stack([xs, ys], -1))
    outside = (uv < -0.01).any(-1) | (uv > tf.size + 0.01).any(-1)
    assert outside.any() and not full[outside].any()
    # a crop partly outside the image is clipped to it
    (x0, y0, x1, y1), part = crop_heatmap_to_image(heat, CropTransform(10.0, 290.0, 120.0, 0.5, 60), (400, 300))
    assert (x0, y0) == (0, max(0, y0)) and y1 == 300 and part.shape == (y1 - y0, x1 - x0)


def test_every_backbone_has_a_default_layer_that_the_head_reads():
    """TARGET_LAYERS names, for every torchvision backbone, a module that exists and outputs the last 4-D
    feature map: as many channels as the head's input and 1/32 of the input side (built on the meta device:
    no weights, no compute)."""
    for name in TARGET_LAYERS:
        with torch.device("meta"):
            model = EmotionNet(ModelConfig(backbone=name, input_size=96)).eval()
            layer = target_layer_name(model)
            assert layer == TARGET_LAYERS[name]
            seen = []
            model.get_submodule(layer).register_forward_hook(lambda _m, _i, out, seen=seen: seen.append(out.shape))
            model(torch.zeros(1, 3, 96, 96))
        head_module = model.net.fc if hasattr(model.net, "fc") else model.net.classifier
        head = [m for m in head_module.modules() if isinstance(m, torch.nn.Linear)][0]  # reads the pooled map
        assert seen == [torch.Size([1, head.in_features, 3, 3])], name
    model = EmotionNet(ModelConfig(backbone="resnet18", input_size=64))
    assert target_layer_name(model, "net.layer3") == "net.layer3"
    with pytest.raises(InvalidArgumentError, match="not a module"):
        target_layer_name(model, "net.features.18")


# --- the bundled model on real faces --------------------------------------------------------------------

def test_astronaut_map_shapes_ranges_target_and_determinism(recognizer, astronaut):
    """One face: crop heatmap (S, S) and image heatmap (512, 512), float32 in [0, 1], the image map 0
    outside the crop's region and equal to the region map inside; the predicted label is explained; two
    calls give identical maps; no hook or gradient flag is left on the model."""
    maps = explain(recognizer, astronaut)
    again = explain(recognizer, astronaut)
    assert len(maps) == 1
    s = maps[0]
    assert s.target == s.face.label == "happiness" and s.target_index == recognizer.labels.index("happiness")
    assert s.method == "gradcam" and s.layer == "net.features.18"
    assert s.heatmap.shape == (s.transform.size,) * 2 and s.heatmap.dtype == np.float32
    assert 90 <= s.transform.size <= 120  # the ~88x110 px face, margin -0.05
    assert s.heatmap.min() >= 0 and s.heatmap.max() == pytest.approx(1.0, abs=0.02)
    image_map = s.image_heatmap
    assert image_map.shape == (512, 512) and image_map.dtype == np.float32
    assert 0 <= image_map.min() and image_map.max() <= 1 and image_map.max() > 0.9
    x0, y0, x1, y1 = s.region
    assert image_map[y0:y1, x0:x1].sum() == pytest.approx(image_map.sum())
    np.testing.assert_array_equal(image_map[y0:y1, x0:x1], s.region_heatmap)
    # the image map's centre of mass is the crop map's, mapped through the transform (an affine map keeps it)
    def centroid(heat: np.ndarray) -> np.ndarray:
        ys, xs = np.indices(heat.shape) + 0.5
        return np.array([(xs * heat).sum(), (ys * heat).sum()]) / heat.sum()

    assert np.abs(s.transform.to_image(centroid(s.heatmap)) - centroid(image_map)).max() < 1.5
    np.testing.assert_array_equal(s.heatmap, again[0].heatmap)
    np.testing.assert_array_equal(image_map, again[0].image_heatmap)
    model = recognizer.model
    assert all(p.requires_grad for p in model.parameters())
    assert not any(m._forward_hooks for m in model.modules())
    assert not model.training


def test_batched_maps_equal_one_by_one_and_target_changes_the_map(recognizer, canvas):
    """Six faces: batch 8 gives the maps of batch 1 (a face's map does not depend on its batch); choosing
    another label than the predicted one changes the map of at least some faces."""
    image, _ = canvas
    faces = recognizer.predict(image)
    assert len(faces) == 6
    batched = explain(recognizer, image, faces=faces, batch_size=8)
    single = explain(recognizer, image, faces=faces, batch_size=1)
    for a, b in zip(batched, single):
        np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-4)
    # none of the six is predicted "surprise": its evidence lies elsewhere in the face (measured: Spearman
    # -0.76..0.26 with the predicted label's map)
    other = explain(recognizer, image, faces=faces, target="surprise")
    assert all(s.target == "surprise" != a.target for s, a in zip(other, batched))
    rho = [spearmanr(a.heatmap.ravel(), b.heatmap.ravel()).statistic for a, b in zip(batched, other)]
    assert sum(r < 0.5 for r in rho) >= 4, rho
    # a label without positive evidence at the layer gives an all-0 map (sadness on most of these faces),
    # never NaN or a rescaled noise map
    for s in explain(recognizer, image, faces=faces, target="sadness"):
        assert s.heatmap.max() == 0 or s.heatmap.max() == pytest.approx(1, abs=0.02)
    for method in ("gradcam++", "layercam"):
        maps = explain(recognizer, image, faces=faces[:2], method=method)
        assert [m.method for m in maps] == [method] * 2 and all(0.9 < m.heatmap.max() <= 1 for m in maps)


def test_overlay_and_files(recognizer, canvas, tmp_path):
    """overlay() tints only the faces' crop squares; write_saliency() writes the overlay PNG and a JSON with a
    32x32 map per face."""
    image, _ = canvas
    maps = explain(recognizer, image)
    shown = np.asarray(overlay(image, maps), dtype=np.int16)
    original = np.asarray(image, dtype=np.int16)
    heat = combined_heatmap(maps, image.size)
    assert shown.shape == original.shape
    assert not np.any(shown[heat == 0] != original[heat == 0])
    assert np.abs(shown - original)[heat > 0.5].mean() > 20
    import matplotlib  # the full-frame float blend overlay() avoids (a 256-entry table, face rectangles only)

    a = 0.5 * heat[..., None]
    reference = np.rint(original * (1 - a) + matplotlib.colormaps["jet"](heat)[..., :3] * 255 * a)
    assert np.abs(shown - reference).max() <= 1
    small = overlay(image, maps, max_side=100)  # downscaled first, each crop map resampled into it
    w, h = image.size
    assert max(small.size) == 100 and small.size == (round(w * 100 / max(w, h)), round(h * 100 / max(w, h)))
    plain = np.asarray(image.resize(small.size, Image.Resampling.BILINEAR, reducing_gap=3.0), dtype=np.int16)
    tinted = np.abs(np.asarray(small, dtype=np.int16) - plain).sum(axis=2) > 0
    scaled = np.asarray(Image.fromarray(heat).resize(small.size, Image.Resampling.BILINEAR))
    assert tinted[scaled > 0.2].mean() > 0.95 and tinted[scaled == 0].mean() < 0.02
    with pytest.raises(InvalidArgumentError, match="max_side"):
        overlay(image, maps, max_side=0)
    png, js = write_saliency(tmp_path, "canvas", image, maps)
    assert Image.open(png).size == image.size
    doc = json.loads(js.read_text())
    assert len(doc) == 6 and [d["target"] for d in doc] == [m.target for m in maps]
    assert np.array(doc[0]["heatmap"]).shape == (32, 32) and doc[0]["transform"]["size"] == maps[0].transform.size
    with pytest.raises(InvalidArgumentError):
        write_saliency(tmp_path, "../escape", image, maps)


def test_bad_requests_and_the_onnx_backend_are_refused(recognizer, astronaut):
    """Clear InvalidArgumentErrors: the ONNX backend (no gradients; says to use backend='torch'), an unknown
    label, method or layer, batch_size 0, detection options with faces=."""
    onnx = EmotionRecognizer(OnnxClassifier(DEFAULT_MODEL_DIR), detector=recognizer.detector)
    with pytest.raises(InvalidArgumentError, match="backend='torch'"):
        explain(onnx, astronaut)
    for kwargs, match in [({"target": "joy"}, "target must be one of"), ({"method": "saliency"}, "method must be"),
                          ({"batch_size": 0}, "batch_size"), ({"layer": "net.nope"}, "not a module"),
                          ({"faces": [], "threshold": 0.5}, "cannot be used with faces")]:
        with pytest.raises(InvalidArgumentError, match=match):
            explain(recognizer, astronaut, **kwargs)
    assert explain(recognizer, astronaut, faces=[]) == []


# --- Adebayo et al. 2018 and localisation on 20 real faces ----------------------------------------------

@pytest.fixture(scope="module")
def twenty_faces(recognizer, astronaut, ferplus) -> list[tuple[np.ndarray | Image.Image, list]]:
    """(image, its faces) for the astronaut, the six-face canvas and the 13-face canvas: 20 verified faces."""
    folder = ferplus / "FER2013Valid"
    images = [astronaut, compose_canvas(folder, CANVAS_CROPS)[0], compose_canvas(folder, EXTRA_CROPS, columns=5)[0]]
    out = [(image, recognizer.predict(image)) for image in images]
    assert [len(faces) for _, faces in out] == [1, 6, 13]
    assert all(f.mesh is not None for _, faces in out for f in faces)
    return out


def _maps(rec: EmotionRecognizer, twenty_faces, targets: list[str]) -> list[np.ndarray]:
    """Crop heatmaps of the 20 faces for the given labels (one per face, in order), by ``rec``."""
    out, k = [], 0
    for image, faces in twenty_faces:
        wanted = targets[k:k + len(faces)]
        k += len(faces)
        maps: dict[int, np.ndarray] = {}
        for label in sorted(set(wanted)):
            idx = [i for i, t in enumerate(wanted) if t == label]
            for i, s in zip(idx, explain(rec, image, faces=[faces[i] for i in idx], target=label)):
                maps[i] = s.heatmap
        out += [maps[i] for i in range(len(faces))]
    return out


def test_model_randomisation_changes_the_maps(recognizer, twenty_faces):
    """Adebayo et al. 2018, cascading model randomisation: re-initialise the trained network's layers from the
    top (head, then MobileNetV2 blocks 18 down to 0); at every stage the maps (same faces, same labels: the
    trained model's predictions) must differ from the trained model's. The mean Spearman rank correlation
    over the faces is under 0.5 at each stage checked (measured: 0.26 with the head alone random, -0.03 down
    to the CAM layer, 0.07 with every layer random), and no face's map stays above 0.95. A constant map (all 0:
    no positive evidence left) has no rank correlation and is left out of the mean; at least 15 of the 20 must
    be defined."""
    targets = [f.label for _, faces in twenty_faces for f in faces]
    trained = _maps(recognizer, twenty_faces, targets)
    random_model = copy.deepcopy(recognizer.model)
    net = random_model.net
    cascade = [("head", net.classifier)] + [(f"features.{i}", net.features[i]) for i in range(18, -1, -1)]
    checked = {"head", "features.18", "features.0"}  # the head alone, then down to the CAM layer, then all
    means = {}
    rec = EmotionRecognizer(random_model, detector=recognizer.detector)  # explain uses rec.model, changed in place
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for stage, block in cascade:
            for m in block.modules():
                if isinstance(m, torch.nn.Conv2d | torch.nn.Linear | torch.nn.BatchNorm2d):
                    m.reset_parameters()
            if stage not in checked:
                continue
            rho = np.array([spearmanr(a.ravel(), b.ravel()).statistic if b.max() > b.min() else np.nan
                            for a, b in zip(trained, _maps(rec, twenty_faces, targets))])
            defined = rho[~np.isnan(rho)]
            means[stage] = float(defined.mean())
            assert len(defined) >= 15, (stage, rho)
            assert defined.mean() < 0.5 and defined.max() < 0.95, (stage, rho)
    assert set(means) == checked
    print("mean Spearman per randomisation stage:", {k: round(v, 3) for k, v in means.items()})


@pytest.fixture(scope="module")
def hull_mass(recognizer, twenty_faces) -> np.ndarray:
    """Per face, ``(mass, area)``: the share of the trained model's image-heatmap mass inside the convex hull
    of the face's 468 FaceMesh points, and the share of the heatmap's support (the crop square) inside that
    hull, i.e. what a uniform map would score."""
    rows = []
    for image, faces in twenty_faces:
        for s in explain(recognizer, image, faces=faces):
            points = s.face.mesh[:, :2]
            hull = PolygonPath(points[ConvexHull(points).vertices])
            x0, y0, x1, y1 = s.region
            xs, ys = np.meshgrid(np.arange(x0, x1) + 0.5, np.arange(y0, y1) + 0.5)
            inside = hull.contains_points(np.stack([xs.ravel(), ys.ravel()], 1)).reshape(xs.shape)
            heat = s.region_heatmap
            rows.append((heat[inside].sum() / heat.sum(), inside[heat > 0].mean()))
    return np.array(rows)


def test_heatmap_mass_lies_on_the_face(hull_mass):
    """Most of each map's mass lies inside the FaceMesh hull, more than a uniform map's: measured mean 0.78
    (0.59..0.88 per face) against 0.65 for a uniform map over the crop (margin -0.05, so the crop is mostly
    face already)."""
    mass, area = hull_mass[:, 0], hull_mass[:, 1]
    assert len(mass) == 20
    assert mass.mean() >= 0.70 and mass.min() >= 0.5, mass
    assert mass.mean() >= area.mean() + 0.05, (mass.mean(), area.mean())
    assert (mass > area).sum() >= 16, (mass, area)


@pytest.mark.xfail(strict=True, reason="issue 31's 80 % criterion is not met by Grad-CAM at MobileNetV2's last "
                                       "layer (3x3 cells at 96 px): measured mean 0.78 of the mass inside the "
                                       "FaceMesh hull, 7 of 20 faces at 0.8 or more")
def test_eighty_percent_of_the_mass_inside_the_face_hull(hull_mass):
    """The issue's criterion as written: at least 80 % of each face's heatmap mass inside its landmark hull."""
    assert hull_mass[:, 0].min() >= 0.8, hull_mass[:, 0]
