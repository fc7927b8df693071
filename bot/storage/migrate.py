"""Apply Alembic migrations programmatically, on the app's own async engine.

Alembic is imported only when a migration has to run (or the chain cannot be read from
the files): a start on a database already at head reads `alembic_version` with plain SQL
and compares it with the head named in migrations/versions/, so a restarting bot never
loads Alembic (idle footprint and time to polling, issue 17 item 4).
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

from bot.storage.db import Database

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")
_VERSION_TABLE = "alembic_version"
_REVISION = re.compile(r"^revision\s*(?::[^=]+)?=\s*[\"']([^\"']+)[\"']\s*$", re.M)
_DOWN_REVISION = re.compile(r"^down_revision\s*(?::[^=]+)?=\s*(.+)$", re.M)


def alembic_config() -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


@cache
def head_revision() -> str | None:
    """The single head of the migration chain, read from the version files' `revision` and
    `down_revision` lines; None when they cannot be read that way (then Alembic decides)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in sorted((MIGRATIONS / "versions").glob("*.py")):
        source = path.read_text(encoding="utf-8")
        rev, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if rev is None or down is None:
            return None
        revisions.add(rev.group(1))
        parents.update(re.findall(r"[\"']([^\"']+)[\"']", down.group(1)))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _upgrade(connection: Connection) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def _current(connection: Connection) -> str | None:
    """The stamped revision (several heads joined by '+', never equal to a head)."""
    if not inspect(connection).has_table(_VERSION_TABLE):
        return None
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars()
    found = sorted(rows)
    return "+".join(found) if found else None


async def upgrade(db: Database) -> None:
    async with db.engine.begin() as conn:
        await conn.run_sync(_upgrade)


async def is_current(db: Database) -> bool:
    """True when the schema is at head, so start-up needs no write."""
    head = head_revision()
    if head is None:
        from alembic.script import ScriptDirectory

        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    async with db.engine.connect() as conn:
        return await conn.run_sync(_current) == head


async def has_schema(db: Database) -> bool:
    async with db.engine.connect() as conn:
        return await conn.run_sync(_current) is not None
