"""Plots of results (matplotlib ``Figure`` objects, no pyplot state, so safe in servers): one
probability-bar panel per face, and per-face probability timelines."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from .labels import LABELS, label_colors
from .result import FaceResult
from .timeline import Timeline, TimelineRow


def probability_figure(faces: Sequence[FaceResult], labels: Sequence[str] = LABELS,
                       columns: int = 2) -> Figure:
    """One horizontal probability-bar panel per face, titled with the face number.

    Uses ``matplotlib.figure.Figure`` directly (no pyplot state), so it is safe in servers.

    Args:
        faces: results, numbered from 1 in this order.
        labels: the label order of the bars (all labels are shown for every face).
        columns: panels per row.

    Returns:
        A matplotlib ``Figure``; with no faces, a small figure saying "No face detected".
    """
    if not faces:
        fig = Figure(figsize=(4, 1.2))
        fig.text(0.5, 0.5, "No face detected", ha="center", va="center", fontsize=12)
        return fig
    colors = label_colors(labels)
    cols = max(1, min(columns, len(faces)))
    rows = (len(faces) + cols - 1) // cols
    fig = Figure(figsize=(4.2 * cols, 0.32 * len(labels) * rows + 0.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat[len(faces):]:
        ax.set_visible(False)
    for i, (face, ax) in enumerate(zip(faces, axes.flat), start=1):
        values = [face.probs.get(label, 0.0) for label in labels]
        ax.barh(range(len(labels)), values, color=[colors[label] for label in labels])
        ax.set_yticks(range(len(labels)), labels)
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(lambda x, _: f"{x:.0%}")
        for y, v in enumerate(values):
            ax.text(min(v + 0.01, 0.86), y, f"{v:.0%}", va="center", fontsize=8)
        ax.set_title(f"Face {i}: {face.label} {face.confidence:.0%}", fontsize=10)
    return fig


def timeline_figure(timeline: Timeline, max_faces: int = 6) -> Figure:
    """Stacked smoothed probabilities of a :class:`~fer_core.timeline.Timeline` over time, one panel per face.

    Args:
        timeline: the faces' rows (smoothed probabilities) and analysed frames.
        max_faces: show at most this many faces (those visible longest), in id order.

    Returns:
        A matplotlib ``Figure`` (no pyplot state); with no face, a small figure saying so.
    """
    summary = sorted(timeline.summary(), key=lambda s: -s["seconds_visible"])[:max_faces]
    ids = sorted(s["face_id"] for s in summary)
    if not ids:
        fig = Figure(figsize=(6, 1.2))
        fig.text(0.5, 0.5, "No face found", ha="center", va="center", fontsize=12)
        return fig
    durations = timeline.durations()
    position = {f: k for k, (f, _) in enumerate(timeline.frames)}
    t0 = timeline.frames[0][1]
    t1 = timeline.frames[-1][1] + (durations.get(timeline.frames[-1][0]) or 0.0)
    fig = Figure(figsize=(9, 0.6 + 1.5 * len(ids)), layout="constrained")
    axes = fig.subplots(len(ids), 1, sharex=True, squeeze=False)[:, 0]
    palette = label_colors(timeline.labels)
    colors = [palette[k] for k in timeline.labels]
    for ax, face_id in zip(axes, ids):
        rows = [r for r in timeline.rows if r.face_id == face_id]
        segment: list[TimelineRow] = []
        for r in [*rows, None]:  # split where the face was missing from analysed frames
            if segment and (r is None or position.get(r.frame, 0) != position.get(segment[-1].frame, 0) + 1):
                x = [s.time_s for s in segment] + [segment[-1].time_s + durations.get(segment[-1].frame, 0.0)]
                y = np.stack([s.probs for s in segment] + [segment[-1].probs]).T
                ax.stackplot(x, y, colors=colors, step="post", linewidth=0)
                segment = []
            if r is not None:
                segment.append(r)
        ax.set_xlim(t0, max(t1, t0 + 1e-3))
        ax.set_ylim(0, 1)
        ax.set_ylabel(f"face {face_id}")
        ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    axes[-1].set_xlabel("time (s)")
    handles = [Patch(facecolor=c) for c in colors]
    fig.legend(handles, timeline.labels, loc="outside upper center", ncols=min(8, len(timeline.labels)), fontsize=8,
               frameon=False)
    return fig
