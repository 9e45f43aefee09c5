"""The app's "Monitoring" tab: log in, choose, create or erase a subject, run a live webcam session
whose per-second rows are stored, and look back at earlier sessions (one plot each, CSV link).

Privacy and access, by construction:

- **No image reaches the disk.** Webcam frames arrive as in-memory data URLs; the annotated frame
  goes back as a data URL inside HTML (Gradio caches files of image outputs, never HTML text);
  the plots travel as in-memory PNGs; the CSV is a link to the REST route, made in memory.
- **The login is a cookie, not the page.** The Log in button's browser code posts the form to
  ``POST /api/auth/session``, which sets an HttpOnly, ``SameSite=Strict`` cookie; the password
  never passes through Gradio. Every event reads that cookie from its request and calls
  :func:`fer_app.monitoring.auth.authorize` (user exists, active, same token version, team and role), so
  Gradio's ``session_hash`` alone can do nothing and a disabled user is stopped at the next event.
  A webcam stream is one event to Gradio: its frames carry the cookie the stream started with, so
  Log out revokes the user's tokens on the server (it stops a running stream too), and after
  logging in again the webcam is restarted.

Everything goes through :mod:`monitoring` (the same store, login and
:class:`~fer_app.monitoring.live.LiveSession` as the REST routes). The model reaches it as a
:class:`fer_app.monitoring.predictor.Predictor` (:class:`ServicePredictor` wraps the app's
:class:`~fer_app.service.FERService`): a session records that model's labels, whatever they are.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

import gradio as gr
from matplotlib.figure import Figure
from PIL import Image
from sqlalchemy.orm import sessionmaker

from fer_app.monitoring import store
from fer_app.monitoring.auth import authorize, cookie_token
from fer_app.monitoring.live import LiveRegistry, LiveSession
from fer_app.monitoring.models import User
from fer_app.monitoring.predictor import Predictor
from fer_app.monitoring.security import AuthError
from fer_app.monitoring.settings import MonitoringSettings
from fer_core.draw import annotate
from fer_core.labels import label_colors
from fer_core.plots import timeline_figure
from fer_core.result import FaceResult
from fer_core.timeline import Timeline

from .limits import ServerBusyError
from .service import LIVE_PLOT_EVERY_S, LIVE_WINDOW_S, FERService, frame_html

#: Browser code of the Log in button: post the form to the cookie route; hand Python only the
#: error text (never the password).
LOGIN_JS = """
async (username, password) => {
  const body = new URLSearchParams({username: username || "", password: password || ""});
  let error = "";
  try {
    const r = await fetch("/api/auth/session", {method: "POST", body: body, credentials: "same-origin",
                                                 headers: {"X-Requested-With": "fer-app"}});
    if (!r.ok) {
      const detail = (await r.json().catch(() => ({}))).detail;
      error = typeof detail === "string" ? detail : "login failed (" + r.status + ")";
    }
  } catch (e) { error = "the server cannot be reached"; }
  return [error, ""];
}
"""
#: Browser code of the Log out button: drop the cookie.
LOGOUT_JS = """
async () => {
  await fetch("/api/auth/logout", {method: "POST", credentials: "same-origin",
                                   headers: {"X-Requested-With": "fer-app"}}).catch(() => null);
  return [];
}
"""
#: Browser code of the Erase button: ask first.
ERASE_JS = """
(subject) => (subject != null && confirm("Erase this subject and all its sessions? This cannot be undone.")) ?
             [subject] : [null]
"""


class ServicePredictor:
    """The app's :class:`FERService` as the :class:`fer_app.monitoring.predictor.Predictor` that the
    monitoring routes and this tab take: its model's labels, id and revision, and
    :meth:`FERService.predict` with the model's default options (inside the service's inference
    limit: :class:`~fer_app.limits.ServerBusyError`, with ``retry_after_s``, when it is full).

    Args:
        service: the loaded model service.
    """

    def __init__(self, service: FERService) -> None:
        self.service = service

    @property
    def labels(self) -> list[str]:
        """The model's label names, in probability order."""
        return self.service.recognizer.labels

    @property
    def model_id(self) -> str:
        """What was loaded (``FER_MODEL`` or ``"bundled default"``)."""
        return self.service.model_id

    @property
    def model_revision(self) -> str | None:
        """The resolved Hub commit, or ``None`` for a local folder."""
        return self.service.recognizer.revision

    def predict(self, image: Any) -> tuple[Image.Image, list[FaceResult]]:
        """:meth:`FERService.predict` with the model's defaults (faces verified by FaceMesh) on a
        webcam frame (``photo=False``: the adaptive, speed-first smallest face): the oriented image
        and its faces.

        Raises:
            fer_core.InvalidImageError: the image is invalid.
            ServerBusyError: no inference slot came free.
        """
        return self.service.predict(image, self.service.defaults(), photo=False)


@dataclass
class MonitoringContext:
    """What the tab needs when monitoring is on: settings, the ORM session factory, the REST
    routes' live sessions (an erase here must drop them too), and the model as the routes see it
    (whose labels sessions record and which classifies webcam frames)."""

    settings: MonitoringSettings
    factory: sessionmaker
    live: LiveRegistry
    predictor: Predictor


def session_figure(rows: list[dict[str, Any]], title: str, labels: Sequence[str], step_s: int = 1) -> Figure:
    """Stacked expression probabilities over a session's time, one panel per tracked face
    (at most 4), from :func:`fer_app.monitoring.store.timeline` rows of ``step_s``-second buckets (each
    drawn over its whole width, so a single bucket shows too), stacked in the order of the
    session's ``labels`` in :func:`fer_core.labels.label_colors`' colours)."""
    faces = sorted({r["face_id"] for r in rows})[:4] or [None]
    palette = label_colors(labels)
    colors = [palette[k] for k in labels]
    fig = Figure(figsize=(9, 1.8 + 1.6 * len(faces)), layout="constrained")
    axes = fig.subplots(len(faces), 1, squeeze=False)[:, 0]
    for ax, face in zip(axes, faces):
        mine = [r for r in rows if r["face_id"] == face]
        if not mine:
            ax.text(0.5, 0.5, "no face recorded", ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
        times = [r["start_s"] for r in mine] + [mine[-1]["start_s"] + step_s]
        ax.stackplot(times, [[r["probs"][k] for r in mine] + [mine[-1]["probs"][k]] for k in labels],
                     labels=list(labels), colors=colors, step="post")
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"face {face}")
    axes[-1].set_xlabel("seconds since the session started")
    axes[0].set_title(title)
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return fig


def build_monitoring_tab(context: MonitoringContext | None, disabled_reason: str) -> None:
    """Add the Monitoring tab's components and events to the current ``gr.Blocks``.

    Args:
        context: monitoring's settings, database and model, or ``None`` when monitoring is off.
        disabled_reason: why monitoring is off (shown in the tab when ``context`` is ``None``).
    """
    gr.Markdown("Monitoring stores **numbers only** (per second and tracked face: mean probabilities, label, "
                "counts), **never images**. Subjects are pseudonymous labels.")
    if context is None:
        gr.Markdown(f"**Monitoring is off on this server.** {disabled_reason}", elem_id="monitoring-off")
        return
    settings, factory, predictor = context.settings, context.factory, context.predictor
    live = gr.State(None)

    def who(request: gr.Request | None) -> User:
        """The logged-in user of this event's own request (its cookie), checked in the database."""
        token = cookie_token(request.headers) if request is not None else None
        with factory() as db:
            try:
                return authorize(db, settings.jwt_secret, token)
            except AuthError as exc:
                raise gr.Error(str(exc)) from exc

    def subject_choices(user: User) -> list[tuple[str, int]]:
        with factory() as db:
            return [(s.label, s.id) for s in store.list_subjects(db, user.team_id)]

    def after_login(error: str, _blank: str, request: gr.Request):
        if error:
            raise gr.Error(error)
        user = who(request)
        return (f"Logged in as **{escape(user.username)}** ({user.role}).",
                gr.update(choices=subject_choices(user), value=None), "")

    def after_logout():
        return "Logged out.", gr.update(choices=[], value=None), gr.update(choices=[], value=None), ""

    def create_subject(label: str, request: gr.Request):
        user = who(request)
        if not (label or "").strip():
            raise gr.Error("Give the subject a label (a pseudonym, not a name).")
        with factory() as db:
            if any(s.label == label.strip() for s in store.list_subjects(db, user.team_id)):
                raise gr.Error("A subject with that label exists.")
            try:
                subject = store.create_subject(db, user.team_id, label)
            except ValueError as exc:
                raise gr.Error(str(exc)) from exc
            store.audit(db, "subject_create", team_id=user.team_id, actor_id=user.id, subject_id=subject.id)
            db.commit()
        return gr.update(choices=subject_choices(user), value=subject.id), ""

    def erase_subject(subject_id: int | None, request: gr.Request):
        user = who(request)
        if subject_id is None:  # nothing chosen, or the confirmation was cancelled
            return gr.skip(), gr.skip(), gr.skip()
        if user.role != "admin":
            raise gr.Error("Only admins can erase a subject.")
        with factory() as db:
            subject = store.get_subject(db, user.team_id, int(subject_id))
            if subject is None:
                raise gr.Error("That subject is not in your team.")
            erased = store.erase_subject(db, subject, user.id)
        context.live.forget(erased)
        return (gr.update(choices=subject_choices(user), value=None), gr.update(choices=[], value=None),
                f"Subject {int(subject_id)} erased with its {len(erased)} session(s).")

    def start(subject_id: int | None, state: dict | None, request: gr.Request):
        user = who(request)
        if subject_id is None:
            raise gr.Error("Choose or create a subject first.")
        if state and not state["ended"]:
            raise gr.Error(f"Session {state['live'].session_id} is still running: stop it first.")
        with factory() as db:
            try:
                started = store.start_session(db, user, int(subject_id), predictor)
            except store.NotInTeamError as exc:
                raise gr.Error("That subject is not in your team.") from exc
            except ValueError as exc:  # a model whose labels cannot be recorded
                raise gr.Error(f"Monitoring cannot record this model: {exc}") from exc
        state = {"live": LiveSession.of(started), "t0": time.monotonic(), "frames": 0,
                 "plotted": None, "timeline": Timeline(started.labels, window_s=LIVE_WINDOW_S), "last_s": 0.0,
                 "lock": threading.Lock(), "ended": None, "team_id": user.team_id}
        return state, f"Session **{started.id}** running: turn the webcam on.", gr.update(interactive=True)

    def frame(image, state: dict | None, request: gr.Request):
        if image is None or not state:
            return None, gr.skip(), gr.skip()
        try:
            user = who(request)
        except gr.Error as exc:  # logged out or disabled: drop the frame, say so (no toast per frame)
            return "", f"Frames are not recorded: {exc.message}", gr.skip()
        if state["ended"]:  # the webcam still streams after "Stop session": keep saying so
            return gr.skip(), state["ended"], gr.skip()
        if user.team_id != state["team_id"]:
            return "", "Frames are not recorded: this session belongs to another team.", gr.skip()
        at = time.monotonic() - state["t0"]
        try:
            pil, faces = predictor.predict(image)
        except ServerBusyError:
            return gr.skip(), "Server busy: this frame was skipped.", gr.skip()
        # Two frames are classified at once (concurrency 2) and "Stop session" can come while one
        # is: add them one at a time, in time order, and none after the stop.
        with state["lock"]:
            if state["ended"]:
                return gr.skip(), state["ended"], gr.skip()
            at = state["last_s"] = max(at, state["last_s"])
            with factory() as db:
                row = store.get_session(db, user.team_id, state["live"].session_id)
                if row is None or not store.same_moment(row.started_at, state["live"].started_at):
                    state["ended"] = "This session was erased with its subject."
                    return "", state["ended"], gr.skip()
                if row.ended_at is not None:  # ended elsewhere (REST, another tab)
                    state["ended"] = f"Session {row.id} has ended."
                    return "", state["ended"], gr.skip()
                tracked, _ = state["live"].add_faces(db, at, faces)
            state["timeline"].add(state["frames"], at, tracked, faces)
            state["frames"] += 1
            plot = gr.skip()
            if state["plotted"] is None or at - state["plotted"] >= LIVE_PLOT_EVERY_S:
                plot, state["plotted"] = timeline_figure(state["timeline"], max_faces=4), at
            status = f"Session {state['live'].session_id}: {state['frames']} frames, {at:.0f} s."
        return frame_html(annotate(pil, tracked)), status, plot

    def stop(state: dict | None, subject_id: int | None, request: gr.Request):
        user = who(request)
        if not state or state["ended"]:
            raise gr.Error("No session is running.")
        if user.team_id != state["team_id"]:
            raise gr.Error("This session belongs to another team.")
        with state["lock"]:
            state["ended"] = "This session was erased with its subject."
            with factory() as db:
                monitored = store.get_session(db, user.team_id, state["live"].session_id)
                if monitored is not None and store.same_moment(monitored.started_at, state["live"].started_at):
                    with contextlib.suppress(store.NotInTeamError):  # erased while ending
                        written = store.end_session(db, monitored, user, flush=state["live"].finish)
                        state["ended"] = f"Session {state['live'].session_id} ended ({written} last rows written)."
        # The state stays (marked ended): a frame whose answer reaches the page after this one
        # cannot leave "running" there, since the next frame puts the ended line back.
        return state, state["ended"], sessions_update(user, subject_id)

    def sessions_update(user: User, subject_id: int | None):
        if subject_id is None:
            return gr.update(choices=[], value=None)
        with factory() as db:
            if store.get_subject(db, user.team_id, int(subject_id)) is None:
                return gr.update(choices=[], value=None)
            found = store.list_sessions(db, int(subject_id))
        return gr.update(choices=[(f"#{s.id} {s.started_at:%Y-%m-%d %H:%M}", s.id) for s in found], value=None)

    def on_subject(subject_id: int | None, request: gr.Request):
        return sessions_update(who(request), subject_id)

    def history(session_id: int | None, resolution: str, request: gr.Request):
        user = who(request)
        if session_id is None:
            raise gr.Error("Choose a session.")
        with factory() as db:
            monitored = store.get_session(db, user.team_id, int(session_id))
            if monitored is None:
                raise gr.Error("That session is not in your team.")
            rows = store.timeline(db, monitored, resolution)
        figure = session_figure(rows, f"session {session_id} ({resolution} means)", monitored.labels,
                                store.RESOLUTIONS[resolution])
        sid = int(session_id)
        link = (f'<a href="/api/sessions/{sid}/timeline?format=csv&amp;resolution={escape(resolution)}" '
                f'download="session_{sid}.csv">session_{sid}.csv</a> (made on request, for your login only)')
        return figure, link

    with gr.Row():
        username = gr.Textbox(label="Username", elem_id="mon-user")
        password = gr.Textbox(label="Password", type="password", elem_id="mon-password")
        login_button = gr.Button("Log in", elem_id="mon-login")
        logout_button = gr.Button("Log out", elem_id="mon-logout")
    status = gr.Markdown(elem_id="mon-status")
    with gr.Row():
        subject = gr.Dropdown(label="Subject", choices=[], elem_id="mon-subject")
        new_label = gr.Textbox(label="New subject (pseudonymous label)", elem_id="mon-new-label")
        create_button = gr.Button("Create subject", elem_id="mon-create")
        erase_button = gr.Button("Erase subject (admins)", variant="stop", elem_id="mon-erase")
    with gr.Row():
        start_button = gr.Button("Start session", variant="primary", elem_id="mon-start")
        stop_button = gr.Button("Stop session", elem_id="mon-stop")
    with gr.Row():
        cam = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Webcam", elem_id="mon-cam")
        shown = gr.HTML(label="Tracked", elem_id="mon-live")
    live_status = gr.Markdown(elem_id="mon-live-status")
    live_plot = gr.Plot(label=f"This session (last {LIVE_WINDOW_S / 60:.0f} minutes)", elem_id="mon-live-plot")
    with gr.Row():
        past = gr.Dropdown(label="Earlier session", choices=[], elem_id="mon-session")
        resolution = gr.Radio(["1s", "10s", "1min"], value="10s", label="Resolution")
        show_button = gr.Button("Show", elem_id="mon-show")
    plot = gr.Plot(label="Expressions over the session", elem_id="mon-plot")
    csv_link = gr.HTML(elem_id="mon-csv")

    private = {"api_visibility": "private"}
    login_button.click(after_login, [username, password], [status, subject, password], js=LOGIN_JS, **private)
    logout_button.click(after_logout, None, [status, subject, past, csv_link], js=LOGOUT_JS, **private)
    create_button.click(create_subject, [new_label], [subject, new_label], **private)
    erase_button.click(erase_subject, [subject], [subject, past, status], js=ERASE_JS, **private)
    subject.change(on_subject, [subject], past, **private)
    start_button.click(start, [subject, live], [live, live_status, cam], **private)
    cam.stream(frame, [cam, live], [shown, live_status, live_plot], stream_every=0.2, concurrency_limit=2,
               time_limit=24 * 3600, show_progress="hidden", **private)
    stop_button.click(stop, [live, subject], [live, live_status, past], **private)
    show_button.click(history, [past, resolution], [plot, csv_link], **private)
