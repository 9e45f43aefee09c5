"""Over 500 malformed or odd inputs through the library, the CLI and the REST API: each one is a
result or a FERError naming the reason, the same in all three, and nothing else escapes."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx
import numpy as np
import pytest

from fer_core import FERError, InvalidImageError
from tests.conftest import ROOT
from tests.support.launch import app_server
from tests.support.malformed import corpus


@pytest.fixture(scope="module")
def inputs(astronaut):
    items = corpus(astronaut)
    assert len(items) >= 500 and len({name for name, _ in items}) == len(items)
    return items


@pytest.fixture(scope="module")
def library_outcomes(recognizer, inputs):
    """name -> number of faces, or the InvalidImageError's reason."""
    outcomes = {}
    for name, data in inputs:
        try:
            outcomes[name] = len(recognizer.predict(data))
        except FERError as exc:  # any other exception type fails the test here
            assert isinstance(exc, InvalidImageError) and exc.reason, name
            outcomes[name] = exc.reason
    return outcomes


def test_library_gives_a_result_or_a_reason(library_outcomes):
    errors = [v for v in library_outcomes.values() if isinstance(v, str)]
    assert len(errors) > 200 and len(library_outcomes) - len(errors) > 50  # both kinds are well represented
    assert library_outcomes["valid.jpg"] == 1 and library_outcomes["exif_1_bogus.jpg"] == 1
    assert "truncated" in library_outcomes["truncated_20.png"] or "corrupt" in library_outcomes["truncated_20.png"]
    assert "limit" in library_outcomes["declares_100000x100000.png"]
    assert "not a recognised image" in library_outcomes["drawing.svg"]
    assert "uint8" in library_outcomes["array_float_nan"]


def test_cli_reports_every_file_once_and_keeps_going(inputs, library_outcomes, tmp_path, model_dir):
    folder = tmp_path / "corpus"
    folder.mkdir()
    names = [name for name, data in inputs if isinstance(data, bytes)]
    for name, data in inputs:
        if isinstance(data, bytes):
            (folder / name).write_bytes(data)
    proc = subprocess.run([sys.executable, "-m", "fer_core", "--json", "--model", str(model_dir),
                           *[str(folder / n) for n in names]], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    ok = {doc["file"].rsplit("/", 1)[-1]: len(doc["faces"]) for doc in json.loads(proc.stdout)}
    failed = {line.split(": ", 2)[1].rsplit("/", 1)[-1] for line in proc.stderr.splitlines()
              if line.startswith("error: ")}
    assert set(ok) | failed == set(names) and not set(ok) & failed
    for name in names:
        expected = library_outcomes[name]
        assert (ok[name] == expected) if name in ok else isinstance(expected, str), name


def test_rest_api_answers_200_or_400_and_survives(inputs, library_outcomes, tmp_path_factory, model_dir):
    log = tmp_path_factory.mktemp("malformed") / "app.log"
    with app_server(log, FER_MODEL=str(model_dir)) as url, httpx.Client(base_url=url, timeout=60) as http:
        for name, data in inputs:
            if not isinstance(data, bytes):
                continue
            r = http.post("/api/predict", files={"file": (name, data, "application/octet-stream")})
            expected = library_outcomes[name]
            if isinstance(expected, str):
                assert r.status_code == 400 and r.json()["detail"] == f"{name}: {expected}", (name, r.text)
            else:
                assert r.status_code == 200 and len(r.json()["faces"]) == expected, (name, r.text)
        assert http.get("/health").json()["status"] == "ok"
        photo = (ROOT / "fer_app/examples/astronaut.jpg").read_bytes()
        ok = http.post("/api/predict", files={"file": ("a.jpg", photo)})
        assert ok.status_code == 200 and len(ok.json()["faces"]) == 1
    assert "Traceback" not in log.read_text()


def test_arrays_of_every_wrong_kind_are_invalid_image_errors(recognizer):
    for array in (np.zeros((2, 2, 3), np.float64), np.zeros((4, 4, 7), np.uint8), np.zeros(5, np.uint8)):
        with pytest.raises(InvalidImageError):
            recognizer.predict(array)
