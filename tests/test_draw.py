"""annotate() and probability_figure() draw what they say."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageColor

from fer_core.draw import annotate, label_color
from fer_core.plots import probability_figure


def test_annotate_draws_boxes_in_label_colours(recognizer, canvas):
    image, _ = canvas
    faces = recognizer.predict(image)
    out = annotate(image, faces)
    assert out.size == image.size and out.mode == "RGB"
    arr = np.asarray(out)
    for f in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in f.box)
        colour = ImageColor.getrgb(label_color(f.label))
        left_edge = arr[(y1 + y2) // 2, x1]  # middle of the left edge
        assert tuple(left_edge) == colour
    assert np.array_equal(np.asarray(image), np.asarray(canvas[0]))  # input untouched


def test_annotate_with_no_faces_is_a_copy():
    img = Image.new("RGB", (50, 40), (1, 2, 3))
    assert np.array_equal(np.asarray(annotate(img, [])), np.asarray(img))


def test_probability_figure_has_one_panel_per_face(recognizer, canvas, tmp_path):
    faces = recognizer.predict(canvas[0])
    fig = probability_figure(faces)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == len(faces)
    assert [ax.get_title().split(":")[0] for ax in visible] == [f"Face {i}" for i in range(1, len(faces) + 1)]
    assert len(visible[0].patches) == 8
    fig.savefig(tmp_path / "bars.png")
    assert Image.open(tmp_path / "bars.png").size[0] > 300
    empty = probability_figure([])
    assert "No face" in empty.texts[0].get_text()


def test_label_colours_are_distinct_for_any_models_labels():
    from fer_core.labels import LABEL_COLORS, LABELS, label_colors

    assert label_colors(LABELS) == {k: LABEL_COLORS[k] for k in LABELS}
    other = ["calm", "happiness", "frown", "pain", "grimace"]
    colors = label_colors(other)
    assert list(colors) != [] and set(colors) == set(other) and len(set(colors.values())) == len(other)
    assert colors["happiness"] == LABEL_COLORS["happiness"]
    assert label_color("pain", other) == colors["pain"] and label_color("anger") == LABEL_COLORS["anger"]


def test_annotate_draws_the_face_mesh_in_the_face_colour(recognizer, astronaut):
    image = Image.fromarray(astronaut)
    faces = recognizer.predict(image, mesh=True)
    assert len(faces) == 1 and faces[0].mesh.shape == (468, 3)
    colour = np.array(ImageColor.getrgb(label_color(faces[0].label)))
    points = np.floor(faces[0].mesh[:, :2]).astype(int)  # the pixel holding each point

    def coloured(out: Image.Image) -> float:
        arr = np.asarray(out)
        return float(np.mean([np.array_equal(arr[y, x], colour) for x, y in points]))

    assert coloured(annotate(image, faces, mesh=True)) > 0.95  # a dot on every point
    assert coloured(annotate(image, faces)) < 0.1  # boxes only by default
    assert np.array_equal(np.asarray(image), astronaut)  # input untouched
