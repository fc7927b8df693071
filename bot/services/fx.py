"""Exchange rates for one converted total: the ECB's daily euro reference rates.

`FX_RATES_URL` (default: the ECB's public daily XML) is operator configuration, fetched
through the billing layer's trusted HTTP client (bot/billing/http.py: timeouts, retries,
a 256 KiB body cap, fixed-text errors). The rates are kept in the database (`fx_rates`,
one row), so every replica and every restart shares one copy, and fetched at most once a
day: the ECB publishes on business days only, so a file dated the previous business day
(yesterday, or last Friday on a Monday or a weekend) is current and no reason to fetch
again. A failed fetch is retried a day later (an hour later while there are no rates at
all); meanwhile the last rates, with their date, serve up to `MAX_AGE` old, and after
that totals stay per currency and say so.

Only money converts: points, characters and other units never reach this module.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from sqlalchemy import select

from bot.billing.errors import BillingError
from bot.storage.models import FxRates

if TYPE_CHECKING:
    from bot.billing.reply import HttpClient
    from bot.storage.db import Database

log = logging.getLogger(__name__)

DEFAULT_URL = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"
SOURCE = "ecb"
BASE = "EUR"
RETRY_AFTER = timedelta(days=1)  # "at most once a day"
RETRY_EMPTY = timedelta(hours=1)  # no rates stored at all yet
MAX_AGE = timedelta(days=7)  # older rates are not used for totals
FETCH_TIMEOUT = 15.0  # seconds for the whole fetch, whatever the client's retries
MAX_CURRENCIES = 100
MAX_RATE = Decimal(10) ** 9

_CODE = re.compile(r"^[A-Z]{3}$")

#: The currencies of the ECB's reference rates (plus the euro): what /currency accepts
#: while no rates are stored; once they are, the stored list is the authority.
ECB_CURRENCIES = frozenset(
    {"EUR", "USD", "JPY", "CZK", "DKK", "GBP", "HUF", "PLN", "RON", "SEK", "CHF", "ISK",
     "NOK", "TRY", "AUD", "BRL", "CAD", "CNY", "HKD", "IDR", "ILS", "INR", "KRW", "MXN",
     "MYR", "NZD", "PHP", "SGD", "THB", "ZAR"}
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Rates:
    """Units of each currency per euro, as published for `day`."""

    day: date
    per_euro: Mapping[str, Decimal]

    def convert(self, amount: Decimal, source: str, target: str) -> Decimal | None:
        """`amount` of `source` in `target`; None when either has no rate."""
        source, target = source.upper(), target.upper()
        a = Decimal(1) if source == BASE else self.per_euro.get(source)
        b = Decimal(1) if target == BASE else self.per_euro.get(target)
        if a is None or b is None or a <= 0:
            return None
        return amount / a * b

    def knows(self, code: str) -> bool:
        return code.upper() == BASE or code.upper() in self.per_euro


def previous_business_day(today: date) -> date:
    """The last weekday before `today` (Monday → Friday)."""
    back = {0: 3, 6: 2}.get(today.weekday(), 1)
    return today - timedelta(days=back)


def is_current(published: date, today: date) -> bool:
    """The ECB's latest file is at least the previous business day's."""
    return published >= previous_business_day(today)


class BadRates(ValueError):
    """The file is not the reference-rates XML we expect (nothing of it is kept)."""


def parse_ecb(body: bytes) -> Rates:
    """Parse eurofxref-daily.xml: `<Cube time="YYYY-MM-DD">` with `<Cube currency rate>`s."""
    if b"<!DOCTYPE" in body or b"<!ENTITY" in body:
        raise BadRates("DTDs are not expected")
    import xml.etree.ElementTree as ET  # only when rates are fetched (issue 17 item 4)

    try:
        root = ET.fromstring(body)  # noqa: S314 - bounded body, no DTD (checked above)
    except ET.ParseError:
        raise BadRates("not XML") from None
    day: date | None = None
    rates: dict[str, Decimal] = {}
    for element in root.iter():
        if not element.tag.endswith("Cube"):
            continue
        if "time" in element.attrib:
            if day is not None:
                raise BadRates("more than one day")
            try:
                day = date.fromisoformat(element.attrib["time"])
            except ValueError:
                raise BadRates("bad date") from None
        code, rate = element.attrib.get("currency"), element.attrib.get("rate")
        if code is None or rate is None:
            continue
        if not _CODE.match(code) or code == BASE:
            continue
        try:
            value = Decimal(rate)
        except InvalidOperation:
            continue
        if not value.is_finite() or not 0 < value < MAX_RATE:
            continue
        rates[code] = value
        if len(rates) > MAX_CURRENCIES:
            raise BadRates("too many currencies")
    if day is None or not rates:
        raise BadRates("no rates")
    return Rates(day, rates)


class FxService:
    """Long-lived (app.build_services); one fetch at a time per process."""

    def __init__(self, db: Database, http: HttpClient, url: str = DEFAULT_URL) -> None:
        self.db = db
        self.http = http
        self.url = url
        self._lock = asyncio.Lock()

    async def rates(self, now: datetime | None = None) -> Rates | None:
        """Usable rates (fetching if due), or None when there are none to trust."""
        now = now or self.db.clock()
        row = await self._load()
        if row is not None and row.published and is_current(_day(row.published), now.date()):
            return _rates(row)
        if self._too_soon(row, now):
            return self._usable(row, now)
        async with self._lock:
            row = await self._load()  # another task may have fetched meanwhile
            if row is not None and row.published and is_current(_day(row.published), now.date()):
                return _rates(row)
            if self._too_soon(row, now):
                return self._usable(row, now)
            fetched = await self._fetch()
            await self._store(fetched, now)
            row = await self._load()
        return self._usable(row, now)

    async def stored(self) -> Rates | None:
        """The rates in the database, however old, without fetching."""
        row = await self._load()
        return _rates(row) if row is not None and row.rates and row.published else None

    async def known(self, code: str) -> bool:
        """Whether /currency can offer `code`: in the stored rates, else the ECB's list."""
        stored = await self.stored()
        if stored is not None:
            return stored.knows(code)
        return code.upper() in ECB_CURRENCIES

    @staticmethod
    def _too_soon(row: FxRates | None, now: datetime) -> bool:
        if row is None or row.attempted_at is None:
            return False
        gap = RETRY_AFTER if row.rates else RETRY_EMPTY
        return now - row.attempted_at < gap

    @staticmethod
    def _usable(row: FxRates | None, now: datetime) -> Rates | None:
        if row is None or not row.rates or not row.published:
            return None
        rates = _rates(row)
        if now.date() - rates.day > MAX_AGE:
            return None
        return rates

    async def _fetch(self) -> Rates | None:
        try:
            async with asyncio.timeout(FETCH_TIMEOUT):
                reply = await self.http.get(self.url, headers={"Accept": "application/xml"})
        except (BillingError, TimeoutError) as exc:
            log.warning("exchange rates: fetch failed (%s)", type(exc).__name__)
            return None
        if reply.status != 200:
            log.warning("exchange rates: HTTP %s", reply.status)
            return None
        try:
            return parse_ecb(reply.body)
        except BadRates as exc:
            log.warning("exchange rates: unusable file (%s)", exc)
            return None

    async def _load(self) -> FxRates | None:
        async with self.db.session() as s:
            return await s.scalar(select(FxRates).where(FxRates.source == SOURCE))

    async def _store(self, rates: Rates | None, now: datetime) -> None:
        async with self.db.session() as s:
            row = await s.get(FxRates, SOURCE)
            if row is None:
                row = FxRates(source=SOURCE)
                s.add(row)
            row.attempted_at = now
            if rates is not None:
                row.published = rates.day.isoformat()
                row.rates = {k: str(v) for k, v in sorted(rates.per_euro.items())}
                row.fetched_at = now


def _day(text: str) -> date:
    return date.fromisoformat(text)


def _rates(row: FxRates) -> Rates:
    values: dict[str, Decimal] = {}
    for code, text in (row.rates or {}).items():
        try:
            values[code] = Decimal(text)
        except (InvalidOperation, TypeError):
            continue
    return Rates(_day(row.published or "1970-01-01"), values)
