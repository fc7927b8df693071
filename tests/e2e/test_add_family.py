"""/add finds a self-hosted site's software from the site itself (issue 14, the /add wiring).

`/add <key> url=<base>` without `provider=` — and the guided "Detect from the site's
address" — first ask the site which software it runs, *without the key* (the billing
level's `detect_family`, through the SSRF guard; one test per family lives with it in
tests/billing), then check the key with the provider found. `provider=` always wins. A site
that matches no family is asked about with buttons, and nothing is saved until the user
answers.
"""

from __future__ import annotations

from aiohttp import web

from tests.e2e.harness import RunningBot, running_bot
from tests.e2e.test_add import (
    assert_nowhere,
    canary,
    choose,
    deletions_of,
    flow_row,
    press,
    reply,
    script_relay,
    stored_keys,
)
from tests.fakes.provider_server import Reply

PROBE_ONLY = ("/api/status", "/health", "/health/liveliness", "/key/info")


def sub2api_site(bot: RunningBot) -> None:
    """A sub2api site at the fake's root: /v1/usage refuses without a key, answers with one."""

    def usage(request: web.Request) -> Reply:
        if not request.headers.get("Authorization"):
            return Reply(401, json={"code": "API_KEY_REQUIRED", "message": "API key is required"})
        return Reply(200, json={"isValid": True, "planName": "钱包余额", "remaining": 12.5,
                                "unit": "USD"})  # fmt: skip

    bot.providers.handle("/v1/usage", usage)


def keyless_until_found(bot: RunningBot) -> None:
    """Every request before the first one carrying the key carried no credential at all."""
    seen = bot.providers.requests
    first_keyed = next(i for i, r in enumerate(seen) if r.authorization)
    assert first_keyed > 0, "the site was not asked before the key was sent"
    for r in seen[:first_keyed]:
        assert not r.authorization and "x-api-key" not in {h.lower() for h in r.headers}


async def test_one_line_url_finds_the_software_then_checks_the_key(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        sub2api_site(bot)
        ann = bot.tg.user(1001, "Ann")
        key = canary()
        mid = await bot.tg.send(ann, f"/add {key} url={bot.providers.url}")
        done = await reply(bot, ann)
        assert "The site runs sub2api" in done.text
        assert "Saved sub2api" in done.text and "12.50" in done.text
        assert deletions_of(bot, ann.id, mid) == 1
        [row] = await stored_keys(bot, ann.id)
        assert (row.provider, row.base_url) == ("sub2api", bot.providers.url)
        keyless_until_found(bot)
        await assert_nowhere(bot, key)


async def test_provider_given_means_no_probing(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        sub2api_site(bot)
        ann = bot.tg.user(1001, "Ann")
        key = canary()
        await bot.tg.send(ann, f"/add {key} url={bot.providers.url} provider=sub2api")
        done = await reply(bot, ann)
        assert "Saved sub2api" in done.text and "The site runs" not in done.text
        assert not any(r.path in PROBE_ONLY for r in bot.providers.requests)
        assert all(r.authorization for r in bot.providers.requests)  # only the check itself


async def test_a_site_matching_no_family_is_asked_about_and_nothing_is_saved(
    make_settings,
) -> None:
    async with running_bot(make_settings) as bot:
        script_relay(bot)  # answers a relay's billing routes, but says nothing about itself
        ann = bot.tg.user(1001, "Ann")
        key = canary()
        await bot.tg.send(ann, f"/add {key} home url={bot.providers.url}")
        ask = await reply(bot, ann)
        assert "Which software runs that site?" in ask.text and "Nothing is saved" in ask.text
        titles = [b.text for b in ask.buttons()]
        assert {
            "OpenAI-compatible relay",
            "sub2api",
            "claude-relay-service",
            "LiteLLM proxy",
        } <= set(titles)
        assert await stored_keys(bot, ann.id) == []
        row = await flow_row(bot, ann.id)
        assert row is not None and row.step == "pick" and row.sealed is not None
        assert not any(r.authorization for r in bot.providers.requests)  # the key stayed home
        await press(bot, ann, ask, "OpenAI-compatible relay")
        done = await reply(bot, ann)
        assert "Saved home" in done.text and "4.20" in done.text
        [stored] = await stored_keys(bot, ann.id)
        assert (stored.provider, stored.base_url) == ("relay", bot.providers.url)
        await assert_nowhere(bot, key)


async def test_guided_detect_from_the_site_address(make_settings) -> None:
    async with running_bot(make_settings) as bot:
        sub2api_site(bot)
        ann = bot.tg.user(1001, "Ann")
        await bot.tg.send(ann, "/add")
        await choose(bot, ann, await reply(bot, ann), "Self-hosted", "Detect from the site")
        assert "base URL" in (await reply(bot, ann)).text
        await bot.tg.send(ann, bot.providers.url)
        named = await reply(bot, ann)
        assert "The site runs sub2api" in named.text and "name" in named.text
        assert not any(r.authorization for r in bot.providers.requests)
        await press(bot, ann, named, "Skip")
        assert "key" in (await reply(bot, ann)).text
        key = canary()
        await bot.tg.send(ann, key)
        done = await reply(bot, ann)
        assert "Saved sub2api" in done.text and "12.50" in done.text
        await assert_nowhere(bot, key)
