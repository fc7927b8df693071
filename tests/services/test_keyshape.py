"""What counts as a key (bot/services/keyshape.py): validation for /add, detection in free text."""

from __future__ import annotations

import secrets

import pytest

from bot.billing.registry import default_registry
from bot.services.keys import InvalidKey, clean_key
from bot.services.keyshape import KeyProblem, key_problem, looks_like_key, provider_claims

#: What the bot passes in: the registry the billing service was built with (here without
#: a PROVIDERS_FILE, whose providers carry no key shape anyway).
BUNDLED = default_registry().values()


def rand(n: int) -> str:
    return secrets.token_urlsafe(n)[:n]


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", KeyProblem.EMPTY),
        ("   ", KeyProblem.EMPTY),
        ("hello world", KeyProblem.SPACES),
        ("hello", KeyProblem.TOO_SHORT),
        ("sk-abc", KeyProblem.TOO_SHORT),
        ("helloworldhelloworldhello", KeyProblem.SHAPE),  # long, but nothing random about it
        ("HELLO-WORLD-HELLO-WORLD", KeyProblem.SHAPE),
        ("sk-" + "é" * 30, KeyProblem.CHARACTERS),  # a header cannot carry it
        ("sk-abcdefgh" + "ключ" + "12345678", KeyProblem.CHARACTERS),
        ("sk-" + "a" * 20 + "\u200b", KeyProblem.CHARACTERS),  # zero-width space inside
        ("这是一个很长的中文句子不是密钥这是一个很长的中文句子", KeyProblem.CHARACTERS),
        ("sk-" + "a1" * 300, KeyProblem.TOO_LONG),
    ],
)
def test_things_that_cannot_be_keys(raw: str, problem: KeyProblem) -> None:
    assert key_problem(raw, BUNDLED) is problem
    with pytest.raises(InvalidKey) as info:
        clean_key(raw, BUNDLED)
    assert info.value.problem is problem


@pytest.mark.parametrize(
    "raw",
    [
        "sk-" + secrets.token_hex(24),  # bare sk- (DeepSeek, Moonshot, relays …)
        "sk-or-v1-" + secrets.token_hex(32),
        "sk-proj-" + rand(40),
        "sk-ant-admin01-" + rand(40),
        "sk-api-" + rand(40),  # MiniMax
        "sk-cp-" + rand(40),  # MiniMax Token Plan
        "sess-" + rand(40),
        "xai-" + rand(80),  # xAI
        "cr_" + secrets.token_hex(32),  # claude-relay-service
        "AIza" + rand(35),  # Gemini
        "AQ." + rand(50),  # Gemini (newer shape)
        secrets.token_hex(16),  # unprefixed hex (DeepInfra-style)
        rand(43),  # unprefixed base64url (Poe-style)
        f"{secrets.token_hex(16)}.{rand(16)}",  # id.secret (Zhipu-style)
        "sk-aaaaaaaaaaaaaaaaaaaaaaaaaaaa",  # a provider claims the prefix: accepted as written
    ],
)
def test_real_looking_keys_are_accepted(raw: str) -> None:
    assert key_problem(raw, BUNDLED) is None
    assert clean_key(f"  {raw}\n", BUNDLED).reveal() == raw


def test_every_provider_prefix_is_asked_through_the_registry() -> None:
    """No second list: a provider's own detect() is what makes its prefix known."""
    registry = default_registry()
    claimed = {p.id for p in registry.values() if p.detect("sk-" + "Ab1" * 10).name != "NO"}
    assert claimed  # bare sk-: several providers claim it
    assert provider_claims("SK-" + "Ab1" * 10, BUNDLED)  # pasted in capitals
    assert not provider_claims("zz-" + "Ab1" * 10, BUNDLED)
    # a provider that claims nothing is never asked for more than its detect()
    assert not provider_claims("sk-" + "Ab1" * 10, providers=[])


@pytest.mark.parametrize(
    "text",
    [
        "here is mine sk-" + secrets.token_hex(20),
        "SK-" + secrets.token_hex(20).upper(),  # capitals
        "Sk-" + secrets.token_hex(20),
        "my key: " + secrets.token_hex(20),  # unprefixed, 40 hex
        rand(43),  # unprefixed base64url
        "key=" + "sk-" + secrets.token_hex(20),
        "auth:sk-" + secrets.token_hex(20),
        "sess-" + rand(30),
        "sk-api-" + rand(30),
        "sk-cp-" + rand(30),
        "XAI-" + rand(30),
        "please check cr_" + secrets.token_hex(16),
        "AIza" + rand(35),
        "sk-or-v1-" + secrets.token_hex(8),
        "sk-ant-" + rand(40),
        f"{secrets.token_hex(16)}.{rand(16)}",
        "the key is sk-" + secrets.token_hex(20) + ".",
    ],
)
def test_keys_in_free_text_are_found(text: str) -> None:
    assert looks_like_key(text, BUNDLED)


@pytest.mark.parametrize(
    "text",
    [
        None,
        "",
        "hello world",
        "work",
        "my-work-key",
        "openai-prod-2024-backup",  # a label, not a key
        "MyWorkKey2024Production",
        "sk-short",
        "see https://relay.example.com/v1/dashboard/billing/subscription2024abcdef",
        "https://github.com/owner/repo/commit/" + secrets.token_hex(20),
        "Supercalifragilisticexpialidocious-and-more-words",
        "给我看看余额，谢谢！",
    ],
)
def test_ordinary_text_is_not_a_key(text: str | None) -> None:
    assert not looks_like_key(text, BUNDLED)
