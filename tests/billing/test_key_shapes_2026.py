"""Key-shape detection for the 2026 providers: only unambiguous prefixes claim a key."""

from __future__ import annotations

import pytest

from bot.billing.detect import detect
from bot.billing.providers.base import Match
from bot.billing.registry import default_registry

NEW = ("zhipu", "zai", "minimax", "kimi-code", "deepinfra", "vercel", "poe", "fal", "elevenlabs")


@pytest.mark.parametrize(
    "key", ["sk-api-AbCdEf0123456789abcdef0123456789", "sk-cp-AbCdEf0123456789abcdef0123456789"]
)
def test_minimax_prefixes_are_certain(key: str) -> None:
    registry = default_registry()
    assert registry["minimax"].detect(key) is Match.CERTAIN
    assert [p.id for p in detect(key, None, registry.values())] == ["minimax"]


@pytest.mark.parametrize(
    "key",
    [
        "sk-0123456789abcdef0123456789abcdef",  # bare sk-: ambiguous, none of these claim it
        "0123456789abcdef0123456789abcdef.AbCdEfGhIjKlMnOp",  # Zhipu id.secret
        "12345678-1234-1234-1234-123456789abc:0123456789abcdef0123456789abcdef",  # fal
        "sk_0123456789abcdef0123456789abcdef0123456789abcdef",  # ElevenLabs
    ],
)
def test_other_new_providers_never_guess(key: str) -> None:
    registry = default_registry()
    assert all(registry[pid].detect(key) is Match.NO for pid in NEW)
