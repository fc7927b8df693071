"""openrouter: detection, base URL forms, expiry parsing (beyond the fixtures)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from bot.billing.models import KeyState
from bot.billing.providers.base import FetchContext, HttpReply, Match
from bot.billing.providers.openrouter import PROVIDER
from bot.secret import Secret

KEY = "sk-or-v1-" + "0123456789abcdef" * 4


class FakeHttp:
    def __init__(self, data: dict) -> None:
        self.body = json.dumps({"data": data}).encode()
        self.urls: list[str] = []

    async def get(
        self, url: str, *, headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> HttpReply:
        self.urls.append(url)
        assert headers == {"Authorization": f"Bearer {KEY}"}
        return HttpReply(200, self.body, {"content-type": "application/json"})


@pytest.mark.parametrize(
    ("key", "match"),
    [
        (KEY, Match.CERTAIN),
        ("sk-or-v2-abc", Match.POSSIBLE),
        ("sk-0123456789abcdef0123456789abcdef", Match.NO),
        ("sk-ant-admin01-abc", Match.NO),
    ],
)
def test_detect(key: str, match: Match) -> None:
    assert PROVIDER.detect(key) is match


@pytest.mark.parametrize(
    "base",
    [
        "https://openrouter.ai/api",
        "https://openrouter.ai/api/",
        "https://openrouter.ai/api/v1",
        "https://openrouter.ai",
        "https://openrouter.ai/",
    ],
)
async def test_base_url_forms(base: str) -> None:
    http = FakeHttp({"limit": None, "usage": 1})
    ctx = FetchContext(http=http, key=Secret(KEY), base_url=base, now=datetime.now(UTC))
    await PROVIDER.fetch(ctx)
    assert http.urls == ["https://openrouter.ai/api/v1/key"]


async def test_expiry_is_parsed_and_future_key_is_ok() -> None:
    http = FakeHttp(
        {"limit": 10, "limit_remaining": 2.5, "usage": 7.5, "expires_at": "2027-12-31T23:59:59Z"}
    )
    now = datetime(2026, 1, 1, tzinfo=UTC)
    result = await PROVIDER.fetch(
        FetchContext(http=http, key=Secret(KEY), base_url="https://openrouter.ai/api", now=now)
    )
    assert result.expires_at == datetime(2027, 12, 31, 23, 59, 59, tzinfo=UTC)
    assert result.state is KeyState.OK
    assert result.remaining == Decimal("2.5")
    assert result.never_expires is False
    assert "label" not in result.extras  # the label echoes part of the key


@pytest.mark.parametrize(
    ("reset", "now", "resets_at", "days"),
    [
        ("daily", datetime(2026, 12, 1, 22, 30, tzinfo=UTC), datetime(2026, 12, 2, tzinfo=UTC), 1),
        ("weekly", datetime(2026, 12, 3, 9, tzinfo=UTC), datetime(2026, 12, 7, tzinfo=UTC), 7),
        ("monthly", datetime(2026, 12, 31, 23, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC), 31),
        ("monthly", datetime(2027, 2, 10, tzinfo=UTC), datetime(2027, 3, 1, tzinfo=UTC), 28),
    ],
)
async def test_renewing_limit_is_a_window_ending_at_midnight_utc(
    reset: str, now: datetime, resets_at: datetime, days: int
) -> None:
    """OpenRouter: "Resets happen automatically at midnight UTC, and weeks are Monday
    through Sunday" — the window ends at the next such boundary."""
    usage = {"daily": "usage_daily", "weekly": "usage_weekly", "monthly": "usage_monthly"}
    data = {"limit": 10, "limit_remaining": 0, "limit_reset": reset, "usage": 50, usage[reset]: 12}
    ctx = FetchContext(http=FakeHttp(data), key=Secret(KEY), base_url="https://openrouter.ai/api",
                       now=now)  # fmt: skip
    result = await PROVIDER.fetch(ctx)
    (window,) = result.windows
    assert (window.name, window.used, window.limit) == (reset, Decimal(12), Decimal(10))
    assert window.resets_at == resets_at and window.period is not None
    assert window.period.days == days
    assert window.state.value == "exhausted" and result.state is KeyState.EXHAUSTED
