"""/export end to end: CSV and JSON documents parsed and checked against the stored
snapshots, formula-looking cells neutralised, no key material, nothing after /forget."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from bot.storage.models import BalanceSnapshot
from tests.e2e.harness import running_bot
from tests.e2e.test_balance import add
from tests.e2e.test_history import seed
from tests.fakes.telegram_api import button_data

DS_KEY = "sk-deepseek0123456789abcdef"
PLAN_KEY = "sk-kimi0123456789abcdef01234567"


async def test_export_csv_and_json_then_forget(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4401, "Ann")
        ds = await add(bot, ann.id, DS_KEY, "deepseek", "=SUM(A1:A2)")
        plan = await add(bot, ann.id, PLAN_KEY, "kimi-code", "计划")
        now = datetime.now(UTC).replace(microsecond=0)
        t1, t2, t3 = now - timedelta(days=2), now - timedelta(days=1), now - timedelta(hours=1)
        await seed(
            bot,
            ds,
            [
                {"taken_at": t1, "kind": "balance", "currency": "CNY", "remaining": "12.50",
                 "total": "100", "used": "87.50"},
                {"taken_at": t2, "kind": "balance", "currency": "CNY", "remaining": "-0.25"},
            ],
        )  # fmt: skip
        window = {"name": "5h", "used_pct": "42", "unit": "percent", "state": "ok"}
        await seed(bot, plan, [{"taken_at": t3, "kind": "quota", "windows": [window]}])

        await bot.tg.send(ann, "/export")
        doc = await bot.tg.wait_for_reply(ann, predicate=lambda m: m.kind == "document")
        assert doc.file.name.endswith(".csv")  # type: ignore[union-attr]
        data = doc.file.data  # type: ignore[union-attr]
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8"))))
        assert list(rows[0])[:7] == [
            "label", "provider", "taken_at", "remaining", "total", "used", "currency",
        ]  # fmt: skip
        assert "windows" in rows[0]
        assert [(r["label"], r["taken_at"], r["remaining"]) for r in rows] == [
            ("'=SUM(A1:A2)", t1.isoformat().replace("+00:00", "Z"), "12.50"),
            ("'=SUM(A1:A2)", t2.isoformat().replace("+00:00", "Z"), "-0.25"),  # a number stays
            ("计划", t3.isoformat().replace("+00:00", "Z"), ""),
        ]
        assert rows[0]["total"] == "100" and rows[0]["used"] == "87.50"
        assert rows[0]["currency"] == "CNY" and rows[0]["provider"] == "deepseek"
        assert json.loads(rows[2]["windows"])[0]["used_pct"] == "42"
        assert "3 readings of 2 key(s)" in (doc.text or "")
        hints = [k.hint for k in await bot.services.keys.list(ann.id)]
        for secret in (DS_KEY, PLAN_KEY, ds, plan, *hints):
            assert secret.encode() not in data

        await bot.tg.send(ann, "/export json")
        doc = await bot.tg.wait_for_reply(ann, predicate=lambda m: m.kind == "document")
        body = json.loads(doc.file.data)  # type: ignore[union-attr]
        readings = body["readings"]
        assert [r["label"] for r in readings] == ["=SUM(A1:A2)", "=SUM(A1:A2)", "计划"]
        assert readings[1]["remaining"] == "-0.25" and readings[1]["total"] is None
        assert readings[2]["windows"][0]["name"] == "5h" and readings[2]["kind"] == "quota"
        assert DS_KEY not in doc.file.data.decode()  # type: ignore[union-attr]

        await bot.tg.send(ann, "/currency usd")
        await bot.tg.wait_for_reply(ann)
        await bot.tg.send(ann, "/forget")
        confirm = await bot.tg.wait_for_reply(ann)
        await bot.tg.press(ann, confirm.message_id, button_data(confirm, "Delete everything"))
        await bot.tg.wait_for_reply(ann)
        await bot.tg.send(ann, "/export")
        reply = await bot.tg.wait_for_reply(ann)
        assert reply.kind == "text" and "Nothing to export yet" in (reply.text or "")
        # Nothing derived is left either: no history to chart, no currency preference.
        await bot.tg.send(ann, "/history 90d")
        reply = await bot.tg.wait_for_reply(ann)
        assert "You have no keys yet" in (reply.text or "")
        assert (await bot.services.users.touch(ann.id)).currency is None
        async with bot.services.db.session() as s:
            assert not (await s.execute(select(BalanceSnapshot))).all()
        assert len(bot.tg.calls_to("sendDocument")) == 2


async def test_export_is_private_and_checks_its_argument(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4402, "Ann")
        await bot.tg.send(ann, "/export xml")
        reply = await bot.tg.wait_for_reply(ann)
        assert "/export json" in (reply.text or "")
        await bot.tg.send(ann, "/export", chat_type="group")
        group_reply = await bot.tg.wait_for_reply(-100)
        assert "private chat" in (group_reply.text or "")
        assert not bot.tg.calls_to("sendDocument")
