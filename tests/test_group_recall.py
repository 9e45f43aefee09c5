"""Small faces of group photos: the still-photo default (20 px smallest face, FaceMesh verification) against
the adaptive video default, on a group canvas of real faces with known boxes (tests/support/group_canvas.py).

The canvas uses only the two committed photo faces (the public-domain astronaut and Grace Hopper), so it needs
no shared data. Measured (``benchmarks/recall.py --canvases photo``, docs/experiments.md, issue 29): the
photo default finds every face of 20 px or more on such canvases; on this one (24 faces of 20-40 px) it
finds 24, the adaptive size (480 // 12 = 40 px) 5 (the neighbouring seed: 24 and 6).
"""

from __future__ import annotations

import pytest

from benchmarks.recall import match
from fer_core.options import PHOTO_MIN_FACE_SIZE
from tests.support.group_canvas import background, face_sources, group_canvas

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def crowd():
    """24 faces, 20-40 px high, on gravel, 640x480 (fixed by its seed)."""
    return group_canvas((640, 480), 24, (PHOTO_MIN_FACE_SIZE, 40), "gravel.jpg", seed=0,
                        sources=face_sources(ferplus=0))


def test_photo_default_finds_the_small_faces_that_adaptive_misses(recognizer, crowd):
    photo = recognizer.predict(crowd.image)  # still photo: 20 px smallest face, verified
    live = recognizer.predict(crowd.image, photo=False)  # adaptive: 480 // 12 = 40 px
    tp_photo, _, fp_photo = match([f.box for f in photo], crowd.faces, (), [f.score for f in photo])
    tp_live, _, fp_live = match([f.box for f in live], crowd.faces, (), [f.score for f in live])
    recall_photo, recall_live = tp_photo / len(crowd.faces), tp_live / len(crowd.faces)
    assert recall_photo >= 0.9, f"photo default found {tp_photo}/{len(crowd.faces)}"
    assert recall_live <= 0.4, f"adaptive found {tp_live}/{len(crowd.faces)}"
    assert fp_photo == 0 and fp_live == 0
    assert all(f.face_prob is not None and f.face_prob >= 0.5 for f in photo)
    # the 20 px search does not depend on verification: without it every MTCNN box comes back
    unverified = recognizer.predict(crowd.image, verify_faces=False)
    assert len(unverified) >= len(photo) and all(f.face_prob is None for f in unverified)


def test_no_face_on_the_bare_backgrounds_at_the_photo_default(recognizer):
    for name in ("gravel.jpg", "china.jpg"):
        assert recognizer.predict(background(name, (640, 480))) == [], name
