"""Any model's labels: each session records its model's label list (``sessions.labels``, JSON), and
each aggregate its probabilities as a JSON list in that order (``aggregates.probs``) instead of the
eight FER+ ``p_<label>`` columns; ``aggregates.label`` widens to 64 characters.

Existing sessions get the eight FER+ labels (the only model monitoring could record before), and
their aggregates' ``p_<label>`` values move into ``probs`` unchanged, every float exactly: one
``UPDATE`` per table, with ``jsonb_build_array`` on PostgreSQL and, on SQLite (whose ``json_array``
keeps 15 digits only), a Python function registered on the migrating connection. JSON is ``JSONB``
on PostgreSQL, JSON text on SQLite. The downgrade moves the values back, and refuses a database that
holds a session of other labels (its numbers have no ``p_<label>`` column to go to).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: The eight FER+ labels, in the order of 0001's ``p_<label>`` columns.
FERPLUS = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
P_COLUMNS = tuple(f"p_{label}" for label in FERPLUS)
JSON_LIST = sa.JSON().with_variant(JSONB(), "postgresql")


def _tables() -> tuple[sa.Table, sa.Table]:
    meta = sa.MetaData()
    sessions = sa.Table("sessions", meta, sa.Column("id", sa.Integer, primary_key=True),
                        sa.Column("labels", JSON_LIST))
    aggregates = sa.Table("aggregates", meta, sa.Column("id", sa.Integer, primary_key=True),
                          sa.Column("probs", JSON_LIST), *[sa.Column(c, sa.Float) for c in P_COLUMNS])
    return sessions, aggregates


def _sqlite_functions(connection: sa.Connection) -> bool:
    """On SQLite, register the exact JSON helpers on the migrating connection; whether it is SQLite."""
    if connection.dialect.name != "sqlite":
        return False
    raw = connection.connection.driver_connection
    raw.create_function("fer_json_list", -1, lambda *values: json.dumps(values), deterministic=True)
    raw.create_function("fer_json_item", 2, lambda text, i: float(json.loads(text)[i]), deterministic=True)
    return True


def upgrade() -> None:
    op.add_column("sessions", sa.Column("labels", JSON_LIST, nullable=True))
    op.add_column("aggregates", sa.Column("probs", JSON_LIST, nullable=True))
    sessions, aggregates = _tables()
    connection = op.get_bind()
    connection.execute(sessions.update().values(labels=list(FERPLUS)))
    columns = [aggregates.c[c] for c in P_COLUMNS]
    to_json = sa.func.fer_json_list if _sqlite_functions(connection) else sa.func.jsonb_build_array
    connection.execute(aggregates.update().values(probs=to_json(*columns)))
    with op.batch_alter_table("sessions") as batch:
        batch.alter_column("labels", existing_type=JSON_LIST, nullable=False)
    with op.batch_alter_table("aggregates") as batch:
        batch.alter_column("probs", existing_type=JSON_LIST, nullable=False)
        batch.alter_column("label", existing_type=sa.String(20), type_=sa.String(64), existing_nullable=False)
        for column in P_COLUMNS:
            batch.drop_column(column)


def downgrade() -> None:
    sessions, aggregates = _tables()
    connection = op.get_bind()
    for session_id, labels in connection.execute(sa.select(sessions.c.id, sessions.c.labels)):
        if list(labels) != list(FERPLUS):
            raise RuntimeError(f"session {session_id} records the labels {labels}, not the eight FER+ ones: "
                               "revision 0002 cannot hold its numbers (erase its subject first)")
    with op.batch_alter_table("aggregates") as batch:
        for column in P_COLUMNS:
            batch.add_column(sa.Column(column, sa.Float, nullable=True))
    sqlite = _sqlite_functions(connection)
    connection.execute(aggregates.update().values({
        aggregates.c[column]: sa.func.fer_json_item(aggregates.c.probs, i) if sqlite
        else aggregates.c.probs[i].as_float() for i, column in enumerate(P_COLUMNS)}))
    with op.batch_alter_table("aggregates") as batch:
        for column in P_COLUMNS:
            batch.alter_column(column, existing_type=sa.Float, nullable=False)
        batch.alter_column("label", existing_type=sa.String(64), type_=sa.String(20), existing_nullable=False)
        batch.drop_column("probs")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_column("labels")
