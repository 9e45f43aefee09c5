"""Engine, sessions and migrations for the monitoring database (SQLite or PostgreSQL)."""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import sessionmaker

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def make_engine(url: str) -> Engine:
    """An engine for ``url``.

    SQLite: the file's folder is created mode 0700 and the file mode 0600 (its ``-wal``/``-shm``
    files take the file's mode), so other local users cannot read it; foreign keys are enforced
    (``ON DELETE CASCADE`` needs it); the journal is write-ahead, so each committed second survives
    a crash; ``secure_delete`` zeroes deleted content, so an erased label is not left in free pages.
    PostgreSQL (``postgresql+psycopg://...``) as is.
    """
    if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
        path = Path(url.removeprefix("sqlite:///"))
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(path, 0o600)
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:  # noqa: ANN001 (DB-API connection)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA secure_delete=ON")
            cursor.close()
    return engine


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply the Alembic migrations in ``migrations/`` to ``engine``'s database, up to ``revision``.

    On SQLite, foreign keys are switched off while migrating (outside the transaction, where
    SQLite allows it) and checked afterwards: a migration that rebuilds a table (Alembic's batch
    mode: copy, drop, rename) would otherwise fire ``ON DELETE`` actions on the drop and wipe or
    null the rows that point at it.

    Raises:
        RuntimeError: SQLite's ``foreign_key_check`` finds rows pointing nowhere after migrating.
    """
    _migrate(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    """Undo migrations down to ``revision`` (e.g. ``"0002"``), as :func:`upgrade` does them.

    Raises:
        RuntimeError: a migration refuses (e.g. 0003's downgrade, while a session records labels
            other than the eight FER+ ones), or foreign keys are broken afterwards (SQLite).
    """
    _migrate(engine, "downgrade", revision)


def _migrate(engine: Engine, direction: str, revision: str) -> None:
    """Run Alembic's ``direction`` (``upgrade``/``downgrade``) to ``revision`` in one transaction,
    with SQLite's foreign keys off meanwhile and checked after (see :func:`upgrade`)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        sqlite = engine.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                config.attributes["connection"] = connection
                getattr(command, direction)(config, revision)
        finally:
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()
        if sqlite and broken:
            raise RuntimeError(f"foreign keys broken after migrating: {broken[:5]}")


def session_factory(engine: Engine) -> sessionmaker:
    """``sessionmaker`` bound to ``engine`` (objects stay usable after commit)."""
    return sessionmaker(engine, expire_on_commit=False)
