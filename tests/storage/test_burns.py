"""The forecast's aggregate in SQL (`SnapshotRepo.burns`, bot/storage/figure_sql.py) gives
what the Python readers give (`Decimal(text)` + `figure_fault`, then `forecast.burn_of`),
on SQLite and PostgreSQL: bad legacy rows skipped (never an error), top-ups, ties,
the window's edges. Issue 17 item 3: the sweep no longer loads every reading."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest
from sqlalchemy import text

from bot.billing.models import figure_fault
from bot.secret import Secret
from bot.services import forecast
from bot.storage import figure_sql
from bot.storage.db import Database
from bot.storage.models import BalanceSnapshot
from bot.storage.repositories import SnapshotRepo
from tests.foundation.conftest import Opened

NOW = datetime.now(UTC).replace(microsecond=0)
SINCE = NOW - forecast.WINDOW

#: Rows from before figures were bounded, and forms no writer produced.
LEGACY = [
    "NaN", "-NaN", "sNaN", "Infinity", "-Infinity", "inf", "9E+999999", "-9E+999999",
    "1E+1000000", "1E+16", "-1E+16", "10000000000000000", "1234567890123456789012345678",
    "1E-31", "-1.5E-31", "12345678901234567890123456789", "0.000000000000000000000000000000001",
    "", "garbage", "12abc", "1.2.3", "--5", "-", ".", "E5", "5E", "5E+", "+-5", "1E5.5", ".E5",
    "5%", "0x10", "1,5", "1E+9999999999", "1e99999999999999999999",
]  # fmt: skip
#: Plain bounded decimals in every form a Decimal's str() (or a hand) may take.
PLAIN = [
    "0", "-0", "0.000", "0E-8", "0E+5", "1E-7", "2.5E+3", "1e2", "-3", "+4", ".5", "5.",
    "9999999999999999", "-9999999999999999", "9999999999999999.5", "1E-30", "-1E-30",
    "123456789012345.6789012345678", "0.1234567890123456789012345678", "9999999999999999.9",
    "1.00000000000000000000000000000000000", "00000000000000000000000001", "42.123456",
    "1E+15", "0.000001", "-12.5", "7E+0", "7E-0", "7E+000000003",
]  # fmt: skip
#: Forms Decimal() takes that the SQL test skips on purpose (figure_sql's docstring).
STRICTER = [" 5", "5 ", "1_000", "\u0663", "0E+9999999999"]


def py_valid(raw: str) -> bool:
    try:
        number = Decimal(raw)
    except (InvalidOperation, ValueError):
        return False
    return figure_fault(number) is None


def corpus() -> list[str]:
    rnd = random.Random(17)
    out = LEGACY + PLAIN + STRICTER
    for _ in range(1500):
        pick = rnd.random()
        if pick < 0.4:  # a Decimal's str() at any magnitude (exponent forms included)
            digits = rnd.randint(-(10 ** rnd.randint(1, 30)), 10 ** rnd.randint(1, 30))
            out.append(str(Decimal(digits).scaleb(rnd.randint(-45, 20))))
        elif pick < 0.7:  # noise made of number characters
            out.append("".join(rnd.choice("0123456789.-+eE") for _ in range(rnd.randint(1, 12))))
        else:  # what providers report
            out.append(f"{rnd.uniform(-1e4, 1e6):.{rnd.randint(0, 8)}f}")
    return [s for s in out if len(s) <= 48]  # the column is VARCHAR(48)


async def probe(db: Database, values: list[str]) -> list[tuple[bool, Any]]:
    """valid() and value() of each text, from a table shaped like the snapshot column."""
    dialect = db.engine.dialect.name
    async with db.engine.begin() as conn:
        await conn.execute(text("CREATE TEMPORARY TABLE probe (id INTEGER, remaining TEXT)"))
        await conn.execute(
            text("INSERT INTO probe VALUES (:id, :remaining)"),
            [{"id": i, "remaining": v} for i, v in enumerate(values)],
        )
        rows = await conn.execute(
            text(
                f"SELECT id, CASE WHEN {figure_sql.valid(dialect)} THEN 1 ELSE 0 END, "
                f"{figure_sql.value(dialect)} FROM probe ORDER BY id"
            )
        )
        return [(bool(ok), number) for _, ok, number in rows.all()]


async def test_sql_skips_exactly_the_rows_python_skips(opened: Opened) -> None:
    values = corpus()
    found = await probe(opened.db, values)  # would raise on PostgreSQL for a bad CAST
    differ = [v for v, (ok, _) in zip(values, found, strict=True) if ok != py_valid(v)]
    assert sorted(differ) == sorted(STRICTER)  # Decimal() takes these, the SQL skips them
    assert all(not ok for v, (ok, _) in zip(values, found, strict=True) if v in LEGACY)
    assert all(ok for v, (ok, _) in zip(values, found, strict=True) if v in PLAIN)
    for raw, (ok, number) in zip(values, found, strict=True):
        if ok:  # the number is the text's, exact (numeric) or to a float's precision
            want = Decimal(raw)
            got = number if isinstance(number, Decimal) else Decimal(repr(number))
            assert abs(got - want) <= abs(want) * Decimal("1e-15"), raw


# -- the aggregate ---------------------------------------------------------------------------


async def add_key(opened: Opened, owner: int, label: str) -> str:
    secret = Secret(f"sk-{label}-0123456789abcdef0123456789")
    return (await opened.keys.add(owner, secret, "deepseek", label=label)).key.id


def python_burn(rows: list[dict[str, Any]], key_id: str) -> forecast.Burn:
    """What the sweep computed before: readings in the window, parsed, filtered, sorted."""
    points = sorted(
        (r["taken_at"], Decimal(r["remaining"]))
        for r in rows
        if r["key_id"] == key_id
        and r["kind"] == "balance"
        and r["remaining"] is not None
        and SINCE <= r["taken_at"] <= NOW
        and py_valid(r["remaining"])
    )
    return forecast.burn_of(points)


def history(key_id: str, rnd: random.Random) -> list[dict[str, Any]]:
    """Hourly readings over four days (so the window cuts it), spending with top-ups,
    legacy rows, readings at the same instant, and the window's exact edges."""
    rows: list[dict[str, Any]] = []
    value = Decimal(rnd.randint(500, 5000)) + Decimal(rnd.randint(0, 999999)) / 10**6
    at = NOW - timedelta(days=4)
    while at <= NOW:
        pick = rnd.random()
        if pick < 0.08:
            value += rnd.randint(10, 500)  # a top-up
        elif pick < 0.9:
            value -= Decimal(rnd.randint(0, 2_000_000)) / 10**6
        raw = str(value)
        if pick > 0.95:
            raw = rnd.choice(LEGACY)
        rows.append({"key_id": key_id, "taken_at": at, "kind": "balance", "remaining": raw})
        at += timedelta(minutes=rnd.choice((30, 60, 60, 90)))
    edges = [SINCE, SINCE - timedelta(microseconds=1), NOW, NOW + timedelta(seconds=1)]
    for when in edges:
        rows.append({"key_id": key_id, "taken_at": when, "kind": "balance",
                     "remaining": str(value + rnd.randint(-5, 5))})  # fmt: skip
    tie = NOW - timedelta(hours=7, minutes=13)
    rows += [
        {"key_id": key_id, "taken_at": tie, "kind": "balance", "remaining": raw}
        for raw in (str(value + 3), str(value - 2), "NaN")
    ]
    rows.append({"key_id": key_id, "taken_at": tie, "kind": "spend", "remaining": "1"})
    rows.append({"key_id": key_id, "taken_at": tie, "kind": "balance", "remaining": None})
    return rows


async def test_sql_burns_equal_the_python_burns(opened: Opened) -> None:
    rnd = random.Random(3)
    keys = [await add_key(opened, 1, f"k{i}") for i in range(6)]
    only_bad = await add_key(opened, 1, "bad")
    one = await add_key(opened, 1, "one")
    outside = await add_key(opened, 1, "old")
    rows = [r for k in keys for r in history(k, rnd)]
    rows += [{"key_id": only_bad, "taken_at": NOW - timedelta(hours=h), "kind": "balance",
              "remaining": raw} for h, raw in enumerate(LEGACY)]  # fmt: skip
    rows += [{"key_id": one, "taken_at": NOW - timedelta(hours=2), "kind": "balance",
              "remaining": "1E+2"}]  # fmt: skip
    rows += [{"key_id": outside, "taken_at": SINCE - timedelta(hours=1), "kind": "balance",
              "remaining": "5"}]  # fmt: skip
    async with opened.db.session() as s:
        await s.execute(BalanceSnapshot.__table__.insert(), rows)

    asked = [*keys, only_bad, one, outside]
    async with opened.db.session() as s:
        found = await SnapshotRepo(s).burns(asked, "balance", SINCE, NOW)
    assert set(found) == {*keys, one}  # no valid reading in the window: no row at all
    exact = opened.db.engine.dialect.name == "postgresql"
    for key_id in [*keys, one]:
        want = python_burn(rows, key_id)
        got = forecast.Burn(*found[key_id])
        assert (got.points, got.first_at, got.last_at) == (want.points, want.first_at, want.last_at)
        assert got.last_value == want.last_value  # the stored text, exact
        if exact:
            assert got.spent == want.spent
        else:  # SQLite sums floats (SnapshotRepo.burns' docstring)
            assert abs(got.spent - want.spent) <= want.spent * Decimal("1e-12")
        assert want.points >= 3 or key_id == one
        rate, want_rate = forecast.burn_per_day(got), forecast.burn_per_day(want)
        if want_rate is None:
            assert rate is None
        else:
            assert rate is not None and abs(rate - want_rate) <= want_rate * Decimal("1e-12")
    assert found[one][3] == Decimal(100)


async def test_no_keys_no_query(opened: Opened) -> None:
    async with opened.db.session() as s:
        assert await SnapshotRepo(s).burns([], "balance", SINCE, NOW) == {}


@pytest.mark.parametrize("raw", ["9E+999999", "NaN", "garbage", "1E+1000000"])
async def test_a_bad_row_alone_is_no_burn_and_no_error(opened: Opened, raw: str) -> None:
    key_id = await add_key(opened, 2, "k")
    async with opened.db.session() as s:
        s.add(BalanceSnapshot(key_id=key_id, taken_at=NOW, kind="balance", remaining=raw))
    async with opened.db.session() as s:
        assert await SnapshotRepo(s).burns([key_id], "balance", SINCE, NOW) == {}
