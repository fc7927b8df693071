"""Limits agree from input to column (issue 11, item 6): whatever a check accepts fits the
column that stores it, on SQLite and PostgreSQL alike."""

from __future__ import annotations

import zoneinfo

import pytest
from sqlalchemy import select

from bot import limits
from bot.alerts import rules
from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import CURRENCY_RE, FigureKind, Unit
from bot.billing.ssrf import validate_base_url
from bot.secret import mask
from bot.services.keys import MAX_LABEL_CHARS, clean_label, next_label
from bot.storage.models import AlertOutbox, ApiKey, BalanceSnapshot, KeyStatus, User
from tests.e2e.harness import running_bot
from tests.e2e.test_add import canary, reply, stored_keys


def column(model: type, name: str) -> int:
    length = model.__table__.c[name].type.length  # type: ignore[attr-defined]
    assert isinstance(length, int)
    return length


def url_of(length: int, base: str = "https://relay.example.com/") -> str:
    return base + "a" * (length - len(base))


def test_one_constant_for_each_input_and_its_column() -> None:
    assert column(ApiKey, "base_url") == limits.MAX_BASE_URL
    assert column(ApiKey, "label") == limits.LABEL_COLUMN >= MAX_LABEL_CHARS == limits.MAX_LABEL
    assert column(User, "timezone") == limits.MAX_TIMEZONE
    assert max(len(z) for z in zoneinfo.available_timezones()) <= limits.MAX_TIMEZONE
    assert column(BalanceSnapshot, "currency") == limits.MAX_CURRENCY
    assert CURRENCY_RE.fullmatch("A" * limits.MAX_CURRENCY)
    assert not CURRENCY_RE.fullmatch("A" * (limits.MAX_CURRENCY + 1))
    for name in ("remaining", "total", "used"):
        assert column(BalanceSnapshot, name) == limits.FIGURE_TEXT  # test_figure_bounds.py
    # What the bot itself derives from input: labels it makes, hints, kinds, units.
    assert len(next_label("x" * 32, {"x" * 32} | {f"{'x' * 32}-{n}" for n in range(2, 99)})) <= (
        column(ApiKey, "label")
    )
    assert len(clean_label("é" * MAX_LABEL_CHARS)) <= column(ApiKey, "label")
    assert len(mask("sess-" + "k" * 500)) <= column(ApiKey, "hint")
    assert max(len(k.value) for k in ErrorKind) <= column(KeyStatus, "last_error_kind")
    assert max(len(k.value) for k in FigureKind) <= column(BalanceSnapshot, "kind")
    assert max(len(u.value) for u in Unit) <= column(BalanceSnapshot, "unit")
    kinds = (rules.LOW, rules.RECOVERED, rules.EXPIRES, rules.EXPIRED, rules.REVOKED,
             rules.STALE, rules.FORECAST, rules.DIGEST)  # fmt: skip
    assert max(len(k) for k in kinds) <= column(AlertOutbox, "kind")


def test_the_url_check_accepts_exactly_what_the_column_holds() -> None:
    longest = url_of(limits.MAX_BASE_URL)
    assert validate_base_url(longest, allow_private=False) == longest
    for length in (limits.MAX_BASE_URL + 1, 600, 2048):
        with pytest.raises(BillingError) as refused:
            validate_base_url(url_of(length), allow_private=False)
        assert refused.value.kind is ErrorKind.URL_REFUSED
    # IDNA: 200 typed characters of a Unicode host become more than 512 stored ones.
    idn = "https://" + ".".join(["ü" * 40] * 5) + ".example/"
    assert len(idn) < limits.MAX_BASE_URL
    with pytest.raises(BillingError):
        validate_base_url(idn + "a" * 300, allow_private=False)


async def test_the_longest_accepted_url_is_stored(make_settings, database_url: str) -> None:
    async with running_bot(make_settings, database_url=database_url) as bot:
        longest = url_of(limits.MAX_BASE_URL)
        canonical = bot.services.billing.validate_base_url(longest)
        from bot.secret import Secret

        added = await bot.services.keys.add(1001, Secret(canary()), "relay", base_url=canonical)
        async with bot.services.db.session() as s:
            stored = await s.scalar(select(ApiKey.base_url).where(ApiKey.id == added.key.id))
        assert stored == canonical


async def test_add_with_a_600_character_url_is_refused_politely(
    make_settings, database_url: str
) -> None:
    """Before: accepted by the check (<= 2,048), then PostgreSQL's String(512) refused the
    row: "Something went wrong", key not saved. Now: a reason, and nothing stored."""
    async with running_bot(make_settings, database_url=database_url) as bot:
        ann = bot.tg.user(1001, "Ann")
        url = url_of(600, base=bot.providers.url + "/")
        await bot.tg.send(ann, f"/add {canary()} url={url}")
        text = (await reply(bot, ann)).text or ""
        assert "too long" in text and "Nothing was saved" in text
        assert "Something went wrong" not in text
        assert await stored_keys(bot, ann.id) == []
        assert bot.providers.requests == []
