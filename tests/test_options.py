"""fer_core.options: one set of defaults and ranges; every bad argument is an InvalidArgumentError."""

from __future__ import annotations

import dataclasses
import math

import pytest

from fer_core import FERError, InvalidArgumentError
from fer_core.options import (
    DEFAULT_THRESHOLD,
    check_max_seconds,
    check_min_face_size,
    check_sample_fps,
    check_smoothing,
    check_threshold,
)


def test_checks_accept_the_range_and_normalise_zero_to_none():
    assert check_threshold(0) == 0.0 and check_threshold("0.5") == 0.5 and check_threshold(1) == 1.0
    assert check_min_face_size(None) is None and check_min_face_size(0) is None and check_min_face_size(40.0) == 40
    assert check_sample_fps(0) is None and check_sample_fps(None) is None and check_sample_fps(5) == 5.0
    assert check_max_seconds(0) is None and check_max_seconds(2.5) == 2.5
    assert check_smoothing(0) == 0.0 and check_smoothing(10) == 10.0


@pytest.mark.parametrize(("check", "value", "message"), [
    (check_threshold, 1.5, "threshold must be between 0 and 1"),
    (check_threshold, -0.1, "threshold must be between 0 and 1"),
    (check_threshold, math.nan, "NaN"),
    (check_threshold, "high", "must be a number"),
    (check_threshold, None, "must be a number"),
    (check_min_face_size, 5, ">= 12"),
    (check_min_face_size, 20.5, "whole number"),
    (check_sample_fps, -1, "between 0"),
    (check_sample_fps, 61, "and 60"),
    (check_max_seconds, -2, ">= 0"),
    (check_max_seconds, math.inf, ">= 0"),
    (check_smoothing, 11, "between 0 and 10"),
])
def test_out_of_range_is_an_invalid_argument_error(check, value, message):
    with pytest.raises(InvalidArgumentError, match=message) as info:
        check(value)
    assert isinstance(info.value, FERError) and isinstance(info.value, ValueError)  # both contracts hold


def test_a_non_number_keeps_its_cause():
    with pytest.raises(InvalidArgumentError) as info:
        check_threshold("high")
    assert isinstance(info.value.__cause__, ValueError)  # raised from the float() error, not from None


def test_predict_options_come_from_the_recognizer_and_its_config(recognizer):
    defaults = recognizer.options()
    assert defaults.threshold == recognizer.detector.threshold == DEFAULT_THRESHOLD
    assert defaults.align == recognizer.config.align and defaults.balanced == recognizer.config.balanced
    chosen = recognizer.options(0.5, 40, not recognizer.config.align)
    assert (chosen.threshold, chosen.min_face_size, chosen.align) == (0.5, 40, not recognizer.config.align)
    with pytest.raises(InvalidArgumentError, match="threshold"):
        recognizer.options(threshold=2)


def test_the_models_own_align_wins(recognizer, monkeypatch):
    monkeypatch.setattr(recognizer.classifier, "config", dataclasses.replace(recognizer.config, align=False))
    assert recognizer.options().align is False


def test_library_calls_raise_invalid_argument_errors(recognizer, astronaut):
    for kwargs in ({"threshold": 1.5}, {"min_face_size": 5}):
        with pytest.raises(InvalidArgumentError):
            recognizer.predict(astronaut, **kwargs)
    with pytest.raises(InvalidArgumentError, match="smoothing"):
        recognizer.analyze_video("missing.mp4", smoothing=-1)


def test_on_off_options_are_booleans_not_truthiness(recognizer, astronaut):
    """A client sending "false" gets False (not Python's bool("false") == True); 2, "no" or a list are
    refused with the option's name; predict itself checks the same way."""
    assert recognizer.options(verify_faces="false").verify_faces is False
    assert recognizer.options(align="TRUE", verify_faces=False).align is True
    for bad in ("no", 2, 1.5, ["x"], {"a": 1}, ""):
        with pytest.raises(InvalidArgumentError, match="verify_faces must be true or false"):
            recognizer.options(verify_faces=bad)
    with pytest.raises(InvalidArgumentError, match="align must be true or false"):
        recognizer.predict(astronaut, align="yes")
    assert [f.face_prob for f in recognizer.predict(astronaut, verify_faces="false")] == [None]  # not verified
