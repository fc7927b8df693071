"""Any HTTP 200 JSON body gives a result or a BillingError — never a crash, never the key.

Covers openrouter, deepseek, moonshot, siliconflow, stepfun, novita and anthropic-admin:
valid sample replies with one field swapped for arbitrary JSON, and arbitrary bodies.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.billing.errors import BillingError
from bot.billing.models import BalanceResult
from bot.billing.providers import (
    anthropic_admin,
    deepseek,
    moonshot,
    novita,
    openrouter,
    siliconflow,
    stepfun,
)
from bot.billing.providers.base import FetchContext, HttpReply, Provider
from bot.secret import Secret

KEY = "sk-fuzz-0123456789abcdef0123456789"

SAMPLES: dict[str, tuple[Provider, Any]] = {
    "openrouter": (
        openrouter.PROVIDER,
        {
            "data": {
                "limit": 100,
                "limit_remaining": 74.5,
                "limit_reset": "monthly",
                "usage": 25.5,
                "usage_monthly": 25.5,
                "is_free_tier": False,
                "is_management_key": False,
                "expires_at": "2027-12-31T23:59:59Z",
            }
        },
    ),
    "deepseek": (
        deepseek.PROVIDER,
        {
            "is_available": True,
            "balance_infos": [
                {
                    "currency": "CNY",
                    "total_balance": "110.00",
                    "granted_balance": "10.00",
                    "topped_up_balance": "100.00",
                },
                {"currency": "USD", "total_balance": "2.00"},
            ],
        },
    ),
    "moonshot": (
        moonshot.PROVIDER,
        {
            "code": 0,
            "data": {
                "available_balance": 49.58894,
                "voucher_balance": 46.58893,
                "cash_balance": 3.00001,
            },
            "scode": "0x0",
            "status": True,
        },
    ),
    "siliconflow": (
        siliconflow.PROVIDER,
        {
            "code": 20000,
            "message": "OK",
            "status": True,
            "data": {"balance": "0.88", "chargeBalance": "88.00", "totalBalance": "88.88"},
        },
    ),
    "stepfun": (
        stepfun.PROVIDER,
        {
            "object": "account",
            "type": "prepaid",
            "balance": 95.5,
            "total_cash_balance": 80.5,
            "total_voucher_balance": 15,
        },
    ),
    "novita": (
        novita.PROVIDER,
        {"availableBalance": "1000000", "cashBalance": "800000", "creditLimit": "200000"},
    ),
    "anthropic-admin": (
        anthropic_admin.PROVIDER,
        {
            "data": [
                {
                    "starting_at": "2025-01-01T00:00:00Z",
                    "ending_at": "2025-01-02T00:00:00Z",
                    "results": [{"currency": "USD", "amount": "123.45"}],
                }
            ],
            "has_more": False,
            "next_page": None,
        },
    ),
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
    | st.sampled_from(["", "0", "-1", "1e400", "NaN", "Infinity", "20000", "USD", "monthly"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)


class OneReply:
    def __init__(self, body: Any) -> None:
        self.raw = json.dumps(body).encode()

    async def get(
        self, url: str, *, headers: Mapping[str, str], params: Mapping[str, str] | None = None
    ) -> HttpReply:
        return HttpReply(200, self.raw, {"content-type": "application/json"})


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


def _replace(value: Any, path: tuple, new: Any) -> Any:
    value = copy.deepcopy(value)
    target = value
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = new
    return value


async def _check(provider: Provider, body: Any) -> None:
    ctx = FetchContext(
        http=OneReply(body),
        key=Secret(KEY),
        base_url="http://127.0.0.1:9",
        now=datetime(2026, 3, 15, tzinfo=UTC),
    )
    try:
        result = await provider.fetch(ctx)
    except BillingError as exc:
        assert KEY not in str(exc) and KEY not in exc.detail
        return
    assert isinstance(result, BalanceResult)
    for name in ("remaining", "total", "used"):
        value = getattr(result, name)
        assert value is None or (isinstance(value, Decimal) and value.is_finite())
    assert KEY not in repr(result)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(SAMPLES)),
    pick=st.integers(min_value=0, max_value=10**6),
    new=json_values,
)
async def test_mutated_samples_never_crash(name: str, pick: int, new: Any) -> None:
    provider, sample = SAMPLES[name]
    paths = _paths(sample)
    body = _replace(sample, paths[pick % len(paths)], new)
    await _check(provider, body)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(SAMPLES)), body=json_values)
async def test_arbitrary_bodies_never_crash(name: str, body: Any) -> None:
    await _check(SAMPLES[name][0], body)


async def test_samples_are_valid() -> None:
    for provider, sample in SAMPLES.values():
        await _check(provider, sample)
        ctx = FetchContext(
            http=OneReply(sample),
            key=Secret(KEY),
            base_url="http://127.0.0.1:9",
            now=datetime.now(UTC),
        )
        assert isinstance(await provider.fetch(ctx), BalanceResult)
