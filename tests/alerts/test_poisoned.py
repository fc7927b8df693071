"""One user's relay, or one row the database refuses, never stops anyone else's alerts
(issue 11, item 1), on SQLite and PostgreSQL, with several batches due."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError

from bot.secret import Secret
from bot.storage.models import AlertState, KeyStatus
from tests.alerts.conftest import Rig
from tests.fakes.provider_server import FakeProviderServer

OTHERS = range(7101, 7109)  # eight users, one key each, all below their alert
EVIL = 7199

#: What the attacker's relay answers: /api/status, /api/usage/token data, the alert set.
POISONS: dict[str, tuple[dict[str, Any], dict[str, Any], list[str]]] = {
    # SQLite and PostgreSQL: the percentage rung of 9E+999999 overflowed the rules.
    "overflow": (
        {"quota_per_unit": 1},
        {"total_granted": "9E+999999", "total_available": "100", "total_used": "0"},
        ["50%"],
    ),
    # PostgreSQL: raw token counts of 49 digits did not fit the snapshot's String(48).
    "tokens49": (
        {"quota_per_unit": 1, "quota_display_type": "TOKENS"},
        {"total_granted": int("9" * 49), "total_available": int("1" * 49), "total_used": 0},
        [],
    ),
}


@pytest.fixture
async def evil_relay() -> AsyncIterator[FakeProviderServer]:
    server = await FakeProviderServer().start()
    try:
        yield server
    finally:
        await server.stop()


async def others_below_their_alert(rig: Rig) -> list[str]:
    ids = []
    for user in OTHERS:
        secret = f"sk-other{user}000000000001"
        ids.append(await rig.add_key(user, secret, label="main"))
        rig.balances.amounts[secret] = "40"
        await rig.alerts.set_thresholds(user, None, ["50"])
    return ids


async def states(rig: Rig) -> dict[str, AlertState]:
    async with rig.db.session() as s:
        rows = (await s.scalars(select(AlertState).execution_options(populate_existing=True))).all()
    return {r.key_id: r for r in rows}


async def status_of(rig: Rig, key_id: str) -> KeyStatus | None:
    async with rig.db.session() as s:
        return await s.get(KeyStatus, key_id, populate_existing=True)


@pytest.mark.parametrize("poison", sorted(POISONS))
async def test_poisoned_relay_is_its_own_error_and_the_others_get_their_alerts(
    rig: Rig, evil_relay: FakeProviderServer, poison: str
) -> None:
    status, usage, thresholds = POISONS[poison]
    evil_relay.reply("/api/status", json={"success": True, "data": status})
    evil_relay.reply("/api/usage/token", json={"code": True, "data": usage})
    rig.sweeper.batch_size, rig.sweeper.pipeline = 3, 2  # 9 keys: three batches
    others = await others_below_their_alert(rig)
    added = await rig.keys.add(
        EVIL, Secret("sk-evil0000000000000000001"), "relay", label="evil", base_url=evil_relay.url
    )
    evil = added.key.id
    if thresholds:
        await rig.alerts.set_thresholds(EVIL, [evil], thresholds)

    rig.clock.advance(seconds=61)
    stats = await rig.sweeper.run()

    assert stats.batches == 3 and stats.checked == 9
    events = await rig.events()
    assert sorted(e.key_id for e in events if e.kind == "low") == sorted(others)  # same sweep
    assert all(e.user_id != EVIL for e in events)
    evil_status = await status_of(rig, evil)
    assert evil_status is not None and evil_status.last_error_kind == "malformed"
    assert evil_status.last_result is None
    after = await states(rig)
    assert all(st.lease_owner is None and st.checked_at is not None for st in after.values())

    # The next sweep runs as well, and the relay turning normal is seen at once.
    evil_relay.reply("/api/usage/token", json={"code": True, "data": {"total_available": 10}})
    rig.clock.advance(seconds=61)
    stats = await rig.sweeper.run()
    assert stats.checked == 9
    evil_status = await status_of(rig, evil)
    assert evil_status is not None and evil_status.last_result is not None
    assert evil_status.last_result["remaining"] == "10"


async def refuse_snapshots_of(rig: Rig, key_id: str) -> None:
    """A database-side fault tied to one key's row (a constraint, a too-long value…)."""
    async with rig.db.session() as s:
        if s.bind.dialect.name == "postgresql":
            await s.execute(
                text(
                    "CREATE FUNCTION refuse_one() RETURNS trigger AS $$ BEGIN "
                    f"IF NEW.key_id = '{key_id}' THEN RAISE EXCEPTION 'refused'; END IF; "
                    "RETURN NEW; END $$ LANGUAGE plpgsql"
                )
            )
            await s.execute(
                text(
                    "CREATE TRIGGER refuse_one BEFORE INSERT ON balance_snapshots "
                    "FOR EACH ROW EXECUTE FUNCTION refuse_one()"
                )
            )
        else:
            await s.execute(
                text(
                    "CREATE TRIGGER refuse_one BEFORE INSERT ON balance_snapshots "
                    f"WHEN NEW.key_id = '{key_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
                )
            )


async def test_a_row_the_database_refuses_stays_that_keys_error(rig: Rig) -> None:
    rig.sweeper.batch_size, rig.sweeper.pipeline = 3, 2
    others = await others_below_their_alert(rig)
    poisoned = others[4]  # in the middle batch
    await refuse_snapshots_of(rig, poisoned)

    rig.clock.advance(seconds=61)
    stats = await rig.sweeper.run()

    assert stats.checked == 8 and stats.failed == 1
    events = await rig.events()
    assert sorted(e.key_id for e in events) == sorted(k for k in others if k != poisoned)
    refused = await status_of(rig, poisoned)
    assert refused is not None and refused.last_error_kind == "malformed"
    after = await states(rig)
    assert after[poisoned].lease_owner is None and after[poisoned].checked_at is not None


async def test_a_rule_that_crashes_on_one_key_is_that_keys_error(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.alerts import sweep as sweep_module

    rig.sweeper.batch_size, rig.sweeper.pipeline = 3, 2
    others = await others_below_their_alert(rig)
    crashing = others[1]
    real = sweep_module.evaluate

    def evaluate(watch: Any, memory: Any, failing: Any, outcome: Any, *rest: Any) -> Any:
        if outcome.key_id == crashing and outcome.result is not None:
            raise ArithmeticError("a rule bug")
        return real(watch, memory, failing, outcome, *rest)

    monkeypatch.setattr(sweep_module, "evaluate", evaluate)
    rig.clock.advance(seconds=61)
    stats = await rig.sweeper.run()
    assert stats.checked == 8 and stats.failed == 1
    assert sorted(e.key_id for e in await rig.events()) == sorted(
        k for k in others if k != crashing
    )
    crashed = await status_of(rig, crashing)
    assert crashed is not None and crashed.last_error_kind == "malformed"


async def test_a_sweep_after_a_database_error_still_runs(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.alerts import sweep as sweep_module

    rig.sweeper.batch_size, rig.sweeper.pipeline = 3, 2
    others = await others_below_their_alert(rig)
    real_record = sweep_module.record_rows
    calls = 0

    async def locked_once(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:  # e.g. an outside writer held the SQLite lock past busy_timeout
            raise OperationalError("INSERT key_status", {}, Exception("database is locked"))
        return await real_record(*args)

    monkeypatch.setattr(sweep_module, "record_rows", locked_once)
    rig.clock.advance(seconds=61)
    first = await rig.sweeper.run()
    assert first.failed == 3 and first.checked == 5  # the other batches went on
    assert len(await rig.events()) == 5

    rig.clock.advance(seconds=61)
    second = await rig.sweeper.run()  # not stopped for good by the first one's error
    assert second.checked == 8
    assert sorted(e.key_id for e in await rig.events()) == sorted(others)


async def test_a_sweep_after_a_failed_check_batch_still_runs(rig: Rig) -> None:
    """Before: the error's clean-up set the shutdown flag, and no sweep ever ran again."""
    rig.sweeper.batch_size, rig.sweeper.pipeline = 3, 2
    others = await others_below_their_alert(rig)
    real_check = rig.sweeper._check
    calls = 0

    async def fails_once(ids: Sequence[str]) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OperationalError("SELECT api_keys", {}, Exception("database is locked"))
        return await real_check(ids)

    rig.sweeper._check = fails_once  # type: ignore[method-assign]
    rig.clock.advance(seconds=61)
    first = await rig.sweeper.run()
    assert first.failed == 3 and first.checked == 5

    rig.clock.advance(seconds=61)
    second = await rig.sweeper.run()
    assert second.checked == 8 and not second.interrupted
    assert sorted(e.key_id for e in await rig.events()) == sorted(others)
