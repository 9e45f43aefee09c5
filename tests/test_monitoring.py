"""Monitoring sessions on both engines for real (SQLite file, PostgreSQL server): auth rules,
SQL-injection strings verbatim, per-second rows from a real clip, erasure, crash safety."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import IntegrityError

from fer_app.monitoring import store
from fer_app.monitoring.db import make_engine, session_factory, upgrade
from fer_app.monitoring.models import Aggregate, AuditEvent, MonitoringSession, Subject, User
from fer_app.monitoring.security import create_token, normalize_username
from fer_app.service import FERService
from fer_core.labels import LABELS
from tests.conftest import ROOT
from tests.support.launch import app_server
from tests.support.pgserver import fresh_database, postgres_server
from tests.support.video_clips import two_face_frames

SECRET = "test-secret-Kq7Vw2Lp9Zx4Rt8Nm3Bc6Hd1Fg5Js0"
PASSWORD = "correct horse battery"
INJECTION = "Robert'); DROP TABLE subjects;-- \" OR 1=1 --"


@pytest.fixture(scope="session")
def postgres():
    try:
        with postgres_server() as url:
            yield url
    except FileNotFoundError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fer.db'}"
    return fresh_database(request.getfixturevalue("postgres"))


@pytest.fixture
def db(database_url):
    engine = make_engine(database_url)
    upgrade(engine)
    yield session_factory(engine)
    engine.dispose()


def make_teams(db) -> None:
    """Two teams with an admin and a staff user each (``ward-a-admin``, ``ward-b-staff``...)."""
    with db() as session:
        for team in ("ward-a", "ward-b"):
            t = store.create_team(session, team)
            store.create_user(session, t.id, f"{team}-admin", PASSWORD, "admin")
            store.create_user(session, t.id, f"{team}-staff", PASSWORD, "staff")
        session.commit()


@pytest.fixture
def api(database_url, db, recognizer, monkeypatch):
    """A TestClient of the real app on this database, two teams with an admin and a staff user each."""
    from fer_app import server as app

    monkeypatch.setenv("FER_JWT_SECRET", SECRET)
    monkeypatch.setenv("FER_DATABASE_URL", database_url)
    make_teams(db)
    with TestClient(app.create_app(FERService(recognizer, "test model"))) as client:
        yield client


def login(api: TestClient, username: str) -> dict[str, str]:
    r = api.post("/api/auth/token", data={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def jpeg(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, "JPEG", quality=92)
    return buf.getvalue()


def test_auth_rules(api, db):
    staff_a, admin_a, staff_b = login(api, "ward-a-staff"), login(api, "ward-a-admin"), login(api, "ward-b-staff")
    subject = api.post("/api/subjects", json={"label": "bed 4"}, headers=staff_a).json()
    assert api.post("/api/auth/token", data={"username": "ward-a-staff", "password": "wrong password"}).status_code \
        == 401
    assert api.get("/api/subjects").status_code == 401  # no token
    token = staff_a["Authorization"].split()[1]
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert api.get("/api/subjects", headers={"Authorization": f"Bearer {forged}"}).status_code == 401
    with db() as session:
        user = session.scalar(select(User).where(User.username == "ward-a-staff"))
    expired = create_token(SECRET, user.key, user.token_version, user.team_id, user.role, 1,
                           now=datetime.now(UTC) - timedelta(hours=1))
    r = api.get("/api/subjects", headers={"Authorization": f"Bearer {expired}"})
    assert r.status_code == 401 and "expired" in r.json()["detail"]
    other_key = create_token("another-secret-Kq7Vw2Lp9Zx4Rt8Nm3Bc6Hd1", user.key, user.token_version, user.team_id,
                             user.role, 10)
    assert api.get("/api/subjects", headers={"Authorization": f"Bearer {other_key}"}).status_code == 401
    new_user = {"username": "nurse", "password": PASSWORD, "role": "staff"}
    assert api.post("/api/users", json=new_user, headers=staff_a).status_code == 403  # staff on an admin route
    assert api.post("/api/users", json=new_user, headers=admin_a).status_code == 201
    assert api.post("/api/users", json=new_user, headers=admin_a).status_code == 409
    # another deployment's subject: not visible, not readable, not deletable, no sessions on it
    assert api.get("/api/subjects", headers=staff_b).json() == []
    sid = subject["id"]
    assert api.get(f"/api/subjects/{sid}/sessions", headers=staff_b).status_code == 403
    assert api.delete(f"/api/subjects/{sid}", headers=login(api, "ward-b-admin")).status_code == 403
    assert api.post("/api/sessions", json={"subject_id": sid}, headers=staff_b).status_code == 403
    session_a = api.post("/api/sessions", json={"subject_id": sid}, headers=staff_a).json()
    assert api.get(f"/api/sessions/{session_a['id']}/timeline", headers=staff_b).status_code == 403
    assert api.get(f"/api/sessions/{session_a['id']}/timeline", headers=staff_a).status_code == 200


def test_injection_strings_are_stored_verbatim(api, db):
    admin = login(api, "ward-a-admin")
    r = api.post("/api/users", json={"username": INJECTION, "password": PASSWORD + INJECTION, "role": "staff"},
                 headers=admin)
    assert r.status_code == 201 and r.json()["username"] == normalize_username(INJECTION)
    r = api.post("/api/auth/token", data={"username": INJECTION, "password": PASSWORD + INJECTION})
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    subject = api.post("/api/subjects", json={"label": INJECTION}, headers=headers)
    assert subject.status_code == 201 and subject.json()["label"] == INJECTION
    assert [s["label"] for s in api.get("/api/subjects", headers=headers).json()] == [INJECTION]
    with db() as session:
        assert session.scalar(select(func.count()).select_from(Subject)) == 1  # the table is still there


def test_a_real_clip_gives_per_second_rows(api, ferplus):
    headers = login(api, "ward-a-staff")
    subject = api.post("/api/subjects", json={"label": "room 12"}, headers=headers).json()
    session = api.post("/api/sessions", json={"subject_id": subject["id"]}, headers=headers).json()
    assert session["model_id"] == "test model"
    fps = 5
    for t, frame in two_face_frames(ferplus, fps=fps):  # 3 s; face B leaves at 2.0 s
        r = api.post(f"/api/sessions/{session['id']}/frames", params={"time_s": t},
                     files={"file": ("f.jpg", jpeg(frame), "image/jpeg")}, headers=headers)
        assert r.status_code == 200, r.text
    # before the end, every completed second is already stored; the last one is still open
    open_rows = api.get(f"/api/sessions/{session['id']}/timeline", headers=headers).json()["rows"]
    assert {r["start_s"] for r in open_rows} == {0, 1}
    end = api.post(f"/api/sessions/{session['id']}/end", headers=headers).json()
    assert end["ended_at"] is not None and end["seconds_written"] == 1
    rows = api.get(f"/api/sessions/{session['id']}/timeline", headers=headers).json()["rows"]
    assert [(r["start_s"], r["face_id"]) for r in rows] == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1)]
    assert all(r["n_frames"] == fps for r in rows)
    assert [r["faces"] for r in rows] == [2, 2, 2, 2, 1]
    for r in rows:
        assert abs(sum(r["probs"].values()) - 1) < 1e-4 and r["label"] == max(r["probs"], key=r["probs"].get)
    coarse = api.get(f"/api/sessions/{session['id']}/timeline", params={"resolution": "10s"}, headers=headers)
    assert [(r["start_s"], r["face_id"], r["n_frames"]) for r in coarse.json()["rows"]] == [(0, 1, 15), (0, 2, 10)]
    csv_text = api.get(f"/api/sessions/{session['id']}/timeline", params={"format": "csv"}, headers=headers).text
    assert csv_text.splitlines()[0] == ",".join(["start_s", "face_id", "n_frames", "faces", "label", *LABELS])
    assert len(csv_text.splitlines()) == 6
    r = api.post(f"/api/sessions/{session['id']}/frames", files={"file": ("f.jpg", b"x", "image/jpeg")},
                 headers=headers)
    assert r.status_code == 409  # ended


def test_client_results_are_averaged_exactly(api):
    headers = login(api, "ward-a-staff")
    subject = api.post("/api/subjects", json={"label": "home"}, headers=headers).json()
    sid = api.post("/api/sessions", json={"subject_id": subject["id"]}, headers=headers).json()["id"]
    one_hot = {k: float(k == "fear") for k in LABELS}
    even = {k: 1 / 8 for k in LABELS}
    frames = [{"time_s": 0.1, "faces": [{"face_id": 1, "probs": one_hot}]},
              {"time_s": 0.6, "faces": [{"face_id": 1, "probs": even}]},
              {"time_s": 1.2, "faces": []}]
    r = api.post(f"/api/sessions/{sid}/frames", json={"frames": frames}, headers=headers)
    assert r.status_code == 200 and r.json()["seconds_written"] == 1
    row = api.get(f"/api/sessions/{sid}/timeline", headers=headers).json()["rows"][0]
    assert row["probs"]["fear"] == pytest.approx((1 + 1 / 8) / 2) and row["label"] == "fear" and row["n_frames"] == 2
    bad = {"frames": [{"time_s": 3, "faces": [{"face_id": 1, "probs": {"fear": 1}}]}]}
    assert api.post(f"/api/sessions/{sid}/frames", json=bad, headers=headers).status_code == 422
    back = {"frames": [{"time_s": 0.2, "faces": []}]}
    assert api.post(f"/api/sessions/{sid}/frames", json=back, headers=headers).status_code == 422  # time order


def test_deleting_a_subject_erases_everything_about_it(api, db):
    headers = login(api, "ward-a-staff")
    keep = api.post("/api/subjects", json={"label": "keep"}, headers=headers).json()
    gone = api.post("/api/subjects", json={"label": "erase me"}, headers=headers).json()
    for subject in (keep, gone):
        sid = api.post("/api/sessions", json={"subject_id": subject["id"]}, headers=headers).json()["id"]
        frames = [{"time_s": t / 2, "faces": [{"face_id": 1, "probs": {k: 1 / 8 for k in LABELS}}]} for t in range(6)]
        api.post(f"/api/sessions/{sid}/frames", json={"frames": frames}, headers=headers)
        api.post(f"/api/sessions/{sid}/end", headers=headers)
    assert api.delete(f"/api/subjects/{gone['id']}", headers=headers).status_code == 403  # staff may not erase
    assert api.delete(f"/api/subjects/{gone['id']}", headers=login(api, "ward-a-admin")).status_code == 204
    with db() as session:
        assert session.get(Subject, gone["id"]) is None
        assert session.scalar(select(func.count()).select_from(MonitoringSession)
                              .where(MonitoringSession.subject_id == gone["id"])) == 0
        assert session.scalar(select(func.count()).select_from(Aggregate)) == 3  # only "keep"'s 3 seconds
        text_rows = session.execute(text("SELECT label FROM subjects")).scalars().all()
        assert text_rows == ["keep"]
    assert api.get(f"/api/subjects/{gone['id']}/sessions", headers=headers).status_code == 403


def test_monitoring_is_off_without_a_secret(recognizer, monkeypatch, tmp_path):
    from fer_app import server as app

    monkeypatch.delenv("FER_JWT_SECRET", raising=False)
    monkeypatch.setenv("FER_DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    with TestClient(app.create_app(FERService(recognizer, "m"))) as client:
        r = client.get("/api/subjects")
        assert r.status_code == 503 and "FER_JWT_SECRET" in r.json()["detail"]
        assert client.get("/health").status_code == 200  # the public part runs
    with TestClient(app.create_app(FERService(recognizer, "m"), dev=True)) as client:
        assert client.get("/api/subjects").status_code == 401  # on, behind the login


def test_crash_loses_at_most_the_last_second(database_url, tmp_path, model_dir):
    env = {"FER_MODEL": str(model_dir), "FER_JWT_SECRET": SECRET, "FER_DATABASE_URL": database_url,
           "FER_ADMIN_PASSWORD": PASSWORD}
    created = subprocess.run([sys.executable, "-m", "fer_app.monitoring", "create-admin", "--username", "boss"],
                             cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
    assert created.returncode == 0 and "admin 'boss'" in created.stdout, created.stderr
    with app_server(tmp_path / "app.log", **env) as url:
        token = httpx.post(f"{url}/api/auth/token", data={"username": "boss", "password": PASSWORD}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        subject = httpx.post(f"{url}/api/subjects", json={"label": "p1"}, headers=headers).json()
        sid = httpx.post(f"{url}/api/sessions", json={"subject_id": subject["id"]}, headers=headers).json()["id"]
        for t in range(10):  # 0.0 .. 4.5 s, one frame at a time as a live client sends them
            frame = {"time_s": t / 2, "faces": [{"face_id": 1, "probs": {k: 1 / 8 for k in LABELS}}]}
            assert httpx.post(f"{url}/api/sessions/{sid}/frames", json={"frames": [frame]},
                              headers=headers).status_code == 200
        url.process.send_signal(signal.SIGKILL)  # a crash: no shutdown, no flush
        url.process.wait(30)
    engine = make_engine(database_url)
    with session_factory(engine)() as session:
        seconds = session.scalars(select(Aggregate.second).where(Aggregate.session_id == sid)
                                  .order_by(Aggregate.second)).all()
    engine.dispose()
    assert seconds == [0, 1, 2, 3]  # second 4 was still open: the only loss


def test_migrations_keep_every_row(database_url):
    """Upgrading a 0001 database that holds data keeps every row and link (a SQLite table rebuild
    with foreign keys on would null ``sessions.started_by`` and cascade-delete aggregates)."""
    engine = make_engine(database_url)
    upgrade(engine, "0001")
    now = datetime.now(UTC)
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO teams (id, name, created_at) VALUES (1, 'ward', :t)"), {"t": now})
        connection.execute(text("INSERT INTO users (id, team_id, username, password_hash, role, created_at) "
                                "VALUES (7, 1, 'Nurse', 'x', 'staff', :t)"), {"t": now})
        connection.execute(text("INSERT INTO subjects (id, team_id, label, created_at) VALUES (3, 1, 'bed 1', :t)"),
                           {"t": now})
        connection.execute(text("INSERT INTO sessions (id, subject_id, started_by, started_at, model_id) "
                                "VALUES (5, 3, 7, :t, 'm')"), {"t": now})
        connection.execute(text("INSERT INTO aggregates (session_id, second, face_id, n_frames, faces, label, "
                                + ", ".join(f"p_{k}" for k in LABELS) + ") VALUES (5, 0, 1, 5, 1, 'neutral', "
                                + ", ".join(["0.125"] * 8) + ")"))
    upgrade(engine)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT id, started_by FROM sessions")).all() == [(5, 7)]
        assert connection.execute(text("SELECT count(*) FROM aggregates")).scalar() == 1
        user = connection.execute(text("SELECT username, active, token_version, key FROM users")).one()
        assert user[:3] == ("nurse", True, 0) and len(user[3]) == 32  # normalised, active, a random key
    engine.dispose()


#: The labels of a model other than FER+ (a tiny random network: only the label plumbing is tested).
THREE = ["calm", "tense", "joy"]
CSV_BASE = ["start_s", "face_id", "n_frames", "faces", "label"]


@pytest.fixture(scope="module")
def three_label_service(tmp_path_factory) -> FERService:
    """A tiny random EmotionNet with three labels, saved and loaded back as any exported model is."""
    import torch

    from fer_core.config import ModelConfig
    from fer_core.model import EmotionNet, load_model
    from fer_core.recognizer import EmotionRecognizer

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("three_labels")
    EmotionNet(ModelConfig(labels=THREE, input_size=64)).eval().save_pretrained(folder)
    recognizer = EmotionRecognizer(load_model(folder), source=str(folder))
    assert recognizer.labels == THREE
    return FERService(recognizer, "three-label model")


def test_a_model_with_other_labels_works_end_to_end(database_url, db, recognizer, three_label_service, astronaut,
                                                     monkeypatch):
    """A server on a 3-label model: sessions record its labels, image frames and client results
    are stored and read back (JSON, CSV columns) under them; a FER+ session of the same database
    keeps its own labels, and refuses image frames of the other model."""
    from fer_app import server as app

    monkeypatch.setenv("FER_JWT_SECRET", SECRET)
    monkeypatch.setenv("FER_DATABASE_URL", database_url)
    make_teams(db)
    with TestClient(app.create_app(FERService(recognizer, "fer+ model"))) as ferplus_api:
        headers = login(ferplus_api, "ward-a-staff")
        subject = ferplus_api.post("/api/subjects", json={"label": "room 3"}, headers=headers).json()
        old = ferplus_api.post("/api/sessions", json={"subject_id": subject["id"]}, headers=headers).json()
    assert old["labels"] == list(LABELS)
    image = jpeg(astronaut)
    even8 = {k: 1 / 8 for k in LABELS}
    with TestClient(app.create_app(three_label_service)) as api:
        headers = login(api, "ward-a-staff")
        session = api.post("/api/sessions", json={"subject_id": subject["id"]}, headers=headers).json()
        assert session["labels"] == THREE and session["model_id"] == "three-label model"
        sid = session["id"]
        for t in (0.0, 0.4, 0.8, 1.2, 1.6, 2.1):
            r = api.post(f"/api/sessions/{sid}/frames", params={"time_s": t}, content=image,
                         headers={**headers, "Content-Type": "image/jpeg"})
            assert r.status_code == 200, r.text
            assert [set(f["probs"]) for f in r.json()["faces"]] == [set(THREE)]  # the astronaut
        wrong = {"frames": [{"time_s": 2.5, "faces": [{"face_id": 9, "probs": even8}]}]}
        r = api.post(f"/api/sessions/{sid}/frames", json=wrong, headers=headers)
        assert r.status_code == 422 and "calm" in r.text
        mine = {"calm": 0.2, "tense": 0.3, "joy": 0.5}
        ok = {"frames": [{"time_s": 2.5, "faces": [{"face_id": 9, "probs": mine}]}]}
        assert api.post(f"/api/sessions/{sid}/frames", json=ok, headers=headers).status_code == 200
        assert api.post(f"/api/sessions/{sid}/end", headers=headers).json()["seconds_written"] == 2
        timeline = api.get(f"/api/sessions/{sid}/timeline", headers=headers).json()
        assert timeline["labels"] == THREE and timeline["session"]["labels"] == THREE
        rows = timeline["rows"]
        assert [(r["start_s"], r["face_id"], r["n_frames"]) for r in rows] == [(0, 1, 3), (1, 1, 2), (2, 1, 1),
                                                                              (2, 9, 1)]
        for r in rows:
            assert list(r["probs"]) == THREE and abs(sum(r["probs"].values()) - 1) < 1e-4
            assert r["label"] == max(r["probs"], key=r["probs"].get)
        assert rows[-1]["probs"] == pytest.approx(mine) and rows[-1]["label"] == "joy"
        lines = api.get(f"/api/sessions/{sid}/timeline", params={"format": "csv"}, headers=headers).text.splitlines()
        assert lines[0] == ",".join([*CSV_BASE, *THREE]) and len(lines) == 5
        assert all(len(line.split(",")) == 8 and line.split(",")[4] in THREE for line in lines[1:])
        # the FER+ session keeps its labels: this model's image frames are refused, FER+ results taken
        r = api.post(f"/api/sessions/{old['id']}/frames", content=image,
                     headers={**headers, "Content-Type": "image/jpeg"})
        assert r.status_code == 409 and "labels" in r.json()["detail"]
        fer = {"frames": [{"time_s": 0.5, "faces": [{"face_id": 1, "probs": even8}]}, {"time_s": 1.5, "faces": []}]}
        assert api.post(f"/api/sessions/{old['id']}/frames", json=fer, headers=headers).json()["seconds_written"] == 1
        lines = api.get(f"/api/sessions/{old['id']}/timeline", params={"format": "csv"},
                        headers=headers).text.splitlines()
        assert lines[0] == ",".join([*CSV_BASE, *LABELS]) and len(lines) == 2
    with db() as session:
        stored = dict(session.execute(select(MonitoringSession.id, MonitoringSession.labels)).all())
        assert stored == {old["id"]: list(LABELS), sid: THREE}
        aggregates = session.execute(select(Aggregate.label, Aggregate.probs).where(Aggregate.session_id == sid)).all()
        assert len(aggregates) == 4 and all(label in THREE and len(probs) == 3 for label, probs in aggregates)
        assert [len(p) for p in session.scalars(select(Aggregate.probs).where(Aggregate.session_id == old["id"]))] \
            == [8]


def test_the_tab_records_its_model_labels(database_url, db, three_label_service, astronaut):
    """The tab's own events (start, webcam frames, stop, history) with a 3-label model go through
    the same store: the session, its rows and its plot carry that model's labels."""
    import gradio as gr

    from fer_app.monitoring.live import LiveRegistry
    from fer_app.monitoring.predictor import Predictor
    from fer_app.monitoring.settings import MonitoringSettings
    from fer_app.monitoring_tab import MonitoringContext, ServicePredictor, build_monitoring_tab

    assert isinstance(ServicePredictor(three_label_service), Predictor)

    make_teams(db)
    with db() as session:
        user = session.scalar(select(User).where(User.username == "ward-a-staff"))
        subject_id = store.create_subject(session, user.team_id, "bed 9").id
        session.commit()
    token = create_token(SECRET, user.key, user.token_version, user.team_id, user.role, 10)
    request = gr.Request(headers={"cookie": f"fer_session={token}"})
    context = MonitoringContext(MonitoringSettings(database_url, SECRET), db, LiveRegistry(),
                                ServicePredictor(three_label_service))
    with gr.Blocks() as blocks:
        build_monitoring_tab(context, "")
    events = {f.fn.__name__: f.fn for f in blocks.fns.values() if f.fn is not None}
    state, status, _ = events["start"](subject_id, None, request)
    assert "running" in status
    for _ in range(4):  # frames 0.6 s apart: the clock is moved back instead of waiting
        state["t0"] -= 0.6
        shown, status, _ = events["frame"](astronaut, state, request)
        assert shown.startswith("<img") and "frames" in status, status
    state, ended, _ = events["stop"](state, subject_id, request)
    assert "ended" in ended
    sid = state["live"].session_id
    figure, link = events["history"](sid, "1s", request)
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == THREE
    assert len({tuple(c.get_facecolor()[0]) for c in figure.axes[0].collections}) == 3  # one colour each
    assert f"/api/sessions/{sid}/timeline?format=csv" in link
    with db() as session:
        assert session.get(MonitoringSession, sid).labels == THREE
        aggregates = session.scalars(select(Aggregate).where(Aggregate.session_id == sid)).all()
        assert len(aggregates) >= 3 and {a.face_id for a in aggregates} == {1}
        assert all(len(a.probs) == 3 and a.label in THREE and abs(sum(a.probs) - 1) < 1e-6 for a in aggregates)


def test_a_model_whose_labels_cannot_be_recorded_starts_no_session(api, monkeypatch):
    from fer_app.monitoring_tab import ServicePredictor

    headers = login(api, "ward-a-staff")
    subject = api.post("/api/subjects", json={"label": "room 8"}, headers=headers).json()
    monkeypatch.setattr(ServicePredictor, "labels", property(lambda _self: ["label", "other"]))
    r = api.post("/api/sessions", json={"subject_id": subject["id"]}, headers=headers)
    assert r.status_code == 503 and "CSV column" in r.json()["detail"]
    assert api.get(f"/api/subjects/{subject['id']}/sessions", headers=headers).json() == []


@pytest.mark.parametrize("labels", [["only"], ["a", "a"], ["a", ""], ["a", "x" * 65], ["a", "tab\there"],
                                    ["a", "label"], ["a", "=cmd|' /C calc'!A0"], ["a", "@sum"],
                                    [str(i) for i in range(65)]])
def test_labels_monitoring_cannot_record_are_refused(labels):
    from fer_app.monitoring.predictor import check_labels

    with pytest.raises(ValueError):
        check_labels(labels)
    assert check_labels(THREE) == THREE and check_labels(LABELS) == list(LABELS)


def test_migration_0003_carries_every_probability_over(database_url):
    """A 0002 database with sessions and aggregates, upgraded: each session records the FER+
    labels, each aggregate its eight ``p_<label>`` values as ``probs`` (bit for bit), the schema is
    the models' (links, constraints, cascades), and the downgrade puts them back (refused while a
    session of other labels exists)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    from fer_app.monitoring.db import downgrade
    from fer_app.monitoring.models import Base

    engine = make_engine(database_url)
    upgrade(engine, "0002")
    now = datetime.now(UTC)
    odd = [0.041152263004115223, 0.1, 0.2, 0.05, 0.3, 0.15, 0.10884773699588478, 0.05]  # 17 digits matter
    rows = {(5, 0, 1): odd, (5, 1, 1): [0.125] * 8, (6, 0, 2): list(reversed(odd))}
    with engine.begin() as connection:
        connection.execute(text("INSERT INTO teams (id, name, created_at) VALUES (1, 'ward', :t)"), {"t": now})
        connection.execute(text("INSERT INTO users (id, team_id, username, password_hash, role, created_at, key, "
                                "active, token_version) VALUES (7, 1, 'nurse', 'x', 'staff', :t, :k, true, 0)"),
                           {"t": now, "k": "k" * 32})
        for subject_id in (3, 4):
            connection.execute(text("INSERT INTO subjects (id, team_id, label, created_at) VALUES (:s, 1, :l, :t)"),
                               {"s": subject_id, "l": f"bed {subject_id}", "t": now})
        for session_id, subject_id in ((5, 3), (6, 4)):
            connection.execute(text("INSERT INTO sessions (id, subject_id, started_by, started_at, model_id) "
                                    "VALUES (:i, :s, 7, :t, 'm')"), {"i": session_id, "s": subject_id, "t": now})
        for (session_id, second, face), probs in rows.items():
            connection.execute(text("INSERT INTO aggregates (session_id, second, face_id, n_frames, faces, label, "
                                    + ", ".join(f"p_{k}" for k in LABELS) + ") VALUES (:i, :s, :f, 5, 1, 'fear', "
                                    + ", ".join(f":p{j}" for j in range(8)) + ")"),
                               {"i": session_id, "s": second, "f": face, **{f"p{j}": p for j, p in enumerate(probs)}})

    def stored_probs() -> dict:
        with session_factory(engine)() as session:
            return {(a.session_id, a.second, a.face_id): a.probs for a in session.scalars(select(Aggregate))}

    upgrade(engine)
    columns = {c["name"] for c in inspect(engine).get_columns("aggregates")}
    assert "probs" in columns and not [c for c in columns if c.startswith("p_")]
    with engine.connect() as connection:  # the migrated schema is the models' (constraints, keys, types)
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
    with session_factory(engine)() as session:
        assert {s.id: s.labels for s in session.scalars(select(MonitoringSession))} == {5: list(LABELS),
                                                                                      6: list(LABELS)}
        assert stored_probs() == rows
        line = store.timeline(session, session.get(MonitoringSession, 5), "10s")[0]
        assert line["n_frames"] == 10 and line["probs"]["neutral"] == round((odd[0] + 0.125) / 2, 6)
        assert store.timeline_csv([line], LABELS).splitlines()[0] == ",".join([*CSV_BASE, *LABELS])
    downgrade(engine, "0002")
    with engine.connect() as connection:
        back = connection.execute(text("SELECT session_id, second, face_id, " + ", ".join(f"p_{k}" for k in LABELS)
                                       + " FROM aggregates")).all()
    assert {(r[0], r[1], r[2]): list(r[3:]) for r in back} == rows
    upgrade(engine)
    assert stored_probs() == rows
    with session_factory(engine)() as session:  # a session of other labels: no way back to 0002
        session.add(MonitoringSession(id=8, subject_id=4, started_by=7, started_at=now, model_id="m3", labels=THREE))
        session.flush()
        session.add(Aggregate(session_id=8, second=0, face_id=1, n_frames=1, faces=1, label="joy",
                              probs=[0.2, 0.3, 0.5]))
        session.commit()
    with pytest.raises(RuntimeError, match="FER\\+"):
        downgrade(engine, "0002")
    assert stored_probs()[(8, 0, 1)] == [0.2, 0.3, 0.5]
    with session_factory(engine)() as session:  # constraints and cascades survived the table rebuilds
        session.add(Aggregate(session_id=5, second=0, face_id=1, n_frames=1, faces=1, label="fear", probs=odd))
        with pytest.raises(IntegrityError):
            session.flush()
        session.rollback()
        session.delete(session.get(User, 7))
        session.commit()
        assert session.get(MonitoringSession, 5).started_by is None  # ON DELETE SET NULL
        store.erase_subject(session, session.get(Subject, 3), actor_id=1)
        assert set(stored_probs()) == {(6, 0, 2), (8, 0, 1)}  # ON DELETE CASCADE
    engine.dispose()


def test_ending_a_stale_session_never_touches_the_row_that_took_its_id(db, three_label_service):
    """A session looked up, then erased, its id given to another team's new session (SQLite reuses
    ids): ending the stale one is refused and leaves the other team's session running."""
    from fer_app.monitoring_tab import ServicePredictor

    make_teams(db)
    with db() as session:
        a = session.scalar(select(User).where(User.username == "ward-a-staff"))
        b = session.scalar(select(User).where(User.username == "ward-b-staff"))
        subject_b = store.create_subject(session, b.team_id, "bed 2").id
        subject_a = store.create_subject(session, a.team_id, "bed 1").id
        session.commit()
        sid = store.start_session(session, a, subject_a, ServicePredictor(three_label_service)).id
    with db() as session:  # team A's request looks the session up ...
        a = session.scalar(select(User).where(User.username == "ward-a-staff"))
        monitored = store.get_session(session, a.team_id, sid)
        session.commit()  # (objects stay usable after commit)
        with db() as other:  # ... meanwhile it is erased and its id goes to team B's new session
            other.execute(update(MonitoringSession).where(MonitoringSession.id == sid).values(
                subject_id=subject_b, started_at=datetime.now(UTC) + timedelta(seconds=5)))
            other.commit()
        with pytest.raises(store.NotInTeamError):
            store.end_session(session, monitored, a)
    with db() as session:
        row = session.get(MonitoringSession, sid)
        assert row.subject_id == subject_b and row.ended_at is None
        assert not session.scalars(select(AuditEvent).where(AuditEvent.action == "session_end")).all()


def test_a_refused_batch_changes_nothing_and_nothing_is_stored_after_the_end(db, three_label_service):
    """Frames 1.5 s then 0.2 s in one batch are refused whole (second 0, accepted before, stays and
    the refused frame at 1.5 s is not counted); frames that were on their way when the session
    ended are refused (409 on REST), and no row lands after the end."""
    from fer_app.monitoring.live import LiveSession
    from fer_app.monitoring_tab import ServicePredictor

    make_teams(db)
    even = [1 / 3] * 3
    with db() as session:
        a = session.scalar(select(User).where(User.username == "ward-a-staff"))
        subject = store.create_subject(session, a.team_id, "bed 3").id
        session.commit()
        row = store.start_session(session, a, subject, ServicePredictor(three_label_service))
        live = LiveSession.of(row)
        assert live.add_results(session, [(0.5, [(1, even)])]) == 0
        with pytest.raises(ValueError, match="time order"):
            live.add_results(session, [(1.5, [(1, even)]), (0.2, [(1, even)])])
        late = LiveSession.of(row)  # a request that looked the session up before it ended
        late.add_results(session, [(2.5, [(1, even)])])
        assert store.end_session(session, row, a, flush=live.finish) == 1
        with pytest.raises(store.SessionEndedError):
            late.add_results(session, [(3.5, [(1, even)])])  # completes second 2: would be a row
        stored = session.scalars(select(Aggregate).where(Aggregate.session_id == row.id)).all()
    assert [(r.second, r.n_frames) for r in stored] == [(0, 1)]
