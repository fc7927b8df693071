"""One rule for naming a key in /balance, /remove and /alerts."""

from __future__ import annotations

from bot.services.keys import match_label

LABELS = ["deepseek", "My-Key", "工作"]


def test_exact_cleaned_and_case_insensitive() -> None:
    assert match_label(LABELS, "deepseek") == "deepseek"
    assert match_label(LABELS, "  deepseek ") == "deepseek"
    assert match_label(LABELS, "My Key") == "My-Key"  # as /add would have stored it
    assert match_label(LABELS, "my-key") == "My-Key"
    assert match_label(LABELS, "DEEPSEEK") == "deepseek"
    assert match_label(LABELS, "工作") == "工作"


def test_unknown_or_invalid_is_none() -> None:
    assert match_label(LABELS, "openai") is None
    assert match_label(LABELS, "") is None
    assert match_label(LABELS, "x\x00y") is None


def test_a_label_with_spaces_in_front_of_more_words() -> None:
    from bot.services.keys import split_label

    labels = ["my-work-key", "my", "ds"]
    assert split_label(labels, ["my", "work", "key", "2"]) == ("my-work-key", ["2"])
    assert split_label(labels, ["my", "2"]) == ("my", ["2"])
    assert split_label(labels, ["DS", "50", "20"]) == ("ds", ["50", "20"])
    assert split_label(labels, ["nope", "2"]) == (None, ["nope", "2"])
    assert split_label(labels, []) == (None, [])
