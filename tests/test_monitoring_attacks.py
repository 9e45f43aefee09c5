"""Monitoring attacked as an attacker and an auditor would, on both engines (SQLite file, PostgreSQL
server): tokens that must not work, brute force, login timing, hostile values, weak names and
passwords, erasure down to the bytes of the database files, the audit trail and the headers; then
a real server: Gradio's ``session_hash`` replayed without the login cookie, and dev-mode defaults."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import select, text

from fer_app.monitoring import store
from fer_app.monitoring.db import make_engine
from fer_app.monitoring.models import AuditEvent, MonitoringSession, Subject, User
from fer_app.monitoring.settings import MonitoringConfigError, MonitoringSettings
from fer_app.service import FERService
from fer_core.labels import LABELS
from tests.conftest import ROOT
from tests.support.launch import app_server
from tests.test_browser_monitoring import image_files
from tests.test_monitoring import PASSWORD, SECRET, database_url, db, postgres  # noqa: F401 (fixtures)

EVEN = {k: 1 / 8 for k in LABELS}
ASTRONAUT = ROOT / "fer_app" / "examples" / "astronaut.jpg"


@pytest.fixture
def make_api(database_url, db, recognizer, monkeypatch):  # noqa: F811 (fixtures)
    """``make_api(**env)``: a TestClient of the real app on this database with two teams of an admin
    and a staff user each, and the extra environment ``env`` (e.g. the login limits)."""
    from fer_app import server as app

    clients = []

    def make(**env: str) -> TestClient:
        monkeypatch.setenv("FER_JWT_SECRET", SECRET)
        monkeypatch.setenv("FER_DATABASE_URL", database_url)
        monkeypatch.setenv("FER_LOGIN_PER_CLIENT", "1000")
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with db() as session:
            if session.scalar(select(User).where(User.username == "ward-a-admin")) is None:
                for team in ("ward-a", "ward-b"):
                    t = store.create_team(session, team)
                    store.create_user(session, t.id, f"{team}-admin", PASSWORD, "admin")
                    store.create_user(session, t.id, f"{team}-staff", PASSWORD, "staff")
                session.commit()
        client = TestClient(app.create_app(FERService(recognizer, "test model")))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def token_of(api: TestClient, username: str, password: str = PASSWORD) -> dict[str, str]:
    r = api.post("/api/auth/token", data={"username": username, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_tokens_of_gone_disabled_or_changed_users_never_work(make_api, db, database_url):  # noqa: F811
    api = make_api()
    admin = token_of(api, "ward-a-admin")
    with db() as session:
        staff = session.scalar(select(User).where(User.username == "ward-a-staff"))
    claims = {"sub": staff.key, "ver": 0, "team": staff.team_id, "role": "admin", "exp": int(time.time()) + 600}
    unsigned = b64({"alg": "none", "typ": "JWT"}) + "." + b64(claims) + "."
    assert api.get("/api/subjects", headers={"Authorization": f"Bearer {unsigned}"}).status_code == 401
    # a deleted user's token, and the id that the next user gets (SQLite reuses the highest id)
    created = api.post("/api/users", json={"username": "temp-nurse", "password": PASSWORD}, headers=admin).json()
    temp = token_of(api, "temp-nurse")
    assert api.get("/api/subjects", headers=temp).status_code == 200
    with db() as session:
        session.delete(session.get(User, created["id"]))
        session.commit()
    assert api.get("/api/subjects", headers=temp).status_code == 401
    successor = api.post("/api/users", json={"username": "new-nurse", "password": PASSWORD}, headers=admin).json()
    if database_url.startswith("sqlite"):
        assert successor["id"] == created["id"]  # the same id: the old token must still not work
    assert api.get("/api/subjects", headers=temp).status_code == 401
    # disable: the token stops at the next request, the password stops logging in, with the usual answer
    staff_token = token_of(api, "ward-a-staff")
    assert api.post(f"/api/users/{staff.id}/disable", headers=staff_token).status_code == 403  # staff
    assert api.post(f"/api/users/{staff.id}/disable", headers=token_of(api, "ward-b-admin")).status_code == 403
    assert api.post(f"/api/users/{staff.id}/disable", headers=admin).json() == {"id": staff.id, "active": False}
    assert api.get("/api/subjects", headers=staff_token).status_code == 401
    r = api.post("/api/auth/token", data={"username": "ward-a-staff", "password": PASSWORD})
    assert r.status_code == 401 and r.json()["detail"] == "wrong username or password"
    # a password change revokes the tokens issued before it
    nurse = token_of(api, "new-nurse")
    new_password = "a different long passphrase"
    r = api.post(f"/api/users/{successor['id']}/password", json={"password": new_password}, headers=nurse)
    assert r.status_code == 200
    assert api.get("/api/subjects", headers=nurse).status_code == 401
    assert api.get("/api/subjects", headers=token_of(api, "new-nurse", new_password)).status_code == 200


def test_brute_force_gets_429_and_the_right_password_works_after_the_lockout(make_api):
    api = make_api(FER_LOGIN_FAILURES="3", FER_LOGIN_LOCKOUT_S="2")
    wrong = {"username": "ward-a-staff", "password": "not the password"}
    answers = [api.post("/api/auth/token", data=wrong) for _ in range(3)]
    assert [r.status_code for r in answers] == [401, 401, 401]
    locked = api.post("/api/auth/token", data={"username": "ward-a-staff", "password": PASSWORD})
    assert locked.status_code == 429 and 1 <= int(locked.headers["retry-after"]) <= 2
    assert api.post("/api/auth/session", data=wrong, headers={"X-Requested-With": "t"}).status_code == 429
    # unknown accounts are limited the same way (answers never tell which exist)
    ghost = {"username": "nobody-here", "password": "not the password"}
    assert [api.post("/api/auth/token", data=ghost).status_code for _ in range(4)] == [401, 401, 401, 429]
    time.sleep(2.2)
    assert api.post("/api/auth/token", data={"username": "ward-a-staff", "password": PASSWORD}).status_code == 200
    # the next lockout of the same account (after a success) starts again at 2 s
    [api.post("/api/auth/token", data=wrong) for _ in range(3)]
    assert int(api.post("/api/auth/token", data=wrong).headers["retry-after"]) <= 2


def test_one_client_is_limited_across_accounts(make_api):
    api = make_api(FER_LOGIN_PER_CLIENT="5")
    codes = [api.post("/api/auth/token", data={"username": f"user{i}", "password": "x" * 12}).status_code
             for i in range(7)]
    assert codes == [401] * 5 + [429] * 2


def test_unknown_and_known_usernames_cost_one_hash_check_each(make_api, db, monkeypatch):  # noqa: F811
    """Unknown names are verified against a dummy Argon2 hash of the same parameters, so both paths do
    the same work (their times side by side: benchmarks/bench_monitoring.py's guessing phase)."""
    from fer_app.monitoring import security

    api = make_api(FER_LOGIN_FAILURES="1000")
    checked: list[str] = []
    real = security._HASHER

    class CountingHasher:
        def verify(self, hash_: str, password: str) -> bool:
            checked.append(hash_)
            return real.verify(hash_, password)

    monkeypatch.setattr(security, "_HASHER", CountingHasher())
    with db() as session:
        stored = session.scalar(select(User.password_hash).where(User.username == "ward-a-staff"))
    for name, expected in (("ward-a-staff", stored), ("nobody-here", security._DUMMY_HASH)):
        checked.clear()
        r = api.post("/api/auth/token", data={"username": name, "password": "wrong password!"})
        assert r.status_code == 401 and r.json()["detail"] == "wrong username or password"
        assert checked == [expected]
    same_cost = real.check_needs_rehash
    assert not same_cost(stored) and not same_cost(security._DUMMY_HASH)  # the same Argon2 parameters


def test_names_are_normalised_and_passwords_strong(make_api):
    api = make_api()
    admin = token_of(api, "ward-a-admin")
    other_admin = token_of(api, "ward-b-admin")
    assert api.post("/api/users", json={"username": "Alice", "password": PASSWORD}, headers=admin).json()[
        "username"] == "alice"
    for twin in ("ALICE", "\uff41lice", "alice ", " Alice"):
        r = api.post("/api/users", json={"username": twin, "password": PASSWORD}, headers=other_admin)
        assert r.status_code == 409 and "alice" not in r.text.lower(), r.text  # no name of another team
    assert api.get("/api/subjects", headers=token_of(api, "ALICE")).status_code == 200  # logs in as alice
    for weak in ("short pw", "password1234", "aaaaaaaaaaaaaaaa", "qwertyuiop123"):
        r = api.post("/api/users", json={"username": "bob", "password": weak}, headers=admin)
        assert r.status_code == 422, (weak, r.text)
    for bad_name in ("bob\x00", "bob\nadmin", "\ud800bob", "   "):
        r = api.post("/api/users", content=json.dumps({"username": bad_name, "password": PASSWORD}),
                     headers={**admin, "Content-Type": "application/json"})
        assert r.status_code == 422, (bad_name, r.text)


def test_hostile_values_are_422_never_500(make_api):
    api = make_api()
    headers = token_of(api, "ward-a-staff")
    subject = api.post("/api/subjects", json={"label": "room 1"}, headers=headers).json()
    sid = api.post("/api/sessions", json={"subject_id": subject["id"]}, headers=headers).json()["id"]
    raw = {**headers, "Content-Type": "application/json"}
    huge = 2**70
    cases = [
        api.post("/api/subjects", content='{"label": "\\ud800 lone"}', headers=raw),
        api.post("/api/subjects", json={"label": "tab\there"}, headers=headers),
        api.get(f"/api/subjects/{huge}/sessions", headers=headers),
        api.delete(f"/api/subjects/{2**63}", headers=token_of(api, "ward-a-admin")),
        api.post("/api/sessions", json={"subject_id": huge}, headers=headers),
        api.get(f"/api/sessions/{huge}/timeline", headers=headers),
        api.post(f"/api/sessions/{huge}/end", headers=headers),
        api.post(f"/api/users/{huge}/disable", headers=token_of(api, "ward-a-admin")),
        api.post(f"/api/sessions/{sid}/frames", json={"frames": [{"time_s": 1, "faces": [
            {"face_id": huge, "probs": EVEN}]}]}, headers=headers),
        api.post(f"/api/sessions/{sid}/frames", json={"frames": [{"time_s": 1, "faces": [
            {"face_id": 1, "probs": {**EVEN, "fear": 1e308, "anger": 1e308}}]}]}, headers=headers),
        api.post(f"/api/sessions/{sid}/frames", json={"frames": [{"time_s": 1e300, "faces": []}]}, headers=headers),
        api.post(f"/api/sessions/{sid}/frames", content='{"frames": [{"time_s": NaN, "faces": []}]}', headers=raw),
        api.post(f"/api/sessions/{sid}/frames", json={"frames": [{"time_s": 86400 * 365, "faces": []}]},
                 headers=headers),
        api.post(f"/api/sessions/{sid}/frames", params={"time_s": "1e300"}, content=b"\xff\xd8\xff",
                 headers={**headers, "Content-Type": "image/jpeg"}),
        api.get(f"/api/audit?limit={huge}", headers=token_of(api, "ward-a-admin")),
        # coerced types and one face twice in a frame (it would count as two frames of one person)
        api.post(f"/api/sessions/{sid}/frames", json={"frames": [{"time_s": 1, "faces": [
            {"face_id": 1, "probs": {**EVEN, "neutral": "0.5"}}]}]}, headers=headers),
        api.post(f"/api/sessions/{sid}/frames", json={"frames": [{"time_s": 1, "faces": [
            {"face_id": 1, "probs": {**EVEN, "neutral": True}}]}]}, headers=headers),
        api.post(f"/api/sessions/{sid}/frames", json={"frames": [{"time_s": "1", "faces": []}]}, headers=headers),
        api.post(f"/api/sessions/{sid}/frames", json={"frames": [{"time_s": 1, "faces": [
            {"face_id": 1, "probs": EVEN}, {"face_id": 1, "probs": EVEN}]}]}, headers=headers),
        # probabilities that average to zero (subnormals): a second's row would be stored as NaN, and every
        # later read of the session's timeline would fail; all zero likewise
        api.post(f"/api/sessions/{sid}/frames", json={"frames": [
            {"time_s": 0.1, "faces": [{"face_id": 1, "probs": {**dict.fromkeys(EVEN, 0.0), "neutral": 5e-324}}]},
            {"time_s": 0.2, "faces": [{"face_id": 1, "probs": {**dict.fromkeys(EVEN, 0.0), "happiness": 5e-324}}]}]},
                 headers=headers),
        api.post(f"/api/sessions/{sid}/frames", json={"frames": [{"time_s": 1, "faces": [
            {"face_id": 1, "probs": dict.fromkeys(EVEN, 0.0)}]}]}, headers=headers),
    ]
    cases.append(api.post("/gradio_api/queue/join", content='{"data": "\\ud800", "fn_index": "x"}',
                          headers={"Content-Type": "application/json"}))  # Gradio's own routes too
    assert [r.status_code for r in cases] == [422] * len(cases), [(r.status_code, r.text[:120]) for r in cases]
    assert api.post(f"/api/sessions/{sid}/frames", content=b"not an image",  # a bad image: 400, not 500
                    headers={**headers, "Content-Type": "image/jpeg"}).status_code == 400
    # nothing half-done: the session still takes good frames and ends
    ok = {"frames": [{"time_s": 0.5, "faces": [{"face_id": 1, "probs": EVEN}]}]}
    assert api.post(f"/api/sessions/{sid}/frames", json=ok, headers=headers).status_code == 200
    assert api.post(f"/api/sessions/{sid}/end", headers=headers).json()["seconds_written"] == 1
    timeline = api.get(f"/api/sessions/{sid}/timeline", headers=headers)
    assert timeline.status_code == 200 and len(timeline.json()["rows"]) == 1, timeline.text[:300]


def test_end_ends_the_session_even_when_the_last_write_fails(make_api, monkeypatch):
    api = make_api()
    headers = token_of(api, "ward-a-staff")
    subject = api.post("/api/subjects", json={"label": "room 2"}, headers=headers).json()
    sid = api.post("/api/sessions", json={"subject_id": subject["id"]}, headers=headers).json()["id"]
    frames = {"frames": [{"time_s": 0.1, "faces": [{"face_id": 1, "probs": EVEN}]}]}
    assert api.post(f"/api/sessions/{sid}/frames", json=frames, headers=headers).status_code == 200

    def broken(*_args, **_kwargs):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(store, "write_rows", broken)
    r = api.post(f"/api/sessions/{sid}/end", headers=headers)
    assert r.status_code == 200 and r.json()["ended_at"] is not None
    monkeypatch.undo()
    later = api.post(f"/api/sessions/{sid}/frames", json=frames, headers=headers)
    assert later.status_code == 409  # ended for good


def stored_bytes(api: TestClient, database_url: str) -> bytes:  # noqa: F811
    """Every byte the database keeps on disk for its tables (SQLite: the file, WAL and shared memory;
    PostgreSQL: after a checkpoint, the files of the monitoring tables and their indexes)."""
    if database_url.startswith("sqlite"):
        folder = Path(database_url.removeprefix("sqlite:///")).parent
        return b"".join(p.read_bytes() for p in folder.iterdir() if p.is_file())
    engine = make_engine(database_url)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.execute(text("CHECKPOINT"))
        data = Path(connection.execute(text("SHOW data_directory")).scalar())
        relations = connection.execute(text(
            "SELECT pg_relation_filepath(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND pg_relation_filepath(c.oid) IS NOT NULL")).scalars().all()
    engine.dispose()
    return b"".join((data / r).read_bytes() for r in relations if (data / r).exists())


def test_erasure_leaves_no_row_no_file_and_no_byte_of_the_label(make_api, db, database_url, tmp_path):  # noqa: F811
    api = make_api()
    staff, admin = token_of(api, "ward-a-staff"), token_of(api, "ward-a-admin")
    label = "erase-me-Xq93Zt"
    subject = api.post("/api/subjects", json={"label": label}, headers=staff).json()
    sid = api.post("/api/sessions", json={"subject_id": subject["id"]}, headers=staff).json()["id"]
    frames = [{"time_s": t / 2, "faces": [{"face_id": 1, "probs": EVEN}]} for t in range(6)]
    api.post(f"/api/sessions/{sid}/frames", json={"frames": frames}, headers=staff)
    api.post(f"/api/sessions/{sid}/end", headers=staff)
    csv = api.get(f"/api/sessions/{sid}/timeline", params={"format": "csv"}, headers=staff)
    assert csv.status_code == 200 and csv.headers["cache-control"] == "no-store"
    assert label.encode() in stored_bytes(api, database_url)  # the check can see it while it exists
    assert api.delete(f"/api/subjects/{subject['id']}", headers=admin).status_code == 204
    with db() as session:
        for table in ("subjects", "sessions", "aggregates"):
            assert session.execute(text(f"SELECT count(*) FROM {table}")).scalar() == 0, table
    assert label.encode() not in stored_bytes(api, database_url)
    import tempfile

    assert not [p for p in Path(tempfile.gettempdir()).rglob(f"session_{sid}.csv")]  # no export copy anywhere
    audit = api.get("/api/audit", headers=admin).json()
    assert any(e["action"] == "subject_erase" and e["subject_id"] == subject["id"] for e in audit)
    assert label not in json.dumps(audit)


def test_audit_trail_records_who_did_what(make_api):
    api = make_api()
    admin = token_of(api, "ward-a-admin")
    api.post("/api/auth/token", data={"username": "ward-a-staff", "password": "a wrong password"})
    staff = token_of(api, "ward-a-staff")
    user = api.post("/api/users", json={"username": "carer", "password": PASSWORD}, headers=admin).json()
    subject = api.post("/api/subjects", json={"label": "room 3"}, headers=staff).json()
    sid = api.post("/api/sessions", json={"subject_id": subject["id"]}, headers=staff).json()["id"]
    api.post(f"/api/sessions/{sid}/end", headers=staff)
    api.get(f"/api/sessions/{sid}/timeline", params={"format": "csv"}, headers=staff)
    api.post(f"/api/users/{user['id']}/disable", headers=admin)
    assert api.get("/api/audit", headers=staff).status_code == 403
    actions = [e["action"] for e in reversed(api.get("/api/audit", headers=admin).json())]
    assert actions == ["login", "login_failed", "login", "user_create", "subject_create", "session_start",
                       "session_end", "export", "user_disable"]
    assert api.get("/api/audit", headers=token_of(api, "ward-b-admin")).json()[0]["action"] == "login"  # own team
    columns = {c.name for c in AuditEvent.__table__.columns}
    assert not columns & {"label", "probs", "image", *[f"p_{k}" for k in LABELS]}


def test_headers_on_tokens_and_data(make_api):
    api = make_api()
    r = api.post("/api/auth/token", data={"username": "ward-a-staff", "password": PASSWORD})
    assert r.headers["cache-control"] == "no-store" and r.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'self' https://huggingface.co" in r.headers["content-security-policy"]
    assert r.headers["referrer-policy"] == "no-referrer" and "x-frame-options" not in r.headers
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert api.get("/api/subjects", headers=headers).headers["cache-control"] == "no-store"
    assert api.get("/health").headers["x-content-type-options"] == "nosniff"
    cookie = api.post("/api/auth/session", data={"username": "ward-a-staff", "password": PASSWORD},
                      headers={"X-Requested-With": "t"}).headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Max-Age=" in cookie
    assert api.post("/api/auth/session", data={"username": "ward-a-staff", "password": PASSWORD}).status_code == 400
    # the cookie reads, never writes (a cross-site form cannot post as the user)
    api.cookies.set("fer_session", cookie.split("=", 1)[1].split(";")[0])
    assert api.get("/api/subjects").status_code == 200
    assert api.post("/api/subjects", json={"label": "via cookie"}).status_code == 401


def test_settings_refuse_weak_secrets_and_dev_binds_loopback(tmp_path, monkeypatch):
    from fer_app import server as app

    for weak in ("a" * 32, "abcd" * 12, "short-Secret-1"):
        monkeypatch.setenv("FER_JWT_SECRET", weak)
        with pytest.raises(MonitoringConfigError):
            MonitoringSettings.from_env()
    assert app.serve_host(True, {}) == "127.0.0.1" and app.serve_host(False, {}) == "0.0.0.0"
    assert app.serve_host(True, {"GRADIO_SERVER_NAME": "10.0.0.5"}) == "10.0.0.5"
    path = tmp_path / "new" / "fer.db"
    make_engine(f"sqlite:///{path}").dispose()
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)


def test_session_hash_alone_cannot_act_in_the_tab(tmp_path, model_dir):
    """Replay a tab event (create subject) through Gradio's queue with a made-up session hash: without
    the login cookie it fails, with it the same event works. Then a REST session of image frames
    (one over the 1 MB that Starlette would spool to a temp file) leaves no image on disk."""
    server_tmp = tmp_path / "server-tmp"
    server_tmp.mkdir()
    env = {"FER_MODEL": str(model_dir), "FER_JWT_SECRET": SECRET,
           "FER_DATABASE_URL": f"sqlite:///{tmp_path / 'fer.db'}", "FER_ADMIN_PASSWORD": PASSWORD,
           "TMPDIR": str(server_tmp), "GRADIO_TEMP_DIR": str(server_tmp / "gradio")}
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "fer_app.monitoring", "create-admin", "--username", "boss"], cwd=ROOT,
                   env={**os.environ, **env}, check=True, capture_output=True, timeout=120)
    with app_server(tmp_path / "app.log", **env) as url:
        config = httpx.get(f"{url}/config").json()
        button = next(c["id"] for c in config["components"] if c.get("props", {}).get("elem_id") == "mon-create")
        event = next(d for d in config["dependencies"] if [button, "click"] in d["targets"])

        def call(label: str, cookies: dict[str, str]) -> dict:
            session_hash = f"replay{time.time_ns()}"
            with httpx.Client(base_url=url, cookies=cookies, timeout=60) as client:
                joined = client.post("/gradio_api/queue/join", json={
                    "data": [label], "event_data": None, "fn_index": event["id"], "trigger_id": button,
                    "session_hash": session_hash})
                assert joined.status_code == 200, joined.text
                with client.stream("GET", "/gradio_api/queue/data", params={"session_hash": session_hash}) as r:
                    for line in r.iter_lines():
                        if line.startswith("data:"):
                            message = json.loads(line[5:])
                            if message.get("msg") == "process_completed":
                                return message
            raise AssertionError("no answer")

        refused = call("intruder", {})
        assert refused["success"] is False and "log in" in json.dumps(refused).lower()
        login = httpx.post(f"{url}/api/auth/session", data={"username": "boss", "password": PASSWORD},
                           headers={"X-Requested-With": "t"})
        assert login.status_code == 200 and "server" not in login.headers
        done = call("room 9", {"fer_session": login.cookies["fer_session"]})
        assert done["success"] is True, done
        token = httpx.post(f"{url}/api/auth/token", data={"username": "boss", "password": PASSWORD}).json()
        labels = [s["label"] for s in httpx.get(f"{url}/api/subjects", headers={
            "Authorization": f"Bearer {token['access_token']}"}).json()]
        assert labels == ["room 9"]
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        subject = httpx.get(f"{url}/api/subjects", headers=headers).json()[0]
        sid = httpx.post(f"{url}/api/sessions", json={"subject_id": subject["id"]}, headers=headers).json()["id"]
        face = Image.open(ASTRONAUT).convert("RGB")
        big = io.BytesIO()
        face.resize((1400, 1400)).save(big, "PNG")  # > 1 MB
        assert big.tell() > 1024 * 1024
        small = io.BytesIO()
        face.save(small, "JPEG")
        for t, (kind, data) in enumerate([("multipart", big.getvalue()), ("raw", small.getvalue())]):
            if kind == "multipart":
                r = httpx.post(f"{url}/api/sessions/{sid}/frames", params={"time_s": t}, headers=headers,
                               files={"file": ("f.png", data, "image/png")}, timeout=120)
            else:
                r = httpx.post(f"{url}/api/sessions/{sid}/frames", params={"time_s": t}, content=data,
                               headers={**headers, "Content-Type": "image/jpeg"}, timeout=120)
            assert r.status_code == 200 and len(r.json()["faces"]) == 1, r.text
        assert httpx.post(f"{url}/api/sessions/{sid}/end", headers=headers).json()["seconds_written"] == 1
    examples = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (ROOT / "fer_app" / "examples").glob("*")}
    assert image_files(server_tmp, examples) == []


def test_logout_revokes_and_needs_the_header(make_api):
    api = make_api()
    login = api.post("/api/auth/session", data={"username": "ward-a-staff", "password": PASSWORD},
                     headers={"X-Requested-With": "t"})
    bearer = token_of(api, "ward-a-staff")  # another device of the same user
    assert api.get("/api/subjects").status_code == 200 and api.get("/api/subjects", headers=bearer).status_code == 200
    assert api.post("/api/auth/logout").status_code == 400  # a cross-site form cannot log anyone out
    cookie = login.cookies["fer_session"]
    assert api.post("/api/auth/logout", headers={"X-Requested-With": "t"}).status_code == 200
    api.cookies.set("fer_session", cookie)  # the old cookie replayed (as a running webcam stream would)
    assert api.get("/api/subjects").status_code == 401
    assert api.get("/api/subjects", headers=bearer).status_code == 401  # every login of the user ends
    assert [e["action"] for e in api.get("/api/audit", headers=token_of(api, "ward-a-admin")).json()][1] == "logout"


def test_unrelated_malformed_cookies_do_not_hide_the_login(make_api):
    api = make_api()
    login = api.post("/api/auth/session", data={"username": "ward-a-staff", "password": PASSWORD},
                     headers={"X-Requested-With": "t"})
    jar = f'other={{"json": "value"}}; a=b c; fer_session={login.cookies["fer_session"]}; z="unterminated'
    api.cookies.clear()
    assert api.get("/api/subjects", headers={"Cookie": jar}).status_code == 200


def test_invisible_characters_cannot_make_a_lookalike_name(make_api):
    api = make_api()
    admin = token_of(api, "ward-a-admin")
    for name in ("ward-a-admin\u200b", "ward\u00ad-a-admin", "\u202eward-a-admin", "\ufeffward-a-admin"):
        r = api.post("/api/users", json={"username": name, "password": PASSWORD}, headers=admin)
        assert r.status_code == 422, (name, r.text)


def test_a_restarted_live_session_and_a_reused_id_never_mix_rows(make_api, db, database_url):  # noqa: F811
    """Erase a subject from the tab's path (the store) while its REST session holds an open second;
    the next session may get the same id (SQLite): it must start clean. A live state made afresh
    (a restarted server) re-emits stored seconds: they are skipped, never a 500."""
    api = make_api()
    staff = token_of(api, "ward-a-staff")
    a = api.post("/api/subjects", json={"label": "A"}, headers=staff).json()
    sid = api.post("/api/sessions", json={"subject_id": a["id"]}, headers=staff).json()["id"]
    late = {"frames": [{"time_s": t, "faces": [{"face_id": 1, "probs": EVEN}]} for t in (100.1, 300.2)]}
    assert api.post(f"/api/sessions/{sid}/frames", json=late, headers=staff).status_code == 200
    with db() as session:  # what the tab's Erase does, outside the REST routes (no registry cleared)
        subject = session.get(Subject, a["id"])
        store.erase_subject(session, subject, 1)
    b = api.post("/api/subjects", json={"label": "B"}, headers=staff).json()
    sid_b = api.post("/api/sessions", json={"subject_id": b["id"]}, headers=staff).json()["id"]
    if database_url.startswith("sqlite"):
        assert sid_b == sid  # the id came back
    early = {"frames": [{"time_s": t, "faces": [{"face_id": 1, "probs": EVEN}]} for t in (0.1, 1.2, 2.3)]}
    assert api.post(f"/api/sessions/{sid_b}/frames", json=early, headers=staff).status_code == 200
    rows = api.get(f"/api/sessions/{sid_b}/timeline", headers=staff).json()["rows"]
    assert [r["start_s"] for r in rows] == [0, 1]  # none of A's seconds (100, 300)
    # a fresh live state (as after a restart) sends seconds 0-2 again: 0 and 1 are skipped, 2 is new
    from fer_app.monitoring.live import LiveSession

    with db() as session:
        again = LiveSession(sid_b, labels=list(LABELS))
        again.add_results(session, [(0.5, [(1, [1 / 8] * 8)]), (1.5, [(1, [1 / 8] * 8)]), (2.5, [(1, [1 / 8] * 8)]),
                                    (3.1, [])])
    assert [r["start_s"] for r in api.get(f"/api/sessions/{sid_b}/timeline", headers=staff).json()["rows"]] \
        == [0, 1, 2]


def test_second_pass_of_hostile_requests(make_api):
    """What a live attack found after the first round: bearer logout, echoed input, lax id types,
    racing ends."""
    from concurrent.futures import ThreadPoolExecutor

    api = make_api()
    bearer = token_of(api, "ward-a-staff")
    r = api.post("/api/auth/logout", headers={**bearer, "X-Requested-With": "t"})
    assert r.status_code == 200 and api.get("/api/subjects", headers=bearer).status_code == 401
    staff = token_of(api, "ward-a-staff")
    subject = api.post("/api/subjects", json={"label": "room 5"}, headers=staff).json()
    for lax in ("1", True, 1.0):
        assert api.post("/api/sessions", json={"subject_id": lax}, headers=staff).status_code == 422
    sid = api.post("/api/sessions", json={"subject_id": subject["id"]}, headers=staff).json()["id"]
    marker = "Zq93-not-echoed"
    r = api.post(f"/api/sessions/{sid}/frames", content='{"frames": [{"time_s": NaN, "faces": [], "x": "'
                 + marker + '"}]}', headers={**staff, "Content-Type": "application/json"})
    assert r.status_code == 422 and marker not in r.text and "time_s" in r.text
    with ThreadPoolExecutor(4) as pool:
        ends = list(pool.map(lambda _: api.post(f"/api/sessions/{sid}/end", headers=staff), range(4)))
    assert {r.status_code for r in ends} == {200} and len({r.json()["ended_at"] for r in ends}) == 1
    assert [e["action"] for e in api.get("/api/audit", headers=token_of(api, "ward-a-admin")).json()].count(
        "session_end") == 1


def test_a_busy_server_answers_image_frames_503(make_api, monkeypatch):
    from fer_app.limits import ServerBusyError

    api = make_api()
    staff = token_of(api, "ward-a-staff")
    subject = api.post("/api/subjects", json={"label": "room 6"}, headers=staff).json()
    sid = api.post("/api/sessions", json={"subject_id": subject["id"]}, headers=staff).json()["id"]

    def busy(*_args, **_kwargs):
        raise ServerBusyError("the server is busy (test)", retry_after_s=7)

    monkeypatch.setattr(FERService, "predict", busy)
    r = api.post(f"/api/sessions/{sid}/frames", content=ASTRONAUT.read_bytes(),
                 headers={**staff, "Content-Type": "image/jpeg"})
    assert r.status_code == 503 and r.headers["retry-after"] == "7" and r.headers["x-content-type-options"] == "nosniff"


def test_a_frame_in_flight_across_an_erasure_never_lands_in_the_next_session(make_api, db, database_url):  # noqa: F811
    """A live session made for a row, written after that row was erased and its id (SQLite) given to
    another team's new session: refused, and the new session gets no row."""
    from fer_app.monitoring.live import LiveSession

    api = make_api()
    a_admin, b_admin = token_of(api, "ward-a-admin"), token_of(api, "ward-b-admin")
    a = api.post("/api/subjects", json={"label": "A"}, headers=a_admin).json()
    sid = api.post("/api/sessions", json={"subject_id": a["id"]}, headers=a_admin).json()["id"]
    with db() as session:
        in_flight = LiveSession.of(session.get(MonitoringSession, sid))
    assert api.delete(f"/api/subjects/{a['id']}", headers=a_admin).status_code == 204
    b = api.post("/api/subjects", json={"label": "B"}, headers=b_admin).json()
    sid_b = api.post("/api/sessions", json={"subject_id": b["id"]}, headers=b_admin).json()["id"]
    if database_url.startswith("sqlite"):
        assert sid_b == sid
    with db() as session, pytest.raises(ValueError, match="no longer exists"):
        in_flight.add_results(session, [(0.5, [(666, [1 / 8] * 8)]), (1.5, [])])
    assert api.get(f"/api/sessions/{sid_b}/timeline", headers=b_admin).json()["rows"] == []
