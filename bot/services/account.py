"""/forget: delete everything stored about one user, and say how much that was.

Tables are found from the ORM metadata: any table with an `owner_id`/`user_id` column,
and any table with a foreign key to `api_keys.id` (balance history, key status). Both
are deleted explicitly, so later tables are covered even without ON DELETE CASCADE,
and their rows are counted.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, Table, bindparam, delete, func, select

import bot.storage.flows  # noqa: F401 - registers the flows table in the metadata
from bot.storage.db import Database
from bot.storage.models import ApiKey, Base, User

_OWNER_COLUMNS = ("owner_id", "user_id")


@dataclass(frozen=True, slots=True)
class Forgotten:
    keys: int  # API keys deleted
    records: int  # other rows deleted (settings, history, alerts, an open dialogue)
    profile: bool  # the user row (language, time zone) existed


def _owned_tables() -> list[tuple[Table, ColumnElement[bool]]]:
    """(table, condition selecting the user's rows), children before parents."""
    out: list[tuple[Table, ColumnElement[bool]]] = []
    for table in reversed(Base.metadata.sorted_tables):
        if table.name in (User.__tablename__, ApiKey.__tablename__):
            continue
        owner = next((table.c[n] for n in _OWNER_COLUMNS if n in table.c), None)
        if owner is not None:
            out.append((table, owner == bindparam("uid")))
            continue
        for fk in table.foreign_keys:
            if fk.column.table.name == ApiKey.__tablename__:
                keys = select(ApiKey.id).where(ApiKey.owner_id == bindparam("uid"))
                out.append((table, fk.parent.in_(keys.scalar_subquery())))
                break
    return out


class AccountService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def forget(self, user_id: int) -> Forgotten:
        async with self.db.session() as s:
            records = 0
            uid = {"uid": user_id}
            for table, mine in _owned_tables():
                count = select(func.count()).select_from(table).where(mine)
                n = int(await s.scalar(count, uid) or 0)
                if n:
                    await s.execute(delete(table).where(mine), uid)
                    records += n
            keys = int(
                await s.scalar(
                    select(func.count()).select_from(ApiKey).where(ApiKey.owner_id == user_id)
                )
                or 0
            )
            await s.execute(delete(ApiKey).where(ApiKey.owner_id == user_id))
            result = await s.execute(delete(User).where(User.id == user_id))
            profile = bool(result.rowcount)  # type: ignore[attr-defined]
            return Forgotten(keys, records, profile)
