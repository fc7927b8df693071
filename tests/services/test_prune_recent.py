"""The sweep thins each batch's own recent readings by index (issue 17 item 3).

`prune_recent` must leave exactly what the whole-table `prune_snapshots` leaves for the
readings it sees, so the sweep can run it per batch and the full pass only once a day.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from bot.services.history import KEEP_ALL_FOR, prune_recent, prune_snapshots
from bot.storage.models import BalanceSnapshot
from tests.services.test_history import NOW, Env, add_key, env  # noqa: F401 - the fixture


def _history() -> list:
    """Ten days: hourly readings, and every 5 minutes over the last two days (> 500)."""
    times = [NOW - timedelta(days=10) + timedelta(hours=h) for h in range(8 * 24)]
    t = NOW - KEEP_ALL_FOR + timedelta(minutes=5)
    while t <= NOW:
        times.append(t)
        t += timedelta(minutes=5)
    return sorted(set(times))


async def _kept(env: Env, kid: str) -> list:  # noqa: F811
    async with env.db.session() as s:
        stmt = select(BalanceSnapshot.taken_at).where(BalanceSnapshot.key_id == kid)
        return sorted(await s.scalars(stmt))


async def test_prune_recent_keeps_what_the_full_prune_keeps(env: Env) -> None:  # noqa: F811
    whole_id = await add_key(env, 1, "whole")
    batch_id = await add_key(env, 1, "batch")
    other_id = await add_key(env, 1, "other")

    def rows(kid: str) -> list[dict]:
        return [{"key_id": kid, "taken_at": at, "kind": "balance", "remaining": "1"}
                for at in _history()]  # fmt: skip

    async with env.db.session() as s:
        await s.execute(BalanceSnapshot.__table__.insert(), rows(whole_id))
        await prune_snapshots(s, NOW)  # the whole table: only whole_id has readings yet
    async with env.db.session() as s:
        await s.execute(BalanceSnapshot.__table__.insert(), rows(batch_id) + rows(other_id))
    async with env.db.session() as s:
        await prune_recent(s, [batch_id], NOW - timedelta(days=30), NOW)
    whole = await _kept(env, whole_id)
    assert len(whole) < len(_history())
    assert await _kept(env, batch_id) == whole
    assert len(await _kept(env, other_id)) == len(_history())  # not in the batch: untouched


async def test_prune_recent_from_a_recent_since_thins_only_what_it_sees(env: Env) -> None:  # noqa: F811
    kid = await add_key(env, 1, "k")
    async with env.db.session() as s:
        await s.execute(
            BalanceSnapshot.__table__.insert(),
            [{"key_id": kid, "taken_at": at, "kind": "balance", "remaining": "1"}
             for at in _history()],
        )  # fmt: skip
    since = NOW - KEEP_ALL_FOR - timedelta(days=2)
    async with env.db.session() as s:
        await prune_recent(s, [kid], since, NOW)
    kept = await _kept(env, kid)
    older = [t for t in kept if t < since]
    middle = [t for t in kept if since <= t < NOW - KEEP_ALL_FOR]
    recent = [t for t in kept if t >= NOW - KEEP_ALL_FOR]
    assert len(older) == len([t for t in _history() if t < since])  # not seen, not touched
    assert len({t.date() for t in middle}) == len(middle)  # one reading per day
    assert len(recent) == 500  # the newest 500 of the last two days
    assert recent[-1] == NOW
