"""The batched sweep write (one transaction per batch) on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select, update

from bot.storage.models import AlertState, BalanceSnapshot, KeyStatus
from tests.alerts.conftest import Rig

USER = 6001


async def _keys(rig: Rig, n: int, amount: object = "40", owner: int = USER) -> list[str]:
    ids = []
    for i in range(n):
        secret = f"sk-bulk{owner}{i:012d}"
        ids.append(await rig.add_key(owner, secret, label=f"k{i}"))
        rig.balances.amounts[secret] = amount
    await rig.alerts.set_thresholds(owner, None, ["50"])
    return ids


async def _count(rig: Rig, model: Any, key_id: str) -> int:
    async with rig.db.session() as s:
        return int(await s.scalar(select(func.count()).where(model.key_id == key_id)) or 0)


async def test_lost_lease_mid_batch_leaves_that_key_untouched(rig: Rig) -> None:
    ids = await _keys(rig, 6)
    victim = ids[2]
    real_check = rig.sweeper._check

    async def check_then_lose(batch_ids: Sequence[str]) -> Any:
        batch = await real_check(batch_ids)
        # Meanwhile this key's lease ran out and another replica claimed it.
        async with rig.db.session() as s:
            await s.execute(
                update(AlertState)
                .where(AlertState.key_id == victim)
                .values(lease_owner="replica-b")
            )
        return batch

    rig.sweeper._check = check_then_lose  # type: ignore[method-assign]
    rig.clock.advance(seconds=61)
    stats = await rig.sweeper.run()
    assert (stats.checked, stats.events, stats.lost_leases) == (5, 5, 1)
    events = await rig.events()
    assert sorted(e.key_id for e in events) == sorted(k for k in ids if k != victim)
    async with rig.db.session() as s:
        st = await s.get(AlertState, victim)
    assert st is not None and st.memory == {} and st.checked_at is None
    assert st.lease_owner == "replica-b"  # not released by the process that lost it
    assert await _count(rig, KeyStatus, victim) == 0
    assert await _count(rig, BalanceSnapshot, victim) == 0

    # The lease comes back: the key's event is recorded once, the others not again.
    rig.sweeper._check = real_check  # type: ignore[method-assign]
    async with rig.db.session() as s:
        await s.execute(
            update(AlertState)
            .where(AlertState.key_id == victim)
            .values(lease_owner=None, lease_until=None)
        )
    await rig.sweep()
    events = await rig.events()
    assert sorted(e.key_id for e in events) == sorted(ids)
    assert len({e.idem_key for e in events}) == 6
    assert await _count(rig, KeyStatus, victim) == 1


async def test_many_batches_pipelined_each_event_once(rig: Rig) -> None:
    rig.sweeper.batch_size, rig.sweeper.pipeline = 4, 2
    ids = await _keys(rig, 11) + await _keys(rig, 3, owner=USER + 1)
    await rig.alerts.set_delivery(USER + 1, instant=False)  # recorded, not notified
    rig.clock.advance(seconds=61)
    stats = await rig.sweeper.run()
    assert (stats.checked, stats.events, stats.batches) == (14, 14, 4)
    events = await rig.events()
    assert len(events) == 11 and {e.user_id for e in events} == {USER}
    assert {e.payload["label"] for e in events} == {f"k{i}" for i in range(11)}
    async with rig.db.session() as s:
        states = (await s.scalars(select(AlertState))).all()
        assert all(st.lease_owner is None and st.last for st in states)
        assert all(st.memory.get("fired") == ["50"] for st in states)
        assert await s.scalar(select(func.count()).select_from(KeyStatus)) == len(ids)
    await rig.sweep()  # the same figures again: nothing new to say
    assert len(await rig.events()) == 11
    async with rig.db.session() as s:
        assert await s.scalar(select(func.count()).select_from(BalanceSnapshot)) == 28


async def test_key_status_counts_failures_then_resets(rig: Rig) -> None:
    (key_id,) = await _keys(rig, 1, amount=500)
    await rig.sweep()
    await rig.sweep()
    async with rig.db.session() as s:
        row = await s.get(KeyStatus, key_id, populate_existing=True)
        assert row is not None and row.consecutive_failures == 2
        assert row.failing_since is not None and row.last_result is None
        first_failure = row.failing_since
    rig.balances.amounts[f"sk-bulk{USER}{0:012d}"] = "80"
    await rig.sweep()
    async with rig.db.session() as s:
        row = await s.get(KeyStatus, key_id, populate_existing=True)
        assert row is not None and row.consecutive_failures == 0 and row.failing_since is None
        assert row.last_result is not None and row.last_result["remaining"] == "80"
        assert row.last_error_at is not None and row.last_error_at >= first_failure
    assert await _count(rig, BalanceSnapshot, key_id) == 1
