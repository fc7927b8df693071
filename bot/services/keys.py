"""Managing a user's stored keys: add, list, rename, delete, and decrypt for a check.

Every method takes the owner's id and scopes its query by it. Plaintext keys enter as
`Secret`, are encrypted before they touch the database, and leave only inside a
`KeyRequest` for the billing service.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from bot.billing.models import KeyRequest
from bot.billing.providers.base import Provider
from bot.crypto.vault import KeyVault, RecordBinding, VaultError
from bot.limits import MAX_LABEL
from bot.secret import Secret
from bot.services.keyshape import KeyProblem, key_problem
from bot.storage.db import Database
from bot.storage.models import ApiKey
from bot.storage.repositories import KeyRepo, UserRepo

MAX_KEYS_PER_USER = 20
MAX_LABEL_CHARS = MAX_LABEL  # bot/limits.py: the column agrees


class KeyServiceError(Exception):
    """Base for refusals the UI explains (each subclass has one meaning)."""


class InvalidLabel(KeyServiceError):
    pass


class LabelTaken(KeyServiceError):
    pass


class TooManyKeys(KeyServiceError):
    pass


class InvalidKey(KeyServiceError):
    """Not an API key (bot/services/keyshape.py: `problem` says why)."""

    def __init__(self, problem: KeyProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True, slots=True)
class KeyView:
    """A stored key as the rest of the app sees it: everything but the secret."""

    id: str
    owner_id: int
    label: str
    provider: str
    base_url: str | None
    hint: str
    options: Mapping[str, str] = field(default_factory=dict)
    created_at: datetime | None = None

    @classmethod
    def of(cls, row: ApiKey) -> KeyView:
        return cls(
            row.id,
            row.owner_id,
            row.label,
            row.provider,
            row.base_url,
            row.hint,
            dict(row.options or {}),
            row.created_at,
        )


@dataclass(frozen=True, slots=True)
class Added:
    key: KeyView
    duplicate: bool = False  # the same key was already stored under key.label


_WS = re.compile(r"\s+")

#: Letters and symbols that render as nothing: Hangul fillers, the Braille blank, the
#: Mongolian vowel separator, Khmer inherent vowels, the combining grapheme joiner.
_BLANK_LOOKING = frozenset("\u115f\u1160\u3164\uffa0\u2800\u180e\u17b4\u17b5\u034f")


def _visible(ch: str) -> bool:
    """A character that shows something on its own: a letter, digit, punctuation or symbol
    (not a space, a combining mark, a format character or one of the blank-looking ones)."""
    return unicodedata.category(ch)[0] in "LNPS" and ch not in _BLANK_LOOKING


def clean_label(raw: str) -> str:
    """Any Unicode, no control characters, something visible, whitespace folded to '-',
    bounded length. A label that would look blank in a list (only fillers, combining marks,
    zero-width joiners) is refused ("blank"): two such keys could not be told apart."""
    label = unicodedata.normalize("NFC", raw).strip()
    if label and not any(_visible(ch) for ch in label):
        raise InvalidLabel("blank")
    label = _WS.sub("-", label)
    if not label:
        raise InvalidLabel("empty")
    if any(
        unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Co", "Cn") and ch not in "\u200d"
        for ch in label
    ):
        raise InvalidLabel("control characters")
    if len(label) > MAX_LABEL_CHARS:
        raise InvalidLabel("too long")
    return label


def clean_key(raw: str, providers: Iterable[Provider]) -> Secret:
    """The key as a `Secret`, or InvalidKey: validated as a key before anything keeps it
    (`providers`: the injected registry's, whose `detect()` knows the prefixes)."""
    problem = key_problem(raw, providers)
    if problem is not None:
        raise InvalidKey(problem)
    return Secret(raw.strip())


def match_label(labels: Sequence[str], raw: str) -> str | None:
    """The stored label a user meant: as typed, as /add would have stored it (spaces
    folded to '-'), then either one ignoring case. One rule for every command that takes
    a label (/balance, /remove, /alerts, /history); `split_label` when more follows."""
    wanted = [raw.strip()]
    with contextlib.suppress(InvalidLabel):
        wanted.append(clean_label(raw))
    for name in wanted:
        if name in labels:
            return name
    folded = {label.casefold(): label for label in labels}
    return next((folded[n.casefold()] for n in wanted if n.casefold() in folded), None)


def split_label(labels: Sequence[str], words: Sequence[str]) -> tuple[str | None, list[str]]:
    """A label typed in front of more arguments (`/alerts my work key 20`): the longest
    run of leading words that `match_label` finds, and the words after it.

    (None, words) when no leading run names a key. A label may contain spaces (/add
    folds them to '-'), so splitting at the first space would miss "my work key".
    """
    for n in range(len(words), 0, -1):
        found = match_label(labels, " ".join(words[:n]))
        if found is not None:
            return found, list(words[n:])
    return None, list(words)


def next_label(base: str, taken: set[str]) -> str:
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


class KeyService:
    def __init__(self, db: Database, vault: KeyVault) -> None:
        self.db = db
        self.vault = vault

    async def add(
        self,
        owner_id: int,
        secret: Secret,
        provider: str,
        *,
        base_url: str | None = None,
        label: str | None = None,
        options: Mapping[str, str] | None = None,
    ) -> Added:
        async with self.db.session() as s:
            users, keys = UserRepo(s), KeyRepo(s)
            await users.get_or_create(owner_id)
            same = await keys.by_fingerprint(owner_id, self.vault.fingerprints(owner_id, secret))
            if same is not None:
                return Added(KeyView.of(same), duplicate=True)
            if await keys.count_for(owner_id) >= MAX_KEYS_PER_USER:
                raise TooManyKeys(str(MAX_KEYS_PER_USER))
            taken = await keys.labels(owner_id)
            if label is not None:
                label = clean_label(label)
                if label in taken:
                    raise LabelTaken(label)
            else:
                label = next_label(provider, taken)
            key_id = secrets.token_hex(16)  # chosen before encrypting: it is in the AAD
            binding = RecordBinding(key_id, owner_id, provider, base_url)
            ciphertext, kid = self.vault.encrypt(secret, binding)
            row = ApiKey(
                id=key_id,
                owner_id=owner_id,
                label=label,
                provider=provider,
                base_url=base_url,
                ciphertext=ciphertext,
                kid=kid,
                hint=secret.hint,
                fingerprint=self.vault.fingerprint(owner_id, secret, kid),
                options=dict(options or {}),
            )
            s.add(row)
            await s.flush()
            return Added(KeyView.of(row))

    async def list(self, owner_id: int) -> list[KeyView]:
        async with self.db.session() as s:
            return [KeyView.of(r) for r in await KeyRepo(s).list_for(owner_id)]

    async def get(self, owner_id: int, key_id: str) -> KeyView | None:
        async with self.db.session() as s:
            row = await KeyRepo(s).get(owner_id, key_id)
            return None if row is None else KeyView.of(row)

    async def find(self, owner_id: int, label: str) -> KeyView | None:
        async with self.db.session() as s:
            row = await KeyRepo(s).by_label(owner_id, label.strip())
            return None if row is None else KeyView.of(row)

    async def rename(self, owner_id: int, key_id: str, new_label: str) -> KeyView | None:
        label = clean_label(new_label)
        async with self.db.session() as s:
            keys = KeyRepo(s)
            row = await keys.get(owner_id, key_id)
            if row is None:
                return None
            if label != row.label and await keys.by_label(owner_id, label) is not None:
                raise LabelTaken(label)
            row.label = label
            return KeyView.of(row)

    async def set_options(
        self, owner_id: int, key_id: str, options: Mapping[str, str]
    ) -> KeyView | None:
        async with self.db.session() as s:
            row = await KeyRepo(s).get(owner_id, key_id)
            if row is None:
                return None
            row.options = {**(row.options or {}), **options}
            return KeyView.of(row)

    async def delete(self, owner_id: int, key_id: str) -> bool:
        async with self.db.session() as s:
            return await KeyRepo(s).delete(owner_id, key_id)

    async def requests(
        self, owner_id: int, key_ids: Sequence[str] | None = None
    ) -> list[tuple[KeyView, KeyRequest | None]]:
        """Decrypt the owner's keys for a check; `None` marks a row that cannot be read."""
        async with self.db.session() as s:
            rows = await KeyRepo(s).list_for(owner_id)
        wanted = set(key_ids) if key_ids is not None else None
        return [
            (KeyView.of(r), self.request_for(r)) for r in rows if wanted is None or r.id in wanted
        ]

    def request_for(self, row: ApiKey) -> KeyRequest | None:
        try:
            secret = self.vault.decrypt(
                row.ciphertext, RecordBinding(row.id, row.owner_id, row.provider, row.base_url)
            )
        except VaultError:
            return None
        return KeyRequest(row.id, row.provider, secret, row.base_url, dict(row.options or {}))
