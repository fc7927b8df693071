"""Alert messages and the /alerts views show the state the user is in, with the buttons
that still make sense (issue 12 items 9 and 10, and what a user would expect beyond)."""

from __future__ import annotations

from bot.secret import Secret
from tests.alerts.test_e2e import LOW, add_key, bot_with_balances, service, sweeper
from tests.e2e.harness import running_bot
from tests.fakes.telegram_api import button_data


def texts(message) -> list[str]:  # type: ignore[no-untyped-def]
    return [b.text for b in message.buttons()]


async def test_mute_changes_the_alert_and_recovered_has_only_what_applies(make_settings) -> None:
    async with bot_with_balances(make_settings, alert_interval_seconds=3600) as (bot, bal):
        ann = bot.tg.user(2501, "Ann", started=True)
        secret = "sk-view00000000000000001"
        key_id = await add_key(bot, ann.id, secret, label="main")
        await service(bot).set_thresholds(ann.id, [key_id], ["50"])
        bal.amounts[secret] = "10"
        await sweeper(bot).run()
        alert = await bot.tg.wait_for_reply(ann)

        qid = await bot.tg.press(ann, alert.message_id, button_data(alert, "Mute"))
        assert "Muted until" in ((await bot.tg.wait_for_answer(qid)).text or "")
        muted = await bot.tg.wait_for_reply(ann)
        assert muted.message_id == alert.message_id
        assert "🔕 muted until" in muted.text and "is running low" in muted.text
        assert "🔔 Unmute" in texts(muted) and "🔕 Mute 24 h" not in texts(muted)

        qid = await bot.tg.press(ann, alert.message_id, button_data(muted, "Unmute"))
        await bot.tg.wait_for_answer(qid)
        unmuted = await bot.tg.wait_for_reply(ann)
        assert "muted until" not in unmuted.text and "🔕 Mute 24 h" in texts(unmuted)

        bal.amounts[secret] = "80"
        qid = await bot.tg.press(ann, alert.message_id, button_data(unmuted, "topped"))
        await bot.tg.wait_for_answer(qid)
        edited = await bot.tg.wait_for_reply(ann, predicate=lambda m: m.edited)
        assert "💳 I topped up" not in texts(edited)  # pressed: it has done its job
        await bot.tg.wait_for_reply(ann, predicate=lambda m: "Thanks" in (m.text or ""))
        recovered = await bot.tg.wait_for_reply(
            ann, timeout=10, predicate=lambda m: "back above" in (m.text or "")
        )
        assert texts(recovered) == ["🔄 Check now", "⚙️ Change threshold"]
        # The alert names the provider and links to its top-up page.
        assert alert.text.startswith("⚠️ main · DeepSeek sk-…0001 is running low: $10.00 left")
        [top_up] = [b for b in alert.buttons() if b.url]
        assert top_up.text == "💳 Top up" and top_up.url == "https://platform.deepseek.com/top_up"
        assert bot.tg.errors == []


async def test_the_alerts_view_from_a_key_card_goes_back_to_it(make_settings) -> None:
    async with bot_with_balances(make_settings, alert_interval_seconds=3600) as (bot, bal):
        ann = bot.tg.user(2502, "Ann", started=True)
        secret = "sk-view00000000000000002"
        await add_key(bot, ann.id, secret, label="main")
        bal.amounts[secret] = "10"
        await bot.tg.send(ann, "/keys")
        listing = await bot.tg.wait_for_reply(ann)
        await bot.tg.press(ann, listing.message_id, button_data(listing, "main"))
        card = await bot.tg.wait_for_reply(ann)
        await bot.tg.press(ann, card.message_id, button_data(card, "Alerts"))
        view = await bot.tg.wait_for_reply(ann)
        assert view.message_id == card.message_id and "low balance: off" in view.text
        # Mute in the view keeps the view (and its way back).
        await bot.tg.press(ann, view.message_id, button_data(view, "Mute"))
        view = await bot.tg.wait_for_reply(ann)
        assert "🔕 muted until" in view.text and "« Back" in texts(view)
        await bot.tg.press(ann, view.message_id, button_data(view, "« Back"))
        again = await bot.tg.wait_for_reply(ann)
        assert again.message_id == card.message_id and "added" in again.text
        assert "🔄 Check now" in texts(again)
        assert bot.tg.errors == []


async def test_overview_hides_rules_that_cannot_apply_and_keeps_the_syntax_a_tap_away(
    make_settings,
) -> None:
    async with running_bot(make_settings) as bot:
        ann = bot.tg.user(2503, "Ann")
        await bot.services.keys.add(
            ann.id, Secret("sk-deepseek0123456789abcdef"), "deepseek", label="ds"
        )
        await bot.services.keys.add(
            ann.id, Secret("sk-proj-abcdefghijT3BlbkFJabcdefghij0123"), "openai", label="gpt"
        )
        await bot.tg.send(ann, "/alerts")
        overview = await bot.tg.wait_for_reply(ann)
        ds, gpt = overview.text.split("\n\n")[1].split("\ngpt")
        assert "low balance: off" in ds and "runs-out forecast" in ds
        assert "low balance" not in gpt and "forecast" not in gpt and "expiry ✓" in gpt
        assert "/alerts LABEL 50" not in overview.text  # the syntax is behind a button
        await bot.tg.press(ann, overview.message_id, button_data(overview, "How to set"))
        how = await bot.tg.wait_for_reply(ann)
        assert how.message_id == overview.message_id and "/alerts LABEL 50" in how.text
        await bot.tg.press(ann, how.message_id, button_data(how, "« Back"))
        back = await bot.tg.wait_for_reply(ann)
        assert back.text == overview.text
        # A validity-only key's own view offers no threshold or low-balance buttons.
        await bot.tg.press(ann, back.message_id, button_data(back, "gpt"))
        view = await bot.tg.wait_for_reply(ann)
        assert texts(view) == ["🔄 Check now", "🔕 Mute 24 h", "« Back"]
        assert bot.tg.errors == []


async def test_alerts_name_the_provider_in_chinese(make_settings) -> None:
    async with bot_with_balances(make_settings, alert_interval_seconds=3600) as (bot, bal):
        li = bot.tg.user(2504, "Li", language_code="zh-hans", started=True)
        await bot.tg.send(li, "/start")  # remembers the language for alerts
        await bot.tg.wait_for_reply(li)
        secret = "sk-view00000000000000004"
        key_id = await add_key(bot, li.id, secret, label="main")
        await service(bot).set_thresholds(li.id, [key_id], ["50"])
        bal.amounts[secret] = "10"
        await sweeper(bot).run()
        alert = await bot.tg.wait_for_reply(li, predicate=lambda m: "余额不足" in (m.text or ""))
        assert alert.text.startswith("⚠️ main · DeepSeek sk-…0004 余额不足")
        assert "💳 充值" in texts(alert)
        assert LOW not in alert.text
