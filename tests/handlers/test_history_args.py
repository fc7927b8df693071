"""/history's arguments: one label rule with spaces (bot/services/keys.py split_label), the
period last, and which mistake gets which answer."""

from __future__ import annotations

import pytest

from bot.handlers.history import parse_args

LABELS = ["my-work-key", "backup-7d", "主力", "ds"]


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ([], (None, "30d", None)),
        (["90d"], (None, "90d", None)),
        (["ds"], ("ds", "30d", None)),
        (["DS", "7D"], ("ds", "7d", None)),
        (["my", "work", "key"], ("my-work-key", "30d", None)),
        (["my", "work", "key", "7d"], ("my-work-key", "7d", None)),
        (["主力", "90d"], ("主力", "90d", None)),
        # No key `backup`: the words name backup-7d, over the default period.
        (["backup", "7d"], ("backup-7d", "30d", None)),
        (["backup-7d", "7d"], ("backup-7d", "7d", None)),
        # A key, then words that are no period: the usage text.
        (["ds", "14d"], (None, "30d", "usage")),
        (["my", "work", "key", "please"], (None, "30d", "usage")),
        (["14d"], (None, "30d", "usage")),
        # No key named at all.
        (["nope"], (None, "30d", "label")),
        (["my", "work", "7d"], (None, "30d", "label")),
    ],
)
def test_label_with_spaces_then_period(words: list[str], expected: tuple[object, ...]) -> None:
    assert parse_args(LABELS, words) == expected
