"""/balance end to end: real Application, fake Telegram, fake providers over HTTP."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import update

from bot.secret import Secret
from bot.storage.models import KeyStatus
from tests.e2e.harness import RunningBot, running_bot, without_scheduled_sweep
from tests.fakes.provider_server import Reply
from tests.fakes.telegram_api import BotMessage, button_data

DEEPSEEK = {
    "is_available": True,
    "balance_infos": [
        {"currency": "CNY", "total_balance": "110.00", "granted_balance": "10.00",
         "topped_up_balance": "100.00"}
    ],
}  # fmt: skip
OPENROUTER = {
    "data": {"limit": 100, "limit_remaining": 74.5, "limit_reset": None, "usage": 25.5,
             "is_free_tier": False, "is_management_key": False}
}  # fmt: skip
MOONSHOT = {"code": 0, "data": {"available_balance": 49.58894, "voucher_balance": 46.58893,
            "cash_balance": 3.00001}, "scode": "0x0", "status": True}  # fmt: skip
SILICONFLOW = {
    "code": 20000, "message": "OK", "status": True,
    "data": {"balance": "0.88", "chargeBalance": "88.00", "totalBalance": "88.88"},
}  # fmt: skip
OPENAI_MODELS = {"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]}
ANTHROPIC = {
    "data": [{"starting_at": "2025-01-01T00:00:00Z", "ending_at": "2025-01-02T00:00:00Z",
              "results": [{"currency": "USD", "amount": "1000"},
                          {"currency": "USD", "amount": "124"}]}],
    "has_more": False, "next_page": None,
}  # fmt: skip


def relay_usage(expires: datetime) -> dict[str, Any]:
    return {"code": True, "message": "ok", "data": {
        "name": "t", "total_granted": 1000000, "total_used": 12345, "total_available": 987655,
        "unlimited_quota": False, "expires_at": int(expires.timestamp())}}  # fmt: skip


RELAY_STATUS = {"success": True, "data": {"quota_per_unit": 500000, "quota_display_type": "USD"}}


def script_all(bot: RunningBot, *, relay_expires: datetime, slow: float = 1.0) -> None:
    p = bot.providers
    p.reply("/user/balance", json=DEEPSEEK)
    p.reply("/v1/key", json=OPENROUTER)
    p.reply("/api/usage/token", json=relay_usage(relay_expires))
    p.reply("/api/status", json=RELAY_STATUS)
    p.reply("/v1/models", json=OPENAI_MODELS)
    p.reply("/v1/organizations/cost_report", json=ANTHROPIC)
    p.reply("/v1/user/info", json=SILICONFLOW, delay=slow)
    p.script("/v1/users/me/balance", [Reply(200, json=MOONSHOT), Reply(500, json={"error": "x"})])


async def add(bot: RunningBot, uid: int, key: str, provider: str, label: str, **kw: Any) -> str:
    added = await bot.services.keys.add(uid, Secret(key), provider, label=label, **kw)
    return added.key.id


async def add_mix(bot: RunningBot, uid: int) -> dict[str, str]:
    url = bot.providers.url
    ant = "sk-ant-admin01-0123456789abcdef0123"
    return {
        "ds": await add(bot, uid, "sk-deepseek0123456789abcdef", "deepseek", "ds-main"),
        "or": await add(bot, uid, "sk-or-v1-0123456789abcdef0123456789", "openrouter", "router"),
        "relay": await add(bot, uid, "sk-relay0123456789abcdef", "relay", "relay", base_url=url),
        "oa": await add(bot, uid, "sk-proj-abcdefghijT3BlbkFJabcdefghij0123", "openai", "gpt"),
        "an": await add(bot, uid, ant, "anthropic-admin", "claude-org"),
        "moon": await add(bot, uid, "sk-moonshot0123456789abcdefgh", "moonshot", "kimi"),
        "sf": await add(bot, uid, "sk-siliconflow0123456789abcdef", "siliconflow", "sf-slow"),
    }  # fmt: skip


def noon_in(days: int) -> datetime:
    today = datetime.now(UTC).date()
    return datetime.combine(today + timedelta(days=days), time(12, 0), tzinfo=UTC)


async def prime_failing(bot: RunningBot, uid: int, key_id: str, hours_ago: float = 2) -> None:
    """A first successful check of the moonshot key, recorded as if it was `hours_ago`."""
    report = await bot.services.balances.check_key(uid, key_id, manual=False)
    assert report is not None and report.ok
    bot.services.billing.clear_cache()
    async with bot.services.db.session() as s:
        await s.execute(
            update(KeyStatus)
            .where(KeyStatus.key_id == key_id)
            .values(last_ok_at=datetime.now(UTC) - timedelta(hours=hours_ago))
        )


def answered(message: BotMessage) -> bool:
    return (message.text or "").startswith("💰")


def final_answer(message: BotMessage) -> bool:
    return "as of" in (message.text or "") or "stored results" in (message.text or "")


async def test_balance_all_providers_one_edited_message(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(2001, "Ann", language_code="en")
        ids = await add_mix(bot, ann.id)
        script_all(bot, relay_expires=noon_in(12))
        await prime_failing(bot, ann.id, ids["moon"])
        # The two slow providers answer only once the first message is out, so what it shows
        # depends on the order of events, not on how fast this machine answers the others.
        bot.providers.hold("/v1/user/info")
        bot.providers.hold("/v1/users/me/balance")
        await bot.tg.send(ann, "/balance")
        first = await bot.tg.wait_for_reply(ann)
        # Keys that answered show at once; the slow ones fill in by editing the same message.
        so_far = re.search(r"(\d) of 7 keys so far", first.text)
        assert so_far is not None and 1 <= int(so_far[1]) <= 5, first.text
        pending = re.search(r"Still checking (.*)…", first.text)
        assert pending is not None, first.text
        waiting = pending[1].split(", ")
        assert {"kimi", "sf-slow"} <= set(waiting)
        assert len(waiting) == 7 - int(so_far[1])
        if "ds-main" not in waiting:
            assert "¥110.00 left" in first.text
        bot.providers.release()
        final = await bot.tg.wait_for_reply(ann, timeout=10, predicate=final_answer)
        assert final.message_id == first.message_id and final.edited
        assert len(bot.tg.messages(ann.id)) == 1
        # Answers arriving together share one edit (at most one per EDIT_GAP), not one each.
        assert 1 <= len(bot.tg.calls_to("editMessageText")) <= 3
        assert [b.text for b in final.buttons()] == ["🔄 Refresh"]
        text = final.text
        assert "ds-main · DeepSeek\n¥110.00 left" in text
        assert "router · OpenRouter\n$74.50 left\nused $25.50 of $100.00" in text
        due = noon_in(12).strftime("%Y-%m-%d")
        assert f"$1.98 left\nused $0.025 of $2.00\nexpires {due} · in 12 days" in text
        assert "gpt · OpenAI\nvalid — no balance API\n" in text
        assert "claude-org · Anthropic (Admin key)\n$11.24 spent this month" in text
        assert "⚠️ kimi · Moonshot (Kimi)\nThe provider had an error" in text
        assert "last known: ¥49.59, 2 h ago" in text
        assert "sf-slow · SiliconFlow\n¥88.88 left" in text
        # Totals per currency: only current BALANCE figures (not moonshot's last known,
        # not anthropic's spend), never mixing currencies.
        assert "Total left: ¥198.88 · $76.48" in text
        assert "<b>$74.50</b>" in final.raw_text
        for secret in ("sk-deepseek0123456789abcdef", "0123456789abcdef0123"):
            assert secret not in bot.tg.transcript()


async def test_fast_answer_is_a_single_new_message(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(2002, "Ann")
        await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ds")
        bot.providers.reply("/user/balance", json=DEEPSEEK)
        await bot.tg.send(ann, "/balance ds")
        reply = await bot.tg.wait_for_reply(ann)
        assert "¥110.00 left" in reply.text and not reply.edited
        assert "Total" not in reply.text  # one key: no totals line
        await bot.tg.assert_no_reply(ann)
        assert bot.tg.calls_to("editMessageText") == []


async def test_no_keys_and_unknown_label(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(2003, "Ann")
        await bot.tg.send(ann, "/balance")
        assert "/add" in (await bot.tg.wait_for_reply(ann)).text
        await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ds")
        await add(bot, ann.id, "sk-moonshot0123456789abcdefgh", "moonshot", "<kimi>")
        await bot.tg.send(ann, "/balance nope<&>")
        reply = await bot.tg.wait_for_reply(ann)
        assert reply.text == "No key named nope<&>. Your keys: ds, <kimi>"
        assert bot.providers.requests == []


async def test_split_at_key_boundaries(make_settings, monkeypatch) -> None:
    from bot.handlers import format as fmt

    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(2004, "Ann")
        for i in range(20):
            label = f"{i:02d}-<b>&\u05e9\u05dc\u05d5\u05dd-🚀-very-long-label-x"[:32]
            await add(bot, ann.id, f"sk-deepseek{i:02d}0123456789abcdef", "deepseek", label)
        bot.providers.reply("/user/balance", json=DEEPSEEK, delay=0.8)
        # Real limit: 20 keys with 32-character labels fit in one message.
        await bot.tg.send(ann, "/balance")
        await bot.tg.wait_for_reply(ann)  # "checking"
        whole = await bot.tg.wait_for_reply(ann, timeout=10, predicate=final_answer)
        assert whole.edited and whole.text.count("¥110.00 left") == 20
        assert len(whole.text) <= 4096
        # A smaller limit forces a split: first chunk edited in, the rest sent after it.
        bot.services.billing.clear_cache()
        monkeypatch.setattr(fmt, "MAX_MESSAGE", 400)
        await bot.tg.send(ann, "/balance")
        placeholder = await bot.tg.wait_for_reply(ann)
        assert "Checking 20 keys" in placeholder.text
        await bot.tg.wait_for_reply(ann, timeout=10, predicate=final_answer)
        await bot.tg.assert_no_reply(ann, within=1.0)
        chunks = [
            m
            for m in bot.tg.messages(ann.id)
            if m.message_id >= placeholder.message_id and not m.deleted
        ]
        first = chunks[0]
        assert first.message_id == placeholder.message_id and first.edited
        assert len(chunks) >= 3
        assert all(len(c.text) <= 400 for c in chunks)
        blocks = "\n\n".join(c.text for c in chunks)
        assert blocks.count("¥110.00 left") == 20  # no key lost or cut in half
        assert "Total left: ¥2,200.00" in chunks[-1].text
        assert bot.tg.errors == []


async def test_manual_checks_are_rate_limited(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        without_scheduled_sweep(bot)  # 15 paced replies outlast its first run
        ann = bot.tg.user(2005, "Ann")
        await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ds")
        bot.providers.reply("/user/balance", json=DEEPSEEK)
        replies = []
        for _ in range(15):
            bot.services.billing.clear_cache()  # defeat the 30 s cache: only the limit is left
            await bot.tg.send(ann, "/balance")
            replies.append(await bot.tg.wait_for_reply(ann))
        assert bot.providers.count("/user/balance") == 10
        assert all("¥110.00 left" in r.text for r in replies)  # served, never refused
        assert all("stored results" in r.text and "checked" in r.text for r in replies[10:])
        assert not any("stored results" in r.text for r in replies[:10])


async def test_hostile_labels_are_delivered_literally(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(2006, "Ann")
        # docs/security.md §T10's label, in the two halves that fit the 32-character limit.
        labels = ["<b>x</b> & <i>", '<a href="tg://user?id=1">y</a>', "💸 wallet 🚀", "מפתח-ראשי"]
        for i, label in enumerate(labels):
            await add(bot, ann.id, f"sk-deepseek{i}0123456789abcdef", "deepseek", label)
        bot.providers.reply("/user/balance", json=DEEPSEEK)
        await bot.tg.send(ann, "/balance")
        reply = await bot.tg.wait_for_reply(ann)
        from bot.services.keys import clean_label

        for label in labels:
            assert clean_label(label) in reply.text
        assert not any(e["type"] in ("text_link", "text_mention") for e in reply.entities)
        assert bot.tg.errors == []


async def test_unreadable_key_says_re_add(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(2007, "Ann")
        key_id = await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ds")
        from bot.storage.models import ApiKey

        async with bot.services.db.session() as s:
            row = await s.get(ApiKey, key_id)
            assert row is not None
            row.ciphertext = row.ciphertext[:-1] + bytes([row.ciphertext[-1] ^ 1])
        await bot.tg.send(ann, "/balance")
        reply = await bot.tg.wait_for_reply(ann)
        assert "⛔ ds · DeepSeek\nCan't decrypt this key, please re-add it." in reply.text
        assert bot.providers.requests == []


async def test_balance_in_chinese(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        li = bot.tg.user(2008, "Li", language_code="zh-hans")
        ids = await add_mix(bot, li.id)
        script_all(bot, relay_expires=noon_in(12), slow=0)
        await prime_failing(bot, li.id, ids["moon"])
        await bot.tg.send(li, "/balance")
        reply = await bot.tg.wait_for_reply(li, timeout=10, predicate=lambda m: "截至" in m.text)
        text = reply.text
        assert text.startswith("💰 余额")
        assert "剩余 ¥110.00" in text
        assert "还剩 12 天" in text
        assert "有效 — 无余额接口" in text
        assert "本月已消费 $11.24" in text
        assert "上次查询：¥49.59，2 小时前" in text
        assert "合计剩余：¥198.88 · $76.48" in text


def deepseek_usd(amount: str) -> dict[str, Any]:
    return {"is_available": True, "balance_infos": [{"currency": "USD", "total_balance": amount}]}


async def test_balance_right_after_a_top_up_shows_the_new_figure_and_its_time(
    make_settings,
) -> None:
    """Issue 12 item 1: an explicit check bypasses the 30 s result cache."""
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(2009, "Ann")
        await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ds")
        bot.providers.script(
            "/user/balance",
            [Reply(200, json=deepseek_usd("25")), Reply(200, json=deepseek_usd("40"))],
        )
        await bot.tg.send(ann, "/balance")
        before = await bot.tg.wait_for_reply(ann, predicate=answered)
        assert "$25.00 left" in before.text
        await bot.tg.send(ann, "/balance")  # topped up meanwhile, within the cache's 30 s
        after = await bot.tg.wait_for_reply(ann, predicate=answered)
        assert "$40.00 left" in after.text
        now = datetime.now(UTC).strftime("%H:%M")
        assert after.text.endswith(f"as of {now}") or "as of" in after.text.splitlines()[-1]
        await bot.tg.send(ann, "/keys")
        listing = await bot.tg.wait_for_reply(ann)
        assert "$40.00 · just now" in listing.text
        assert bot.providers.count("/user/balance") == 2


async def test_refresh_checks_the_same_keys_again_within_the_limit(make_settings) -> None:
    from bot.services.balances import ManualCheckLimiter

    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(2010, "Ann")
        await add(bot, ann.id, "sk-deepseek0123456789abcdef", "deepseek", "ds")
        await add(bot, ann.id, "sk-moonshot0123456789abcdefgh", "moonshot", "kimi")
        bot.providers.reply("/v1/users/me/balance", json=MOONSHOT)
        bot.providers.script(
            "/user/balance",
            [Reply(200, json=deepseek_usd("25")), Reply(200, json=deepseek_usd("40"))],
        )
        await bot.tg.send(ann, "/balance ds")  # one key: Refresh checks that key only
        answer = await bot.tg.wait_for_reply(ann, predicate=final_answer)
        assert "$25.00 left" in answer.text and "kimi" not in answer.text
        qid = await bot.tg.press(ann, answer.message_id, button_data(answer, "Refresh"))
        assert (await bot.tg.wait_for_answer(qid)).text == "🔄 Checking again…"
        again = await bot.tg.wait_for_reply(ann, predicate=final_answer)
        assert again.message_id == answer.message_id and again.edited
        assert "$40.00 left" in again.text and "kimi" not in again.text
        assert bot.providers.count("/v1/users/me/balance") == 0
        # Over the manual-check limit: a clear answer, and the figures stay as they were.
        bot.services.balances.limiter = ManualCheckLimiter(limit=1)
        assert bot.services.balances.limiter.allow(ann.id)
        qid = await bot.tg.press(ann, answer.message_id, button_data(answer, "Refresh"))
        toast = await bot.tg.wait_for_answer(qid)
        assert toast.show_alert and toast.text is not None
        assert "Many checks in a short time. Try again in" in toast.text
        await bot.tg.assert_no_reply(ann, within=0.8)
        assert bot.providers.count("/user/balance") == 2
        # Another user's forged Refresh for Ann's key finds nothing.
        bob = bot.tg.user(2011, "Bob")
        await add(bot, bob.id, "sk-deepseek9123456789abcdef", "deepseek", "bob")
        await bot.tg.send(bob, "/balance")
        bobs = await bot.tg.wait_for_reply(bob, predicate=final_answer)
        [ann_key] = [k for k in await bot.services.keys.list(ann.id) if k.label == "ds"]
        qid = await bot.tg.press(bob, bobs.message_id, f"bal:r:{ann_key.id}", strict=False)
        assert "not found" in ((await bot.tg.wait_for_answer(qid)).text or "")
        assert bot.tg.errors == []


async def quiet(bot: RunningBot, user: Any) -> None:
    """Until the bot has sent or edited nothing in this chat for a moment."""
    while True:
        try:
            await bot.tg.wait_for_reply(user, timeout=0.7)
        except AssertionError:
            return


async def test_refresh_under_a_long_answer_answers_anew(make_settings, monkeypatch) -> None:
    """The Refresh button sits on the last part of a split answer: the new answer is sent
    below it (whole), not squeezed into that part."""
    from bot.handlers import format as fmt

    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(2012, "Ann")
        for i in range(6):
            await add(bot, ann.id, f"sk-deepseek{i:02d}0123456789abcdef", "deepseek", f"key-{i}")
        bot.providers.reply("/user/balance", json=DEEPSEEK)
        monkeypatch.setattr(fmt, "MAX_MESSAGE", 200)
        await bot.tg.send(ann, "/balance")
        await quiet(bot, ann)
        before = bot.tg.messages(ann.id)
        last = before[-1]
        assert len(before) >= 2 and "as of" in last.text and not last.text.startswith("💰")
        await bot.tg.press(ann, last.message_id, button_data(last, "Refresh"))
        await quiet(bot, ann)
        after = bot.tg.messages(ann.id)
        new = after[len(before) :]
        assert len(new) == len(before) and new[0].text.startswith("💰 Balances")
        assert "as of" in new[-1].text and [b.text for b in new[-1].buttons()] == ["🔄 Refresh"]
        assert after[len(before) - 1].buttons() == []  # the old Refresh is gone
        assert bot.tg.errors == []
