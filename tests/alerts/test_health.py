"""/healthz tells the truth about alert sweeps, and the metrics count checked keys
(issue 11, item 1): a process whose sweeps stop checking due keys is unhealthy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy.exc import OperationalError

from bot import jobs, metrics
from bot.settings import Settings
from bot.webhook import build_webapp
from tests.alerts.conftest import Rig

USER = 7301


@pytest.fixture
async def health(
    rig: Rig, make_settings: Callable[..., Settings]
) -> AsyncIterator[httpx.AsyncClient]:
    """The real /healthz route of the webhook app, over the rig's database and sweep."""
    settings = make_settings(
        webhook_url="https://bot.example/telegram", webhook_secret="health-test-secret"
    )
    services = SimpleNamespace(db=rig.db, sweep=rig.sweeper, clock=rig.clock)
    app: Any = SimpleNamespace(bot_data=SimpleNamespace(services=services))
    web = build_webapp(app, settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=web), base_url="http://bot.test"
    ) as client:
        yield client


async def test_healthz_is_unhealthy_when_due_keys_stop_being_checked(
    rig: Rig, health: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.alerts import sweep as sweep_module

    for i in range(3):
        await rig.add_key(USER, f"sk-health{i:016d}")
    rig.clock.advance(seconds=61)
    await rig.sweeper.run()
    ok = await health.get("/healthz")
    assert ok.status_code == 200 and ok.json()["sweep"] == "ok"
    assert ok.json()["last_progress_at"] == rig.clock.now.isoformat()

    async def locked(*_: Any) -> Any:  # every write fails: keys due, none checked
        raise OperationalError("UPDATE alert_state", {}, Exception("database is locked"))

    real_record = sweep_module.record_rows
    monkeypatch.setattr(sweep_module, "record_rows", locked)
    for _ in range(2):  # up to 3 intervals without progress is still healthy
        await rig.sweep(seconds=61)
    assert (await health.get("/healthz")).status_code == 200
    for _ in range(2):
        await rig.sweep(seconds=61)
    stalled = await health.get("/healthz")
    assert stalled.status_code == 503
    assert stalled.json()["status"] == "unavailable" and stalled.json()["sweep"] == "stalled"
    assert stalled.json()["database"] == "ok"

    monkeypatch.setattr(sweep_module, "record_rows", real_record)  # writes work again
    await rig.sweep(seconds=61)
    assert (await health.get("/healthz")).status_code == 200


async def test_healthz_stays_healthy_when_nothing_is_due(
    rig: Rig, health: httpx.AsyncClient
) -> None:
    await rig.add_key(USER, "sk-health0000000000000009")
    await rig.sweep(seconds=61)
    for _ in range(5):  # the key is checked every 60 s; sweeps in between find nothing
        await rig.sweep(seconds=30)
    assert (await health.get("/healthz")).status_code == 200


def _sample(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return value or 0.0


async def test_sweep_metrics_count_checked_keys_not_just_runs(rig: Rig) -> None:
    for i in range(4):
        await rig.add_key(USER, f"sk-metric{i:016d}")
    services = SimpleNamespace(sweep=rig.sweeper, clock=rig.clock)
    context: Any = SimpleNamespace(
        bot_data=SimpleNamespace(services=services), deliver_alerts=lambda: None
    )
    before = _sample("balancebot_sweep_keys_total", result="checked")
    runs = _sample("balancebot_sweep_runs_total", outcome="ok")
    rig.clock.advance(seconds=61)
    await jobs.sweep_job(context)
    assert _sample("balancebot_sweep_keys_total", result="checked") == before + 4
    assert _sample("balancebot_sweep_runs_total", outcome="ok") == runs + 1
    progress = _sample("balancebot_sweep_last_progress_timestamp_seconds")
    assert progress == rig.clock.now.timestamp()

    async def broken_claim(*_: Any, **__: Any) -> Any:
        raise OperationalError("UPDATE alert_state", {}, Exception("database is locked"))

    rig.sweeper.claim = broken_claim  # type: ignore[method-assign]
    errors = _sample("balancebot_sweep_runs_total", outcome="error")
    rig.clock.advance(seconds=61)
    await jobs.sweep_job(context)  # logged and counted, not raised into the job queue
    assert _sample("balancebot_sweep_runs_total", outcome="error") == errors + 1
    assert _sample("balancebot_sweep_keys_total", result="checked") == before + 4
