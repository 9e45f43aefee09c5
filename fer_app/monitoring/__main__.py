"""``python -m fer_app.monitoring upgrade`` (apply the migrations) and
``python -m fer_app.monitoring create-admin --username NAME [--team TEAM]`` (the first admin; the password
comes from ``FER_ADMIN_PASSWORD`` or a prompt). The database is ``FER_DATABASE_URL``
(default ``sqlite:///data/fer.db``)."""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from . import store
from .db import make_engine, session_factory, upgrade
from .models import Team
from .settings import DEFAULT_DATABASE_URL


def main(argv: list[str] | None = None) -> int:
    """Run the command; returns the exit status (1 with a message on a bad request)."""
    p = argparse.ArgumentParser(prog="python -m fer_app.monitoring", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("upgrade", help="create or migrate the monitoring tables")
    admin = sub.add_parser("create-admin", help="create an admin user (and its team when new)")
    admin.add_argument("--username", required=True)
    admin.add_argument("--team", default="default", help="the team (deployment) the admin belongs to")
    args = p.parse_args(argv)
    url = os.environ.get("FER_DATABASE_URL") or DEFAULT_DATABASE_URL
    engine = make_engine(url)
    upgrade(engine)
    if args.command == "upgrade":
        print(f"{engine.url.render_as_string(hide_password=True)}: migrated to the latest revision")
        return 0
    password = os.environ.get("FER_ADMIN_PASSWORD") or getpass.getpass(f"password for {args.username}: ")
    with session_factory(engine)() as db:
        team = db.scalar(select(Team).where(Team.name == args.team)) or store.create_team(db, args.team)
        try:
            user = store.create_user(db, team.id, args.username, password, "admin")
            db.commit()
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        except IntegrityError:
            print(f"error: username {args.username!r} is taken", file=sys.stderr)
            return 1
    print(f"admin {user.username!r} (id {user.id}) created in team {args.team!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
