"""A fake ECB daily reference-rates server on 127.0.0.1 (FX_RATES_URL in tests).

It serves eurofxref-daily.xml in the ECB's own format for `day`, counts requests, and
can be told to fail (`status`) so the "rates unavailable" path is testable.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from aiohttp import web

ENVELOPE = """<?xml version="1.0" encoding="UTF-8"?>
<gesmes:Envelope xmlns:gesmes="http://www.gesmes.org/xml/2002-08-01" xmlns="http://www.ecb.int/vocabulary/2002-08-01/eurofxref">
\t<gesmes:subject>Reference rates</gesmes:subject>
\t<gesmes:Sender>
\t\t<gesmes:name>European Central Bank</gesmes:name>
\t</gesmes:Sender>
\t<Cube>
\t\t<Cube time='{day}'>
{rows}
\t\t</Cube>
\t</Cube>
</gesmes:Envelope>
"""

DEFAULT_RATES = {"USD": Decimal("1.0500"), "JPY": Decimal("160.00"), "CNY": Decimal("7.8000"),
                 "GBP": Decimal("0.8400")}  # fmt: skip


def ecb_xml(day: date, rates: dict[str, Decimal] | None = None) -> bytes:
    rows = "\n".join(
        f"\t\t\t<Cube currency='{code}' rate='{rate}'/>"
        for code, rate in (rates or DEFAULT_RATES).items()
    )
    return ENVELOPE.format(day=day.isoformat(), rows=rows).encode()


class FakeRatesServer:
    def __init__(self, day: date, rates: dict[str, Decimal] | None = None) -> None:
        self.day = day
        self.rates = dict(rates or DEFAULT_RATES)
        self.status = 200
        self.hits = 0
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        if self.status != 200:
            return web.Response(status=self.status, text="unavailable")
        return web.Response(body=ecb_xml(self.day, self.rates), content_type="text/xml")

    async def start(self) -> FakeRatesServer:
        app = web.Application()
        app.router.add_get("/stats/eurofxref/eurofxref-daily.xml", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}/stats/eurofxref/eurofxref-daily.xml"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
