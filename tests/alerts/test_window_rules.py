"""The window ladder as users type it, and what is in force when nothing was chosen."""

from __future__ import annotations

import pytest

from bot.alerts import windows


@pytest.mark.parametrize(
    ("tokens", "rungs"),
    [
        (["80%", "95%"], ["80", "95"]),
        (["95%", "80%", "80"], ["80", "95"]),
        (["92,5%"], ["92.5"]),
        (["50 %"], ["50"]),
        (["1%", "2%", "3%", "4%", "5%"], ["1", "2", "3", "4", "5"]),
    ],
)
def test_parse_rungs(tokens: list[str], rungs: list[str]) -> None:
    assert windows.parse_rungs(tokens) == rungs


@pytest.mark.parametrize(
    "tokens",
    [[], ["0%"], ["100%"], ["120%"], ["-5%"], ["abc"], ["80%%"], ["1e2%"], ["nan%"],
     ["1%", "2%", "3%", "4%", "5%", "6%"], ["80.123%"]],
)  # fmt: skip
def test_bad_rungs(tokens: list[str]) -> None:
    with pytest.raises(windows.BadRungs):
        windows.parse_rungs(tokens)


def test_effective_rungs() -> None:
    assert windows.effective_rungs(None) == ("80", "95")
    assert windows.effective_rungs([]) == ()
    assert windows.effective_rungs(["95", "50"]) == ("50", "95")
    # whatever is stored, only sane rungs are in force
    assert windows.effective_rungs(["x", "100", "0", "70", "NaN"]) == ("70",)
