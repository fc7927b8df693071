"""anthropic-admin: what the fixtures cannot see — query params, the month start, page cap."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import FigureKind
from bot.billing.providers.anthropic_admin import PROVIDER
from bot.billing.providers.base import FetchContext, HttpReply, Match
from bot.secret import Secret

KEY = "sk-ant-admin01-" + "x" * 93 + "AA"


def _page(amount: str, *, next_page: str | None) -> HttpReply:
    body = {
        "data": [
            {
                "starting_at": "x",
                "ending_at": "y",
                "results": [{"currency": "USD", "amount": amount}],
            }
        ],
        "has_more": next_page is not None,
        "next_page": next_page,
    }
    return HttpReply(200, json.dumps(body).encode(), {"content-type": "application/json"})


class FakeHttp:
    def __init__(self, replies: list[HttpReply] | None = None, endless: bool = False) -> None:
        self.replies = list(replies or [])
        self.endless = endless
        self.calls: list[tuple[str, dict[str, str], dict[str, str]]] = []

    async def get(
        self, url: str, *, headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> HttpReply:
        self.calls.append((url, dict(headers), dict(params or {})))
        if self.endless:
            return _page("1", next_page=f"p{len(self.calls)}")
        return self.replies.pop(0)


def _ctx(http: Any, now: datetime, base: str = "https://api.anthropic.com", key: str = KEY):
    return FetchContext(http=http, key=Secret(key), base_url=base, now=now)


async def test_params_headers_and_period_start() -> None:
    http = FakeHttp([_page("150", next_page="page_2"), _page("50.5", next_page=None)])
    now = datetime(2026, 3, 15, 12, 34, 56, tzinfo=UTC)
    result = await PROVIDER.fetch(_ctx(http, now, base="https://api.anthropic.com/v1/"))

    assert result.kind is FigureKind.SPEND
    assert result.used == Decimal("2.005")
    assert result.currency == "USD"
    assert result.remaining is None and result.total is None
    assert result.period_start == datetime(2026, 3, 1, tzinfo=UTC)

    (url1, headers1, params1), (url2, _, params2) = http.calls
    assert url1 == url2 == "https://api.anthropic.com/v1/organizations/cost_report"
    assert headers1 == {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    assert "Authorization" not in headers1
    assert params1 == {"starting_at": "2026-03-01T00:00:00Z", "bucket_width": "1d", "limit": "31"}
    assert params2 == {**params1, "page": "page_2"}


async def test_month_start_is_utc_even_for_a_local_now() -> None:
    # 1 April 02:00 in UTC+8 is still 31 March in UTC: the period starts on 1 March.
    now = datetime(2026, 4, 1, 2, 0, tzinfo=timezone(timedelta(hours=8)))
    http = FakeHttp([_page("0", next_page=None)])
    result = await PROVIDER.fetch(_ctx(http, now))
    assert result.period_start == datetime(2026, 3, 1, tzinfo=UTC)
    assert http.calls[0][2]["starting_at"] == "2026-03-01T00:00:00Z"


async def test_endless_pagination_is_capped() -> None:
    http = FakeHttp(endless=True)
    with pytest.raises(BillingError) as info:
        await PROVIDER.fetch(_ctx(http, datetime(2026, 3, 15, tzinfo=UTC)))
    assert info.value.kind is ErrorKind.MALFORMED
    assert len(http.calls) == 20
    assert KEY not in str(info.value)


def test_detect_and_metadata() -> None:
    assert PROVIDER.id == "anthropic-admin"
    assert PROVIDER.kind is FigureKind.SPEND
    assert PROVIDER.detect(KEY) is Match.CERTAIN
    assert PROVIDER.detect("sk-ant-api03-" + "x" * 95) is Match.NO
    assert PROVIDER.detect("sk-0123456789abcdef") is Match.NO
