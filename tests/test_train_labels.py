"""FER+ label modes against vote vectors worked out by hand from the FERPlus rules."""

from __future__ import annotations

import numpy as np
import pytest

from fer_train.data import LabelledFaces, load_split
from fer_train.labels import majority_label, training_target, vote_distribution

# votes: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF


def dist(*pairs):
    out = np.zeros(8, dtype=np.float32)
    for i, v in pairs:
        out[i] = v
    return out


def test_single_votes_are_outliers():
    # sadness's single vote is removed; neutral 4 of 9 is no majority
    votes = [4, 0, 0, 1, 3, 2, 0, 0, 0, 0]
    assert vote_distribution(votes, "majority") is None
    # crossentropy: top emotions until 75 % of 9 votes: neutral 4 + anger 3 = 7 >= 6.75
    assert np.allclose(vote_distribution(votes, "crossentropy"), dist((0, 4 / 7), (4, 3 / 7)))
    assert np.allclose(vote_distribution(votes, "probability"), dist((0, 4 / 7), (4, 3 / 7)))
    # multi_target: every emotion with >= 30 % of 9 votes (2.7): neutral 4, anger 3 (disgust 2 is not)
    assert np.allclose(vote_distribution(votes, "multi_target"), dist((0, 4 / 7), (4, 3 / 7)))


def test_clear_majority():
    votes = [6, 0, 1, 1, 0, 0, 0, 0, 2, 0]  # singles removed -> neutral 6 of 8
    for mode in ("majority", "crossentropy", "probability"):
        assert np.allclose(vote_distribution(votes, mode), dist((0, 1.0)))
    assert majority_label(votes) == 0


def test_not_a_face_and_unknown_are_dropped():
    assert vote_distribution([0, 0, 0, 0, 0, 0, 0, 0, 2, 8], "majority") is None
    assert vote_distribution([0, 0, 0, 0, 0, 0, 0, 0, 2, 8], "crossentropy") is None
    assert vote_distribution([0, 0, 0, 0, 0, 0, 0, 0, 7, 3], "multi_target") is None
    # unknown ties with the top emotion: it is discarded, and neutral's 4 of 10 is not enough
    assert vote_distribution([4, 0, 0, 0, 0, 0, 0, 0, 4, 2], "crossentropy") is None


def test_two_emotions_without_majority():
    votes = [5, 3, 0, 0, 0, 0, 0, 0, 2, 0]  # 5 of 10 is not > half
    assert vote_distribution(votes, "majority") is None
    assert np.allclose(vote_distribution(votes, "crossentropy"), dist((0, 5 / 8), (1, 3 / 8)))


def test_three_emotion_cap_and_coverage():
    # 3 + 3 + 2 + 2 of 10: both 3s (6 < 7.5), then both tied 2s -> 4 emotions > 3 -> dropped
    assert vote_distribution([3, 3, 2, 2, 0, 0, 0, 0, 0, 0], "crossentropy") is None
    # 4 + 3 + 2 of 9 (unknown's single vote removed): 4 + 3 = 7 >= 6.75 stops before surprise
    assert np.allclose(vote_distribution([4, 3, 2, 0, 0, 0, 0, 0, 1, 0], "crossentropy"),
                       dist((0, 4 / 7), (1, 3 / 7)))


def test_training_targets():
    rng = np.random.default_rng(0)
    d = dist((0, 5 / 8), (1, 3 / 8))
    assert np.array_equal(training_target(d, "crossentropy", rng), d)
    samples = np.stack([training_target(d, "probability", rng) for _ in range(4000)])
    assert set(np.unique(samples)) == {0.0, 1.0} and (samples.sum(1) == 1).all()
    assert abs(samples[:, 0].mean() - 5 / 8) < 0.03 and samples[:, 2:].sum() == 0
    mt = training_target(d, "multi_target", rng)
    assert np.allclose(mt, [0.999 + 0.001, 0.999 + 0.001, 0.001, 0.001, 0.001, 0.001, 0.001, 0.001])


def test_bad_mode_and_length():
    with pytest.raises(ValueError, match="label mode"):
        vote_distribution([1] * 10, "vote")
    with pytest.raises(ValueError, match="10 vote counts"):
        vote_distribution([1] * 8, "majority")


def test_majority_split_size_matches_the_rule(ferplus):
    split = load_split(ferplus, "valid")
    assert len(split) == 3579 and split.images.shape == (3579, 48, 48)
    votes = np.where(split.votes < 2, 0, split.votes)  # single votes removed
    expected = sum(1 for v in votes if v.max() > 0.5 * v.sum() and v.argmax() < 8)
    faces = LabelledFaces(split, "majority", transform=lambda x: x)
    assert len(faces) == expected
    assert faces.class_counts().sum() == expected and (faces.class_counts() > 0).all()
