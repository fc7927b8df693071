"""KeyService and storage on SQLite and PostgreSQL: owner scoping, duplicates, labels,
limits, no plaintext at rest (docs/security.md §T1, §T5, §T8, §T13, §7)."""

from __future__ import annotations

import os
import secrets
import stat
from datetime import UTC

import pytest

from bot.billing.registry import default_registry
from bot.secret import Secret
from bot.services.keys import (
    MAX_KEYS_PER_USER,
    InvalidKey,
    InvalidLabel,
    LabelTaken,
    TooManyKeys,
    clean_key,
    clean_label,
)
from bot.services.users import UserService
from bot.storage.db import Database, sqlite_path
from bot.storage.repositories import UserRepo
from tests.foundation.conftest import Opened, pg_dump, ring_forms, sql, sqlite_files


def new_key(tag: str = "K") -> Secret:
    return Secret(f"sk-{tag}-{secrets.token_hex(16)}")


# -- owner scoping ------------------------------------------------------------------------------


async def test_crud_is_scoped_by_owner(opened: Opened) -> None:
    ks = opened.keys
    a = (await ks.add(1, new_key("A"), "deepseek", label="mine")).key
    b = (await ks.add(2, new_key("B"), "deepseek", label="mine")).key  # same label, other owner

    assert [v.id for v in await ks.list(1)] == [a.id]
    assert [v.id for v in await ks.list(2)] == [b.id]
    assert (await ks.get(1, a.id)) == a
    assert (await ks.find(1, "mine")).id == a.id  # type: ignore[union-attr]
    assert (await ks.find(2, "mine")).id == b.id  # type: ignore[union-attr]

    # B holds A's id (a forged callback): every lookup behaves as "not found".
    assert await ks.get(2, a.id) is None
    assert await ks.rename(2, a.id, "stolen") is None
    assert await ks.set_options(2, a.id, {"x": "y"}) is None
    assert await ks.delete(2, a.id) is False
    assert await ks.requests(2, [a.id]) == []
    row = (await sql(opened.db, "SELECT label, owner_id FROM api_keys WHERE id = :i", i=a.id))[0]
    assert tuple(row) == ("mine", 1)

    renamed = await ks.rename(1, a.id, "  work  key ")
    assert renamed is not None and renamed.label == "work-key"
    assert (await ks.find(1, "work-key")).id == a.id  # type: ignore[union-attr]
    assert await ks.delete(1, a.id) is True
    assert await ks.delete(1, a.id) is False
    assert await ks.list(1) == []
    assert [v.id for v in await ks.list(2)] == [b.id]


async def test_rename_to_a_taken_label_is_refused(opened: Opened) -> None:
    ks = opened.keys
    one = (await ks.add(1, new_key(), "deepseek", label="one")).key
    await ks.add(1, new_key(), "deepseek", label="two")
    with pytest.raises(LabelTaken):
        await ks.rename(1, one.id, "two")
    with pytest.raises(LabelTaken):
        await ks.add(1, new_key(), "openai", label="two")
    assert (await ks.rename(1, one.id, "one")).label == "one"  # type: ignore[union-attr]
    assert sorted(v.label for v in await ks.list(1)) == ["one", "two"]


# -- duplicates, default labels, limits -----------------------------------------------------------


async def test_duplicate_key_returns_the_existing_label(opened: Opened) -> None:
    ks = opened.keys
    value = f"sk-DUP-{secrets.token_hex(16)}"
    first = await ks.add(1, Secret(value), "deepseek", label="main")
    assert first.duplicate is False
    again = await ks.add(1, Secret(value), "deepseek", label="other-label")
    assert again.duplicate is True
    assert again.key.label == "main" and again.key.id == first.key.id
    assert len(await ks.list(1)) == 1
    # Another owner may store the same key: fingerprints are per owner.
    other = await ks.add(2, Secret(value), "deepseek")
    assert other.duplicate is False
    assert (await sql(opened.db, "SELECT count(*) FROM api_keys"))[0][0] == 2


async def test_default_labels_count_up(opened: Opened) -> None:
    ks = opened.keys
    labels = [(await ks.add(1, new_key(), "deepseek")).key.label for _ in range(3)]
    assert labels == ["deepseek", "deepseek-2", "deepseek-3"]
    assert (await ks.add(1, new_key(), "openai")).key.label == "openai"
    assert (await ks.add(2, new_key(), "deepseek")).key.label == "deepseek"


async def test_the_21st_key_is_refused(opened: Opened) -> None:
    ks = opened.keys
    for _ in range(MAX_KEYS_PER_USER):
        await ks.add(1, new_key(), "deepseek")
    with pytest.raises(TooManyKeys):
        await ks.add(1, new_key(), "deepseek")
    assert len(await ks.list(1)) == MAX_KEYS_PER_USER == 20
    # a stored key pasted again is still recognised rather than refused
    [(view, req)] = await ks.requests(1, [(await ks.list(1))[0].id])
    assert req is not None
    again = await ks.add(1, req.secret, "deepseek")
    assert again.duplicate is True and again.key.id == view.id
    # another user is not affected
    assert (await ks.add(2, new_key(), "deepseek")).duplicate is False
    assert len(await ks.list(1)) == 20


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("main", "main"),
        ("  my   work\tkey  ", "my-work-key"),
        ("line\nbreak", "line-break"),
        ("ключ", "ключ"),
        ("🔑 main", "🔑-main"),
        ("مفتاح-العمل", "مفتاح-العمل"),  # Arabic, right to left
        ("מפתח", "מפתח"),  # Hebrew
        ("👨‍👩‍👧", "👨‍👩‍👧"),  # emoji joined with U+200D
        ("x" * 32, "x" * 32),
        ("<b>x</b> & y", "<b>x</b>-&-y"),  # escaped at render time, not here
    ],
)
def test_clean_label_accepts(raw: str, expected: str) -> None:
    assert clean_label(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "a\x00b",
        "bell\x07",
        "esc\x1b[31m",
        "del\x7f",
        "rtl\u202eoverride",  # bidi override: spoofs how neighbouring text reads
        "zero\u200bwidth",
        "x" * 33,
        "🔑" * 33,
        "\u3164",  # Hangul filler: a letter that renders as nothing
        "\u2800 \u2800",  # Braille blank
        "\u0301\u0301",  # combining marks without a base
        "\u200d",  # a lone zero-width joiner
    ],
)
def test_clean_label_refuses(raw: str) -> None:
    with pytest.raises(InvalidLabel):
        clean_label(raw)


@pytest.mark.parametrize("raw", ["", "   ", "sk-a b", "sk-\x00x", "x" * 513])
def test_clean_key_refuses(raw: str) -> None:
    with pytest.raises(InvalidKey):
        clean_key(raw, default_registry().values())


async def test_unicode_labels_round_trip_in_the_database(opened: Opened) -> None:
    ks = opened.keys
    labels = ["🔑-main", "مفتاح", "ключ-👨‍👩‍👧", "x" * 32]
    for label in labels:
        await ks.add(1, new_key(), "deepseek", label=label)
    assert sorted(v.label for v in await ks.list(1)) == sorted(labels)
    for label in labels:
        assert (await ks.find(1, label)) is not None
    with pytest.raises(InvalidLabel):
        await ks.add(1, new_key(), "deepseek", label="bad\x00")
    assert len(await ks.list(1)) == len(labels)


async def test_key_view_and_timestamps(opened: Opened) -> None:
    value = f"sk-VIEW-{secrets.token_hex(16)}abcd"
    added = await opened.keys.add(
        7, Secret(value), "relay", base_url="https://relay.example", options={"unit": "usd"}
    )
    [view] = await opened.keys.list(7)
    assert view.hint == "sk-…abcd"
    assert value not in repr(view)
    assert view.base_url == "https://relay.example" and dict(view.options) == {"unit": "usd"}
    assert view.created_at is not None and view.created_at.tzinfo is not None
    assert view.created_at.utcoffset() == UTC.utcoffset(None)
    [(_, req)] = await opened.keys.requests(7, [added.key.id])
    assert req is not None and req.secret.reveal() == value
    assert req.options == {"unit": "usd"} and req.base_url == "https://relay.example"


async def test_users_and_delete_everything(opened: Opened) -> None:
    users = UserService(opened.db)
    profile = await users.touch(5)
    assert (profile.id, profile.language, profile.timezone) == (5, None, "UTC")
    await users.set_language(5, "zh")
    await users.set_timezone(5, "Asia/Shanghai")
    assert (await users.touch(5)).language == "zh"
    await users.set_currency(5, "USD")  # read back on the read-only path of touch
    assert (await users.touch(5)).currency == "USD"
    await opened.keys.add(5, new_key(), "deepseek")
    await opened.keys.add(6, new_key(), "deepseek")
    async with opened.db.session() as s:
        await UserRepo(s).delete(5)
    assert await opened.keys.list(5) == []
    assert len(await opened.keys.list(6)) == 1
    assert (await sql(opened.db, "SELECT count(*) FROM users WHERE id = 5"))[0][0] == 0


# -- no plaintext at rest (T1, T5) ---------------------------------------------------------------


async def test_no_plaintext_at_rest(opened: Opened, canary: str) -> None:
    ks = opened.keys
    added = await ks.add(42, Secret(canary), "deepseek", label="canary")
    await ks.add(42, Secret(canary), "deepseek")  # the duplicate path must not store it either
    [(_, req)] = await ks.requests(42)
    assert req is not None and req.secret.reveal() == canary  # really stored, and readable
    await ks.rename(42, added.key.id, "renamed")  # an UPDATE: the old page is rewritten
    needles = [canary.encode(), canary.encode().hex().encode(), canary.encode("utf-16-le")]
    needles += ring_forms(opened.vault.ring)  # the master key is not in the database either
    url = opened.settings.database_url
    if opened.db.is_sqlite:
        files = sqlite_files(url)
        for when in ("before checkpoint", "after checkpoint"):
            if when == "after checkpoint":
                await opened.db.checkpoint()
                assert not files[1].exists() or files[1].stat().st_size == 0  # WAL truncated
            assert files[0].stat().st_size > 0
            for path in files:
                data = path.read_bytes() if path.exists() else b""
                for needle in needles:
                    assert needle not in data, f"secret bytes in {path.name} {when}"
    else:
        dump = pg_dump(url)
        if dump is None:
            pytest.skip("pg_dump is not installed (CI would fail here)")
        assert b"api_keys" in dump and added.key.id.encode() in dump  # a real dump
        for needle in needles:
            assert needle not in dump


async def test_sqlite_file_is_private(opened: Opened) -> None:
    if not opened.db.is_sqlite:
        pytest.skip("file modes apply to SQLite only")
    await opened.keys.add(1, new_key(), "deepseek")
    path = sqlite_path(opened.settings.database_url)
    assert path is not None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) & 0o077 == 0
    for extra in sqlite_files(opened.settings.database_url)[1:]:
        if extra.exists():
            assert stat.S_IMODE(extra.stat().st_mode) & 0o077 == 0, extra.name
    pragmas = await sql(opened.db, "PRAGMA secure_delete")
    assert pragmas[0][0] == 1


async def test_new_sqlite_file_is_0600_despite_umask(tmp_path: os.PathLike[str]) -> None:
    old = os.umask(0o022)
    try:
        db = Database(f"sqlite+aiosqlite:///{tmp_path}/fresh/bot.db")
        await db.dispose()
    finally:
        os.umask(old)
    path = sqlite_path(f"sqlite+aiosqlite:///{tmp_path}/fresh/bot.db")
    assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
