"""/remove, /forget, /lang, /tz, forged callbacks and the fallbacks, end to end."""

from __future__ import annotations

from sqlalchemy import func, select

from bot.billing.models import BalanceResult, CheckOutcome, FigureKind
from bot.handlers import callbacks
from bot.secret import Secret
from bot.storage.flows import FlowRow
from bot.storage.models import ApiKey, KeyStatus
from bot.storage.repositories import UserRepo
from tests.e2e.harness import RunningBot, running_bot
from tests.e2e.test_add import canary, flow_row, reply, stored_keys
from tests.fakes.telegram_api import BotMessage, FakeUser, button_data


async def edited(bot: RunningBot, user: FakeUser) -> BotMessage:
    return await bot.tg.wait_for_reply(user, predicate=lambda m: m.edited)


async def add_key(bot: RunningBot, user_id: int, label: str, provider: str = "deepseek") -> str:
    added = await bot.services.keys.add(user_id, Secret(canary()), provider, label=label)
    return added.key.id


async def count(bot: RunningBot, model: type, **where: int) -> int:
    stmt = select(func.count()).select_from(model)
    for name, value in where.items():
        stmt = stmt.where(getattr(model, name) == value)
    async with bot.services.db.session() as s:
        return int(await s.scalar(stmt) or 0)


# -- /remove ----------------------------------------------------------------------------------


async def test_remove_asks_then_deletes(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann")
        await add_key(bot, ann.id, "work")
        await add_key(bot, ann.id, "home")
        await bot.tg.send(ann, "/remove work")
        ask = await reply(bot, ann)
        assert "Delete the key work" in ask.text
        qid = await bot.tg.press(ann, ask.message_id, button_data(ask, "Keep"))
        await bot.tg.wait_for_answer(qid)
        assert "Kept work" in (await edited(bot, ann)).text
        assert len(await stored_keys(bot, ann.id)) == 2
        await bot.tg.send(ann, "/remove work")
        ask = await reply(bot, ann)
        await bot.tg.press(ann, ask.message_id, button_data(ask, "Delete"))
        assert "Deleted work" in (await edited(bot, ann)).text
        assert [k.label for k in await stored_keys(bot, ann.id)] == ["home"]


async def test_remove_unknown_label_lists_keys(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/remove work")
        assert "no keys yet" in (await reply(bot, ann)).text
        await add_key(bot, ann.id, "home")
        await bot.tg.send(ann, "/remove <b>work</b>")
        answer = await reply(bot, ann)
        assert "no key named <b>work</b>" in answer.text and "home" in answer.text
        await bot.tg.send(ann, "/remove")
        assert [b.text for b in (await reply(bot, ann)).buttons()] == ["🗑 home"]
        assert bot.tg.errors == []


async def test_remove_without_a_label_offers_the_keys_as_buttons(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann, bob = bot.tg.user(1001, "Ann"), bot.tg.user(1002, "Bob")
        await add_key(bot, ann.id, "work")
        await add_key(bot, ann.id, "home")
        await bot.tg.send(ann, "/remove")
        pick = await reply(bot, ann)
        assert pick.text.startswith("Which key should I delete?")
        assert [b.text for b in pick.buttons()] == ["🗑 work", "🗑 home"]
        # Bob replaying Ann's button finds nothing of hers.
        await bot.tg.send(bob, "/help")
        bobs = await reply(bot, bob)
        qid = await bot.tg.press(bob, bobs.message_id, button_data(pick, "work"), strict=False)
        assert "Not found" in ((await bot.tg.wait_for_answer(qid)).text or "")
        # Ann's press asks first, as /remove LABEL does; nothing is deleted before "Delete".
        await bot.tg.press(ann, pick.message_id, button_data(pick, "work"))
        ask = await edited(bot, ann)
        assert "Delete the key work" in ask.text and len(await stored_keys(bot, ann.id)) == 2
        await bot.tg.press(ann, ask.message_id, button_data(ask, "Delete"))
        assert "Deleted work" in (await edited(bot, ann)).text
        assert [k.label for k in await stored_keys(bot, ann.id)] == ["home"]
        assert bot.tg.errors == []


async def test_other_user_cannot_remove_or_forget_by_replaying_buttons(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann, bob = bot.tg.user(1001, "Ann"), bot.tg.user(1002, "Bob")
        await add_key(bot, ann.id, "work")
        await bot.tg.send(ann, "/remove work")
        ask = await reply(bot, ann)
        delete_data = button_data(ask, "Delete")
        await bot.tg.send(ann, "/forget")
        forget_data = button_data(await reply(bot, ann), "Delete everything")
        await bot.tg.send(ann, "/add")
        add_data = button_data(await reply(bot, ann), "DeepSeek")
        await bot.tg.send(bob, "/help")
        bobs = await reply(bot, bob)
        # Bob replays Ann's buttons on a message in his own chat.
        for data in (delete_data, forget_data, add_data, "acc:rm:nonsense", "add:p"):
            qid = await bot.tg.press(bob, bobs.message_id, data, strict=False)
            answer = await bot.tg.wait_for_answer(qid)
            assert answer.text and ("Not found" in answer.text or "expired" in answer.text)
        # Bob also forges a key id of Ann's directly.
        [ann_key] = await stored_keys(bot, ann.id)
        forged = callbacks.encode("acc", "rm", ann_key.id)
        qid = await bot.tg.press(bob, bobs.message_id, forged, strict=False)
        assert "Not found" in (await bot.tg.wait_for_answer(qid)).text
        assert len(await stored_keys(bot, ann.id)) == 1
        flow = await flow_row(bot, ann.id)
        assert flow is not None and flow.step == "provider"  # Ann's /add untouched
        async with bot.services.db.session() as s:
            assert await UserRepo(s).get(ann.id) is not None


# -- /forget ----------------------------------------------------------------------------------


async def test_forget_deletes_everything_and_says_what(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann, bob = bot.tg.user(1001, "Ann"), bot.tg.user(1002, "Bob")
        k1 = await add_key(bot, ann.id, "work")
        await add_key(bot, ann.id, "home")
        bobs_key = await add_key(bot, bob.id, "bob")
        result = BalanceResult(provider="deepseek", kind=FigureKind.BALANCE)
        await bot.services.balances.record(ann.id, [CheckOutcome(k1, "deepseek", result=result)])
        await bot.tg.send(ann, "/lang zh")
        await reply(bot, ann)
        await bot.tg.send(ann, "/add")  # an open flow is forgotten too
        await reply(bot, ann)
        await bot.tg.send(ann, "/forget")
        ask = await reply(bot, ann)
        assert "2" in ask.text
        await bot.tg.press(ann, ask.message_id, button_data(ask, "全部删除"))
        done = await edited(bot, ann)
        assert "2" in done.text
        assert await count(bot, ApiKey, owner_id=ann.id) == 0
        assert await count(bot, KeyStatus, owner_id=ann.id) == 0
        assert await count(bot, FlowRow, user_id=ann.id) == 0
        async with bot.services.db.session() as s:
            assert await UserRepo(s).get(ann.id) is None
        assert [k.id for k in await stored_keys(bot, bob.id)] == [bobs_key]


async def test_forget_cancel_keeps_everything(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann")
        await add_key(bot, ann.id, "work")
        await bot.tg.send(ann, "/forget")
        ask = await reply(bot, ann)
        await bot.tg.press(ann, ask.message_id, button_data(ask, "Cancel"))
        assert "Nothing was deleted" in (await edited(bot, ann)).text
        assert len(await stored_keys(bot, ann.id)) == 1


# -- /lang, /tz -------------------------------------------------------------------------------


async def test_lang_switches_replies(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann", language_code="en")
        await bot.tg.send(ann, "/lang zh")
        assert "中文回复" in (await reply(bot, ann)).text
        await bot.tg.send(ann, "/help")
        assert "命令" in (await reply(bot, ann)).text
        await bot.tg.send(ann, "/add")
        assert "添加" in (await reply(bot, ann)).text
        await bot.tg.send(ann, "/lang")
        menu = await reply(bot, ann)
        await bot.tg.press(ann, menu.message_id, button_data(menu, "English"))
        assert "English" in (await edited(bot, ann)).text
        await bot.tg.send(ann, "/help")
        assert "Commands" in (await reply(bot, ann)).text
        await bot.tg.send(ann, "/lang fr")
        assert "/lang en" in (await reply(bot, ann)).text


async def test_tz_validates_zone(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/tz")
        assert "UTC" in (await reply(bot, ann)).text
        await bot.tg.send(ann, "/tz asia/shanghai")
        assert "Asia/Shanghai" in (await reply(bot, ann)).text
        await bot.tg.send(ann, "/tz Mars/Base")
        assert "don't know" in (await reply(bot, ann)).text
        await bot.tg.send(ann, "/tz ../../etc/passwd")
        assert "don't know" in (await reply(bot, ann)).text
        profile = await bot.services.users.touch(ann.id)
        assert profile.timezone == "Asia/Shanghai"
        await bot.tg.send(ann, "/tz")
        assert "Asia/Shanghai" in (await reply(bot, ann)).text


async def test_account_commands_in_groups_point_to_private(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(1001, "Ann")
        await add_key(bot, ann.id, "work")
        await bot.tg.send(ann, "/remove work", chat_type="group")
        answer = await reply(bot, -100)
        assert "private" in answer.text and "work" not in answer.text
        assert len(await stored_keys(bot, ann.id)) == 1


# -- fallbacks --------------------------------------------------------------------------------


async def test_fallbacks_never_crash(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        ann, bob = bot.tg.user(1001, "Ann"), bot.tg.user(1002, "Bob")
        await bot.tg.send(ann, "/nope")
        assert "/help" in (await reply(bot, ann)).text
        await bot.tg.send(ann, "hello")
        assert "/help" in (await reply(bot, ann)).text
        for media in ("sticker", "photo", "document"):
            await bot.tg.send(ann, None, media=media)  # type: ignore[arg-type]
            assert "/help" in (await reply(bot, ann)).text
        await bot.tg.send(ann, "x" * 5000)
        assert "/help" in (await reply(bot, ann)).text
        await bot.tg.send(ann, "look at this", forward_from=bob)
        assert "/help" in (await reply(bot, ann)).text
        await bot.tg.send(ann, "typo", edited=True)  # an edit of "look at this"
        await bot.tg.assert_no_reply(ann)
        key = canary()
        mid = await bot.tg.send(ann, "hello again")
        await reply(bot, ann)
        await bot.tg.send(ann, f"oops {key}", edited=mid)
        assert "deleted" in (await reply(bot, ann)).text
        assert (ann.id, mid) in bot.tg.deleted
        qid = await bot.tg.press(ann, mid - 1, "zzz:unknown", strict=False)
        assert "expired" in ((await bot.tg.wait_for_answer(qid)).text or "")
        key2 = canary("sess-")
        await bot.tg.send(ann, f"photo of my key {key2}", media="photo")
        assert "/add" in (await reply(bot, ann)).text
        assert bot.tg.errors == []
        assert "Something went wrong" not in bot.tg.transcript()
        assert key not in bot.tg.transcript() and key2 not in bot.tg.transcript()
