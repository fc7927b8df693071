"""INSERT … ON CONFLICT in the session's own dialect: the one place that knows there are two.

PostgreSQL and SQLite both have `ON CONFLICT (cols) DO NOTHING | DO UPDATE`, but
SQLAlchemy builds them from different `insert` constructs. Services and repositories
ask here instead of switching on the dialect themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession


def _insert(s: AsyncSession, target: Any) -> Any:
    # The dialect's module is imported here, not at the top: a SQLite bot never loads
    # SQLAlchemy's PostgreSQL dialect (idle footprint, issue 17 item 4).
    if s.bind.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(target)


def insert_or_ignore(s: AsyncSession, target: Any, index_elements: Sequence[str]) -> Any:
    """`INSERT … ON CONFLICT (index_elements) DO NOTHING` for a model or a table.

    Add `.values(...)`, or execute it with a list of rows (executemany).
    """
    return _insert(s, target).on_conflict_do_nothing(index_elements=list(index_elements))


def upsert(
    s: AsyncSession, table: Table, index_elements: Sequence[str], update: Iterable[str]
) -> Any:
    """`INSERT … ON CONFLICT (index_elements) DO UPDATE` of the `update` columns from the row."""
    stmt = _insert(s, table)
    return stmt.on_conflict_do_update(
        index_elements=list(index_elements), set_={c: stmt.excluded[c] for c in update}
    )
