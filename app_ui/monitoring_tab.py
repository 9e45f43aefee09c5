"""The app's "Monitoring" tab: log in, choose or create a subject, run a live webcam session whose
per-second rows are stored, and look back at earlier sessions (one plot each, CSV export).

Everything goes through :mod:`monitoring` (the same store, tokens and :class:`~monitoring.live.LiveSession`
as the REST routes); the browser keeps only an access token in its per-tab ``gr.State``.
"""

from __future__ import annotations

import csv
import threading
import time
from dataclasses import dataclass
from typing import Any

import gradio as gr
from matplotlib.figure import Figure
from sqlalchemy.orm import sessionmaker

from fer_core.draw import annotate, label_color
from fer_core.labels import LABELS
from fer_core.timeline import Timeline
from monitoring import store
from monitoring.live import LiveSession
from monitoring.models import MonitoringSession
from monitoring.security import AuthError, TokenClaims, create_token, read_token
from monitoring.settings import MonitoringSettings

from .limits import ServerBusyError
from .service import BATCH_ROOT, LIVE_PLOT_EVERY_S, LIVE_WINDOW_S, FERService, batch_folder


@dataclass
class MonitoringContext:
    """What the tab needs when monitoring is on: settings and the ORM session factory."""

    settings: MonitoringSettings
    factory: sessionmaker


def session_figure(rows: list[dict[str, Any]], title: str, step_s: int = 1) -> Figure:
    """Stacked expression probabilities over a session's time, one panel per tracked face
    (at most 4), from :func:`monitoring.store.timeline` rows of ``step_s``-second buckets (each
    drawn over its whole width, so a single bucket shows too)."""
    faces = sorted({r["face_id"] for r in rows})[:4] or [None]
    fig = Figure(figsize=(9, 1.8 + 1.6 * len(faces)), layout="constrained")
    axes = fig.subplots(len(faces), 1, squeeze=False)[:, 0]
    for ax, face in zip(axes, faces):
        mine = [r for r in rows if r["face_id"] == face]
        if not mine:
            ax.text(0.5, 0.5, "no face recorded", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        times = [r["start_s"] for r in mine] + [mine[-1]["start_s"] + step_s]
        ax.stackplot(times, [[r["probs"][k] for r in mine] + [mine[-1]["probs"][k]] for k in LABELS],
                     labels=LABELS, colors=[label_color(k) for k in LABELS], step="post")
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"face {face}")
    axes[-1].set_xlabel("seconds since the session started")
    axes[0].set_title(title)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig


def build_monitoring_tab(service: FERService, context: MonitoringContext | None, disabled_reason: str) -> None:
    """Add the Monitoring tab's components and events to the current ``gr.Blocks``."""
    gr.Markdown("Monitoring stores **numbers only** (per second and tracked face: mean probabilities, label, "
                "counts), **never images**. Subjects are pseudonymous labels.")
    if context is None:
        gr.Markdown(f"**Monitoring is off on this server.** {disabled_reason}", elem_id="monitoring-off")
        return
    settings, factory = context.settings, context.factory
    token = gr.State(None)
    live = gr.State(None)

    def who(current: str | None) -> TokenClaims:
        if not current:
            raise gr.Error("Log in first.")
        try:
            return read_token(settings.jwt_secret, current)
        except AuthError as exc:
            raise gr.Error(f"{exc}") from exc

    def subject_choices(claims: TokenClaims) -> list[tuple[str, int]]:
        with factory() as db:
            return [(s.label, s.id) for s in store.list_subjects(db, claims.team_id)]

    def login(username: str, password: str):
        with factory() as db:
            user = store.authenticate(db, username or "", password or "")
        if user is None:
            raise gr.Error("Wrong username or password.")
        issued = create_token(settings.jwt_secret, user.id, user.team_id, user.role, settings.token_minutes)
        claims = read_token(settings.jwt_secret, issued)
        return (issued, f"Logged in as **{user.username}** ({user.role}).",
                gr.update(choices=subject_choices(claims), value=None), "")

    def create_subject(current: str | None, label: str):
        claims = who(current)
        if not (label or "").strip():
            raise gr.Error("Give the subject a label (a pseudonym, not a name).")
        with factory() as db:
            if any(s.label == label for s in store.list_subjects(db, claims.team_id)):
                raise gr.Error(f"A subject labelled {label!r} exists.")
            subject = store.create_subject(db, claims.team_id, label)
            db.commit()
        return gr.update(choices=subject_choices(claims), value=subject.id), ""

    def start(current: str | None, subject_id: int | None, state: dict | None):
        claims = who(current)
        if subject_id is None:
            raise gr.Error("Choose or create a subject first.")
        if state and not state["ended"]:
            raise gr.Error(f"Session {state['live'].session_id} is still running: stop it first.")
        with factory() as db:
            if store.get_subject(db, claims.team_id, int(subject_id)) is None:
                raise gr.Error("That subject is not in your team.")
            started = MonitoringSession(subject_id=int(subject_id), started_by=claims.user_id,
                                        started_at=store.now(), model_id=service.model_id,
                                        model_revision=service.recognizer.revision)
            db.add(started)
            db.commit()
        state = {"live": LiveSession(started.id), "t0": time.monotonic(), "frames": 0, "plotted": None,
                 "timeline": Timeline(list(LABELS), window_s=LIVE_WINDOW_S), "last_s": 0.0,
                 "lock": threading.Lock(), "ended": None}
        return state, f"Session **{started.id}** running: turn the webcam on.", gr.update(interactive=True)

    def frame(image, current: str | None, state: dict | None):
        if image is None or not state:
            return None, gr.skip(), gr.skip()
        who(current)
        if state["ended"]:  # the webcam still streams after "Stop session": keep saying so
            return gr.skip(), state["ended"], gr.skip()
        at = time.monotonic() - state["t0"]
        try:
            pil, faces = service.predict(image, service.defaults())
        except ServerBusyError:
            return gr.skip(), "Server busy: this frame was skipped.", gr.skip()
        # Two frames are classified at once (concurrency 2) and "Stop session" can come while one
        # is: add them one at a time, in time order, and none after the stop.
        with state["lock"]:
            if state["ended"]:
                return gr.skip(), state["ended"], gr.skip()
            at = state["last_s"] = max(at, state["last_s"])
            with factory() as db:
                tracked, _ = state["live"].add_faces(db, at, faces)
            state["timeline"].add(state["frames"], at, tracked, faces)
            state["frames"] += 1
            plot = gr.skip()
            if state["plotted"] is None or at - state["plotted"] >= LIVE_PLOT_EVERY_S:
                plot, state["plotted"] = state["timeline"].timeline_figure(max_faces=4), at
            status = f"Session {state['live'].session_id}: {state['frames']} frames, {at:.0f} s."
        return annotate(pil, tracked), status, plot

    def stop(current: str | None, state: dict | None, subject_id: int | None):
        claims = who(current)
        if not state or state["ended"]:
            raise gr.Error("No session is running.")
        with state["lock"]:
            with factory() as db:
                written = state["live"].finish(db)
                monitored = store.get_session(db, claims.team_id, state["live"].session_id)
                if monitored is not None and monitored.ended_at is None:
                    monitored.ended_at = store.now()
                    db.commit()
            state["ended"] = f"Session {state['live'].session_id} ended ({written} last rows written)."
        # The state stays (marked ended): a frame whose answer reaches the page after this one
        # cannot leave "running" there, since the next frame puts the ended line back.
        return state, state["ended"], sessions_update(claims, subject_id)

    def sessions_update(claims: TokenClaims, subject_id: int | None):
        if subject_id is None:
            return gr.update(choices=[], value=None)
        with factory() as db:
            if store.get_subject(db, claims.team_id, int(subject_id)) is None:
                return gr.update(choices=[], value=None)
            found = store.list_sessions(db, int(subject_id))
        return gr.update(choices=[(f"#{s.id} {s.started_at:%Y-%m-%d %H:%M}", s.id) for s in found], value=None)

    def on_subject(current: str | None, subject_id: int | None):
        return sessions_update(who(current), subject_id)

    def history(current: str | None, session_id: int | None, resolution: str):
        claims = who(current)
        if session_id is None:
            raise gr.Error("Choose a session.")
        with factory() as db:
            monitored = store.get_session(db, claims.team_id, int(session_id))
            if monitored is None:
                raise gr.Error("That session is not in your team.")
            rows = store.timeline(db, int(session_id), resolution)
        path = batch_folder(BATCH_ROOT) / f"session_{session_id}.csv"
        with path.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["start_s", "face_id", "n_frames", "faces", "label", *LABELS])
            for r in rows:
                writer.writerow([r["start_s"], r["face_id"], r["n_frames"], r["faces"], r["label"],
                                 *[r["probs"][k] for k in LABELS]])
        figure = session_figure(rows, f"session {session_id} ({resolution} means)", store.RESOLUTIONS[resolution])
        return figure, str(path)

    with gr.Row():
        username = gr.Textbox(label="Username", elem_id="mon-user")
        password = gr.Textbox(label="Password", type="password", elem_id="mon-password")
        login_button = gr.Button("Log in", elem_id="mon-login")
    status = gr.Markdown(elem_id="mon-status")
    with gr.Row():
        subject = gr.Dropdown(label="Subject", choices=[], elem_id="mon-subject")
        new_label = gr.Textbox(label="New subject (pseudonymous label)", elem_id="mon-new-label")
        create_button = gr.Button("Create subject", elem_id="mon-create")
    with gr.Row():
        start_button = gr.Button("Start session", variant="primary", elem_id="mon-start")
        stop_button = gr.Button("Stop session", elem_id="mon-stop")
    with gr.Row():
        cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam", elem_id="mon-cam")
        shown = gr.Image(label="Tracked", elem_id="mon-live")
    live_status = gr.Markdown(elem_id="mon-live-status")
    live_plot = gr.Plot(label=f"This session (last {LIVE_WINDOW_S / 60:.0f} minutes)", elem_id="mon-live-plot")
    with gr.Row():
        past = gr.Dropdown(label="Earlier session", choices=[], elem_id="mon-session")
        resolution = gr.Radio(["1s", "10s", "1min"], value="10s", label="Resolution")
        show_button = gr.Button("Show", elem_id="mon-show")
    plot = gr.Plot(label="Expressions over the session", elem_id="mon-plot")
    csv_file = gr.File(label="Session CSV", elem_id="mon-csv")

    login_button.click(login, [username, password], [token, status, subject, password], api_visibility="private")
    create_button.click(create_subject, [token, new_label], [subject, new_label], api_visibility="private")
    subject.change(on_subject, [token, subject], past, api_visibility="private")
    start_button.click(start, [token, subject, live], [live, live_status, cam], api_visibility="private")
    cam.stream(frame, [cam, token, live], [shown, live_status, live_plot], stream_every=0.2, concurrency_limit=2,
               time_limit=24 * 3600, show_progress="hidden", api_visibility="private")
    stop_button.click(stop, [token, live, subject], [live, live_status, past], api_visibility="private")
    show_button.click(history, [token, past, resolution], [plot, csv_file], api_visibility="private")

