"""The daily digest: once per local day after 09:00, every key's figure, escaped."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.alerts import rules
from bot.billing.registry import default_registry
from bot.handlers.alert_messages import render
from bot.services.users import UserService
from tests.alerts.conftest import Rig


async def test_digest_once_per_local_day(rig: Rig) -> None:
    owner = 7001
    key = "sk-digest0123456789abcdef"
    await rig.add_key(owner, key, label="<b>main</b>")
    rig.balances.amounts[key] = "42.50"
    await rig.sweep()  # a figure to report
    await UserService(rig.db).set_timezone(owner, "Asia/Shanghai")
    await rig.alerts.set_delivery(owner, digest=True)

    early = datetime(2026, 11, 25, 0, 30, tzinfo=UTC)  # 08:30 in Shanghai: not yet
    assert await rig.digest.enqueue_due(early) == 0
    nine = datetime(2026, 11, 25, 1, 5, tzinfo=UTC)  # 09:05 in Shanghai
    assert await rig.digest.enqueue_due(nine) == 1
    assert await rig.digest.enqueue_due(nine) == 0  # same local day: nothing more
    later = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)  # 23:00 the same local day
    assert await rig.digest.enqueue_due(later) == 0
    next_day = datetime(2026, 11, 26, 1, 5, tzinfo=UTC)
    assert await rig.digest.enqueue_due(next_day) == 1

    digests = [r for r in await rig.events(owner) if r.kind == rules.DIGEST]
    assert len(digests) == 2
    [item] = [i for i in await rig.outbox.claim(50, now=next_day) if i.kind == rules.DIGEST][:1]
    text, markup = render(item, next_day, default_registry())
    assert markup is None  # a digest has no buttons
    assert "&lt;b&gt;main&lt;/b&gt;" in text and "<b>main</b>" not in text
    assert "42.50" in text
    assert key not in text

    await rig.alerts.set_delivery(owner, digest=False)
    assert await rig.digest.enqueue_due(datetime(2026, 11, 27, 2, 0, tzinfo=UTC)) == 0


async def test_digest_skips_users_without_keys(rig: Rig) -> None:
    await UserService(rig.db).touch(7002)  # users exist once they have talked to the bot
    await rig.alerts.set_delivery(7002, digest=True)
    assert await rig.digest.enqueue_due(datetime(2026, 11, 25, 12, 0, tzinfo=UTC)) == 0
