"""Monitoring sessions: expression timelines stored per person (subject), behind a login.

A care team starts a session for a pseudonymous subject, streams webcam frames (or per-frame
results computed elsewhere), and comes back later to per-second, 10-second or 1-minute
timelines. Only numbers are stored (per second and tracked face: mean calibrated probabilities,
label, frame and face counts), **never images or crops**. Any model works: a session records its
model's label list when it starts, and its probabilities are stored and exported per label.

Modules: ``settings`` (environment), ``predictor`` (the :class:`~fer_app.monitoring.predictor.Predictor`
protocol the app's model is handed in as), ``models`` (SQLAlchemy tables), ``db`` (engine,
Alembic migrations), ``security`` (argon2 passwords, JWT), ``aggregate`` (frames -> per-second
rows), ``live`` (a session receiving frames), ``store`` (queries; session start/end, erasure and
CSV export), ``routes`` (FastAPI), ``__main__`` (``python -m fer_app.monitoring``: migrate, create the
first admin). Nothing here imports the web app's package.
"""
