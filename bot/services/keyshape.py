"""What an API key looks like: checking a key the user means to add, and spotting one in text.

Two questions, one notion of "key-shaped":

* `key_problem(raw)` — the user says this is a key (`/add KEY`, the key step): is it one?
  A key is one line of visible ASCII, 20–512 characters, that either has a prefix some
  provider claims (each provider's `detect()`, asked through the registry: there is no
  second list of prefixes here) or looks random (at least two of lower case, upper case
  and digits). `hello`, `hello world`, a Chinese sentence or a key with a non-ASCII
  character in it is refused before anything is stored, encrypted or sent: a non-ASCII
  key cannot go into an HTTP header anyway.
* `looks_like_key(text)` — does this free text (a group message, a stray message, a
  label, a command argument) carry a key that must be deleted and never kept? Every
  token is asked: a provider's prefix in any letter case (`SK-…` too), or an unprefixed
  random-looking token of 32+ characters with letters and digits. False positives only
  cost a warning; misses leave a key readable in a chat.

Used by the handlers (guard, fallback, /add, /keys rename, the overflow teller) and by the
services, always with the injected registry (`Services.providers`, the billing service's:
docs/architecture.md); its declared providers carry no key shape, so the bundled ones'
`detect()` is what answers.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterable
from enum import StrEnum

from bot.billing.providers.base import Match, Provider

MIN_KEY_CHARS = 20
MAX_KEY_CHARS = 512
#: An unprefixed token counts as a key in free text from this length on (labels are
#: at most 32 characters, so a label can never be taken for one by length alone).
GENERIC_KEY_CHARS = 32
#: At most this much of a message is scanned (Telegram texts are ≤ 4096 characters).
MAX_SCAN_CHARS = 8192

_VISIBLE_ASCII = frozenset(chr(c) for c in range(0x21, 0x7F))
# Characters keys are made of; anything else separates tokens in free text. `=` only as
# base64 padding at the end, so `key=AIza…` splits into `key=` and `AIza…`.
_TOKEN = re.compile(r"[A-Za-z0-9_\-.:+/~]+={0,2}")
_PREFIX = re.compile(r"^([A-Za-z]{1,8}[-_.])")


class KeyProblem(StrEnum):
    """Why a text is not accepted as a key (the /add handler words each one)."""

    EMPTY = "empty"
    SPACES = "spaces"  # more than one word, or a line break
    CHARACTERS = "characters"  # outside visible ASCII (a header cannot carry it)
    TOO_SHORT = "too_short"
    TOO_LONG = "too_long"
    SHAPE = "shape"  # no provider's prefix and nothing random about it


def provider_claims(token: str, providers: Iterable[Provider]) -> bool:
    """Does any provider recognise this token's shape (CERTAIN or POSSIBLE)?

    Asked as written and with a lower-cased prefix (`SK-…`, `XAI-…` pasted in capitals).
    """
    variants = [token]
    head = _PREFIX.match(token)
    if head and head.group(1) != head.group(1).lower():
        variants.append(head.group(1).lower() + token[head.end() :])
    return any(
        provider.detect(variant) is not Match.NO for provider in providers for variant in variants
    )


def _classes(token: str) -> int:
    return sum(
        (
            any(c in string.ascii_lowercase for c in token),
            any(c in string.ascii_uppercase for c in token),
            any(c in string.digits for c in token),
        )
    )


def looks_random(token: str) -> bool:
    """Mixes at least two of lower case, upper case and digits (`helloworld…` does not)."""
    return _classes(token) >= 2


def key_problem(raw: str, providers: Iterable[Provider]) -> KeyProblem | None:
    """Why `raw` cannot be an API key, or None if it can (see the module docstring)."""
    key = raw.strip()
    if not key:
        return KeyProblem.EMPTY
    if any(ch.isspace() for ch in key):
        return KeyProblem.SPACES
    if len(key) > MAX_KEY_CHARS:
        return KeyProblem.TOO_LONG
    if not all(ch in _VISIBLE_ASCII for ch in key):
        return KeyProblem.CHARACTERS
    if len(key) < MIN_KEY_CHARS:
        return KeyProblem.TOO_SHORT
    if not (provider_claims(key, providers) or looks_random(key)):
        return KeyProblem.SHAPE
    return None


def _keyish_token(token: str, providers: Iterable[Provider]) -> bool:
    token = token.strip(".,:;")
    if len(token) < MIN_KEY_CHARS - 1:  # `sk-` + 16, the shortest prefixed key we know
        return False
    if provider_claims(token, providers):
        return True
    if "://" in token or "/" in token:
        return False  # a URL or a path, not a key
    if len(token) >= GENERIC_KEY_CHARS and _classes(token) >= 2 and _has_letter_and_digit(token):
        return True
    # `label:KEY`, `Bearer:KEY`, `uuid:secret`: the parts may be keys on their own
    return ":" in token and any(
        _keyish_token(part, providers) for part in token.split(":") if part != token
    )


def _has_letter_and_digit(token: str) -> bool:
    return any(c.isdigit() for c in token) and any(c.isalpha() for c in token)


def looks_like_key(text: str | None, providers: Iterable[Provider]) -> bool:
    """Does this text contain something that must be treated as an API key?"""
    if not text:
        return False
    return any(_keyish_token(m.group(0), providers) for m in _TOKEN.finditer(text[:MAX_SCAN_CHARS]))


def single_key(text: str | None, providers: Iterable[Provider]) -> str | None:
    """The one key a message carries — the whole text, or its only key-shaped word that
    passes `key_problem` (`my key: sk-…`) — or None (no key, or several)."""
    if not text:
        return None
    whole = text.strip()
    if key_problem(whole, providers) is None:
        return whole
    found: set[str] = set()
    for match in _TOKEN.finditer(text[:MAX_SCAN_CHARS]):
        token = match.group(0).strip(".,:;")
        if not _keyish_token(token, providers):
            continue
        # `label:sk-…`: the part a provider claims is the key
        parts = [p for p in token.split(":") if provider_claims(p, providers)]
        found.add(parts[0] if len(parts) == 1 else token)
    valid = [token for token in found if key_problem(token, providers) is None]
    return valid[0] if len(valid) == 1 else None
