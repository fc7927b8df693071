"""Every provider's own words (button hints, explanations) exist in Chinese too."""

from __future__ import annotations

import re

import pytest

from bot.billing.errors import ErrorKind
from bot.billing.registry import default_registry
from bot.i18n import translator

PLACEHOLDER = re.compile(r"\{[a-z_]+\}")


@pytest.mark.parametrize("provider_id", sorted(default_registry()))
def test_hint_and_explanations_are_translated(provider_id: str) -> None:
    provider = default_registry()[provider_id]
    zh = translator("zh")
    assert zh(provider.hint) != provider.hint, f"{provider_id}: hint has no Chinese"
    for topic, text in provider.explanations.items():
        assert zh(text) != text, f"{provider_id}: explanation {topic!r} has no Chinese"
        assert PLACEHOLDER.findall(zh(text)) == PLACEHOLDER.findall(text)


def test_explanation_topics_are_error_kinds_or_hints() -> None:
    """A typo in a topic would silently never be shown: keys are ErrorKind values or
    short snake_case hint names."""
    kinds = {k.value for k in ErrorKind}
    for provider in default_registry().values():
        for topic in provider.explanations:
            assert topic in kinds or re.fullmatch(r"[a-z][a-z0-9_]{2,40}", topic), topic
