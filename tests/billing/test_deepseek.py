"""deepseek: detection of bare `sk-` keys."""

from __future__ import annotations

import pytest

from bot.billing.providers.base import Match
from bot.billing.providers.deepseek import PROVIDER
from bot.billing.providers.stepfun import PROVIDER as STEPFUN


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ("sk-0123456789abcdef0123456789abcdef", Match.POSSIBLE),
        ("sk-" + "A1" * 24, Match.POSSIBLE),
        ("sk-" + "a" * 20 + "T3BlbkFJ" + "b" * 20, Match.NO),  # a real OpenAI key
        ("sk-or-v1-" + "0" * 64, Match.NO),
        ("sk-ant-admin01-abc", Match.NO),
        ("sess-abc", Match.NO),
        ("xai-abc", Match.NO),
    ],
)
def test_detect_bare_sk(key: str, match: Match) -> None:
    assert PROVIDER.detect(key) is match
    assert STEPFUN.detect(key) is match
