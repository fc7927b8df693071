"""/history end to end: real PNG charts through sendPhoto with the expected caption
figures for seeded snapshots (a CJK label among them), plan windows, too little history,
the 📈 History button, and private chats only. Dates are relative to now."""

from __future__ import annotations

import io
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.handlers.pace import day_month
from bot.i18n import translator
from bot.storage.models import BalanceSnapshot
from tests.e2e.harness import RunningBot, running_bot
from tests.e2e.test_balance import add
from tests.e2e.test_keys import open_keys, press
from tests.fakes.telegram_api import BotMessage, FakeUser, button_data


def png_size(data: bytes) -> tuple[int, int]:
    from PIL import Image

    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
        return image.size


async def seed(bot: RunningBot, key_id: str, rows: list[dict[str, Any]]) -> None:
    async with bot.services.db.session() as s:
        for row in rows:
            s.add(BalanceSnapshot(key_id=key_id, **row))


def money(at: datetime, remaining: str, currency: str) -> dict[str, Any]:
    return {"taken_at": at, "kind": "balance", "currency": currency, "remaining": remaining}


async def photos(bot: RunningBot, user: FakeUser, n: int) -> list[BotMessage]:
    out = []
    for _ in range(n):
        out.append(await bot.tg.wait_for_reply(user, timeout=30, predicate=lambda m: True))
    return out


async def seed_two_keys(bot: RunningBot, uid: int) -> tuple[str, str, datetime]:
    main = await add(bot, uid, "sk-deepseek0123456789abcdef", "deepseek", "主力")
    router = await add(bot, uid, "sk-or-v1-0123456789abcdef0123456789", "openrouter", "router")
    base = datetime.now(UTC) - timedelta(minutes=5)
    # ¥: 300 → 250 → 200, top-up to 400, → 350 → 330 → 320 → 310: spent 190 over 20 days.
    cny = [(20, "300"), (15, "250"), (10, "200"), (9, "400"), (5, "350"), (2, "330"), (1, "320")]
    await seed(bot, main, [money(base - timedelta(days=d), v, "CNY") for d, v in cny])
    await seed(bot, main, [money(base, "310", "CNY")])
    # $: 100 → 90 → 80 over 10 days; only one reading in the last 3 days: no run-out date.
    usd = [(10, "100"), (5, "90"), (0, "80")]
    await seed(bot, router, [money(base - timedelta(days=d), v, "USD") for d, v in usd])
    return main, router, base


async def test_history_charts_per_currency_with_caption_figures(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4201, "Ann")
        main, _, base = await seed_two_keys(bot, ann.id)
        assert bot.services.alerts is not None
        await bot.services.alerts.set_thresholds(ann.id, [main], ["50"])
        await bot.services.users.set_timezone(ann.id, "Asia/Shanghai")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            await bot.tg.send(ann, "/history")
            cny, usd = await photos(bot, ann, 2)
        assert not [w for w in caught if "missing from font" in str(w.message)]
        assert [m.kind for m in (cny, usd)] == ["photo", "photo"]
        assert len(bot.tg.calls_to("sendPhoto")) == 2 and not bot.tg.calls_to("sendMediaGroup")
        for msg in (cny, usd):
            assert png_size(msg.file.data) == (1000, 560)  # type: ignore[union-attr]
        text = cny.text or ""
        assert text.startswith("📈 Remaining balance · CNY · last 30 days")
        # Runs out at the pace of the last 3 days: ¥10/day from ¥310, 31 days ahead.
        tz = ZoneInfo("Asia/Shanghai")
        dates = {
            day_month(base + timedelta(days=31, minutes=m), tz, translator("en")) for m in (-10, 10)
        }
        row = next(line for line in text.split("\n") if line.startswith("主力"))
        assert row.startswith("主力: spent ¥190.00 · avg ¥9.50/day · runs out around ")
        assert row.split("runs out around ")[1].split(" ·")[0] in dates
        assert row.endswith("· top-ups: 1")
        assert text.endswith("Times in Asia/Shanghai.")
        assert "router: spent $20.00 · avg $2.00/day · no run-out estimate yet" in (usd.text or "")
        assert "sk-" not in bot.tg.transcript()


async def test_history_in_chinese_one_key_and_period(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4202, "Ann", language_code="zh-hans")
        await seed_two_keys(bot, ann.id)
        await bot.tg.send(ann, "/history 主力 7d")
        [chart] = await photos(bot, ann, 1)
        text = chart.text or ""
        assert text.startswith("📈 剩余余额 · CNY · 最近 7 天"), text
        assert "主力：已花费 ¥40.00" in text  # 350 → 330 → 320 → 310 in the last 7 days
        assert png_size(chart.file.data) == (1000, 560)  # type: ignore[union-attr]
        await bot.tg.send(ann, "/history 主力 14d")
        reply = await bot.tg.wait_for_reply(ann)
        assert "<code>90d</code>" in (reply.raw_text or "")
        await bot.tg.send(ann, "/history nope")
        reply = await bot.tg.wait_for_reply(ann)
        assert "nope" in (reply.text or "") and "主力" in (reply.text or "")


async def test_history_labels_with_spaces(make_settings) -> None:
    """One label rule (split_label): `/history my work key 7d` is my-work-key over 7 days,
    and `/history backup 7d` names backup-7d when there is no key `backup`."""
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4208, "Ann")
        work = await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "my-work-key")
        backup = await add(bot, ann.id, "sk-deepseek0123456789abcdeg", "deepseek", "backup-7d")
        base = datetime.now(UTC) - timedelta(minutes=5)
        for key in (work, backup):
            days = [(6, "50"), (3, "40"), (0, "35")]
            await seed(bot, key, [money(base - timedelta(days=d), v, "CNY") for d, v in days])
        await bot.tg.send(ann, "/history my work key 7d")
        [chart] = await photos(bot, ann, 1)
        text = chart.text or ""
        assert text.startswith("📈 Remaining balance · CNY · last 7 days"), text
        assert "my-work-key: spent ¥15.00" in text and "backup-7d" not in text
        await bot.tg.send(ann, "/history backup 7d")
        [chart] = await photos(bot, ann, 1)
        text = chart.text or ""
        assert text.startswith("📈 Remaining balance · CNY · last 30 days"), text
        assert "backup-7d: spent ¥15.00" in text and "my-work-key" not in text
        await bot.tg.send(ann, "/history " + "x" * 100 + " 7d")
        reply = await bot.tg.wait_for_reply(ann)
        assert "x" * 63 + "…" in (reply.text or "") and "x" * 64 not in (reply.text or "")
        assert len(bot.tg.calls_to("sendPhoto")) == 2


async def test_many_keys_and_currencies_are_capped_and_the_rest_named(make_settings) -> None:
    """At most MAX_LINES lines per chart and MAX_CHARTS photos per /history: what is left
    out is named in the caption, never silently dropped."""
    from bot.charts import MAX_LINES
    from bot.handlers.history import MAX_CHARTS

    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4209, "Ann")
        base = datetime.now(UTC) - timedelta(minutes=5)
        cny = [f"k{i:02d}" for i in range(MAX_LINES + 2)]
        others = ["USD", "EUR", "GBP", "JPY"]  # five currency groups in all
        for i, label in enumerate(cny + others):
            key = await add(bot, ann.id, f"sk-deepseek0123456789abc{i:03d}", "deepseek", label)
            code = "CNY" if label in cny else label
            await seed(bot, key, [money(base - timedelta(days=d), str(100 - d), code)
                                  for d in (3, 1, 0)])  # fmt: skip
        drawn: list[Any] = []
        render = bot.services.charts.render

        async def spy(chart: Any) -> bytes:
            drawn.append(chart)
            return await render(chart)

        bot.services.charts.render = spy  # type: ignore[method-assign]
        await bot.tg.send(ann, "/history")
        sent = await photos(bot, ann, MAX_CHARTS)
        assert len(bot.tg.calls_to("sendPhoto")) == MAX_CHARTS == len(drawn)
        first = sent[0].text or ""
        assert first.startswith("📈 Remaining balance · CNY"), first
        assert len(drawn[0].lines) == MAX_LINES
        left_out = [k for k in cny if f"{k}:" not in first]
        assert len(left_out) == 2 and f"+2 more not drawn: {', '.join(left_out)}" in first
        assert "+2 more not drawn" in drawn[0].footnote  # on the picture too
        last = sent[-1].text or ""
        assert "Not drawn (one chart per currency, at most 4): Remaining balance · " in last
        titles = [c.title for c in drawn]
        assert len({t.split(" · ")[1] for t in titles}) == MAX_CHARTS  # one per currency


async def test_plan_windows_are_charted_as_usage(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4203, "Ann")
        plan = await add(bot, ann.id, "sk-kimi0123456789abcdef01234567", "kimi-code", "plan")
        now = datetime.now(UTC)
        rows = []
        for hours, five, week in (
            (30, "20", "10"),
            (20, "95", "30"),
            (10, "40", "55"),
            (1, "60", "70"),
        ):
            windows = [
                {"name": "5h", "used_pct": five, "unit": "percent", "state": "ok"},
                {"name": "weekly", "used_pct": week, "unit": "percent", "state": "ok"},
            ]
            rows.append(
                {"taken_at": now - timedelta(hours=hours), "kind": "quota", "windows": windows}
            )
        await seed(bot, plan, rows)
        await bot.tg.send(ann, "/history plan")
        [chart] = await photos(bot, ann, 1)
        text = chart.text or ""
        assert text.startswith("📈 Plan window usage · last 30 days")
        assert "plan · 5-hour: now 60 %, peak 95 %" in text
        assert "plan · weekly: now 70 %, peak 70 %" in text
        assert png_size(chart.file.data) == (1000, 560)  # type: ignore[union-attr]


async def test_too_little_history_is_a_text_not_an_empty_picture(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4204, "Ann")
        key = await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ds")
        one = datetime.now(UTC) - timedelta(minutes=10)
        await seed(bot, key, [money(one, "12.30", "CNY")])
        await bot.tg.send(ann, "/history")
        reply = await bot.tg.wait_for_reply(ann)
        assert reply.kind == "text" and not bot.tg.calls_to("sendPhoto")
        text = reply.text or ""
        assert "Not enough history for a chart yet" in text
        when = (one + timedelta(hours=1)).strftime("%H:%M")  # an hour after the first reading
        assert "ds: 1 reading(s) so far — a chart is possible from about " in text
        assert text.rstrip(".").endswith(when)  # (after midnight, the date comes first)


async def test_history_button_on_the_key_card_and_private_only(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(4205, "Ann")
        main, _, _ = await seed_two_keys(bot, ann.id)
        listing = await open_keys(bot, ann)
        await press(bot, ann, listing.message_id, button_data(listing, "主力"))
        card = await bot.tg.wait_for_reply(ann)
        assert button_data(card, "History") == f"h:key:{main}"
        by_text = {b.text: b for b in card.buttons()}
        assert by_text["🗑 Delete"].style == "danger"
        copy = by_text["📋 Copy CLI check"]
        assert copy.copy_text == "balance-bot check --provider deepseek --key-env DEEPSEEK_API_KEY"
        assert copy.callback_data is None and "sk-deepseek" not in bot.tg.transcript()
        await press(bot, ann, card.message_id, f"h:key:{main}")
        chart = await bot.tg.wait_for_reply(ann, timeout=30, predicate=lambda m: m.kind == "photo")
        assert (chart.text or "").startswith("📈 Remaining balance · CNY · last 30 days")
        # Another user's key id is "not found", and nothing is drawn.
        bob = bot.tg.user(4206, "Bob", started=True)
        mine = await bot.tg.send(bob, "/start")
        await bot.tg.wait_for_reply(bob)
        assert mine
        [bob_msg] = bot.tg.messages(bob.id)
        qid = await bot.tg.press(bob, bob_msg.message_id, f"h:key:{main}", strict=False)
        answer = await bot.tg.wait_for_answer(qid)
        assert answer.show_alert and "not found" in (answer.text or "")
        assert len(bot.tg.calls_to("sendPhoto")) == 1
        # In a group the figures are never shown.
        await bot.tg.send(ann, "/history", chat_type="group")
        group_reply = await bot.tg.wait_for_reply(-100)
        assert "private chat" in (group_reply.text or "")


def test_low_balance_alerts_carry_a_history_button() -> None:
    from bot.alerts.outbox import OutboxItem
    from bot.billing.registry import default_registry
    from bot.handlers.alert_messages import render

    now = datetime.now(UTC)
    payload = {"label": "ds", "hint": "sk-…cdef", "remaining": "4", "currency": "USD",
               "threshold": "5"}  # fmt: skip
    item = OutboxItem(1, 7, "k1", "low", payload, 0, now, "zh", "UTC")
    _, markup = render(item, now, default_registry())
    assert markup is not None
    buttons = [b for row in markup.inline_keyboard for b in row]
    assert ("📈 历史", "h:key:k1") in [(b.text, b.callback_data) for b in buttons]
    assert [b.style for b in buttons if b.callback_data == "al:top:k1"] == ["success"]


async def test_history_is_in_the_command_menu_and_help(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        for lang in ("", "zh"):
            names = [c["command"] for c in bot.tg.my_commands("all_private_chats", lang)]
            assert "history" in names
        ann = bot.tg.user(4207, "Ann", language_code="zh-hans")
        await bot.tg.send(ann, "/help")
        reply = await bot.tg.wait_for_reply(ann)
        assert "/history [名称] [7d|30d|90d]" in (reply.text or "")
