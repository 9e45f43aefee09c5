"""Revocable logins and an audit trail: users get a random ``key`` (what tokens name), ``active`` and
``token_version``; usernames are NFKC + case-folded; a new ``audit_events`` table.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import secrets
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("key", sa.String(32), nullable=True))
        batch.add_column(sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("token_version", sa.Integer, nullable=False, server_default="0"))
    users = sa.table("users", sa.column("id", sa.Integer), sa.column("username", sa.String),
                     sa.column("key", sa.String))
    connection = op.get_bind()
    seen: dict[str, int] = {}
    for user_id, name in connection.execute(sa.select(users.c.id, users.c.username)).all():
        canonical = unicodedata.normalize("NFKC", name).casefold().strip()
        if canonical in seen:
            raise RuntimeError(f"users {seen[canonical]} and {user_id} have the same normalised username "
                               f"{canonical!r}: rename one, then migrate again")
        seen[canonical] = user_id
        connection.execute(users.update().where(users.c.id == user_id)
                           .values(username=canonical, key=secrets.token_hex(16)))
    with op.batch_alter_table("users") as batch:
        batch.alter_column("key", existing_type=sa.String(32), nullable=False)
        batch.create_unique_constraint("uq_users_key", ["key"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("team_id", sa.Integer, nullable=True, index=True),
        sa.Column("actor_id", sa.Integer, nullable=True),
        sa.Column("subject_id", sa.Integer, nullable=True),
        sa.Column("session_id", sa.Integer, nullable=True),
        sa.Column("target_user_id", sa.Integer, nullable=True),
        sa.Column("detail", sa.String(100), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("audit_events")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("uq_users_key", type_="unique")
        for column in ("token_version", "active", "key"):
            batch.drop_column(column)
