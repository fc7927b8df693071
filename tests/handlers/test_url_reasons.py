"""The SSRF guard's refusals reach the user by code (UrlRefusal), not by matching English:
rewording a log phrase in bot/billing/ssrf.py cannot silently change what /add says."""

from __future__ import annotations

import pytest

from bot.billing.errors import BillingError
from bot.billing.ssrf import UrlRefusal, refuse, validate_base_url
from bot.handlers.add import URL_REASON_DEFAULT, URL_REASONS, url_reason
from bot.i18n import translator

EN = translator("en")


def test_every_refusal_has_its_own_words() -> None:
    assert set(URL_REASONS) == set(UrlRefusal)


def test_the_words_follow_the_code_not_the_log_phrase() -> None:
    error = refuse(UrlRefusal.LOOPBACK)
    error.detail = "reworded for the logs"
    assert url_reason(EN, error) == "it points to this machine"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://relay.example.com", UrlRefusal.NOT_HTTPS),
        ("https://user:pw@relay.example.com", UrlRefusal.USERINFO),
        ("https://127.0.0.1", UrlRefusal.LOOPBACK),
        ("https://relay", UrlRefusal.SINGLE_LABEL),
    ],
)
def test_refusals_carry_their_code(url: str, code: UrlRefusal) -> None:
    with pytest.raises(BillingError) as info:
        validate_base_url(url, allow_private=False)
    assert info.value.reason is code
    assert url_reason(EN, info.value) == EN(URL_REASONS[code])


def test_a_refusal_without_a_code_gets_the_general_words() -> None:
    assert url_reason(EN, BillingError(refuse(UrlRefusal.LOOPBACK).kind, "x")) == EN(
        URL_REASON_DEFAULT
    )
