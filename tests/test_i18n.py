"""Every user-facing string has a Chinese translation, and translations keep placeholders."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir

import bot
from bot.i18n import catalog_files, resolve_language, translator

PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
TAG = re.compile(r"</?[a-z]+")


def _msgids() -> dict[str, str]:
    root = Path(bot.__file__).parent
    found: dict[str, str] = {}
    for filename, _lineno, message, _comments, _ctx in extract_from_dir(
        root, keywords={"N_": None}, comment_tags=()
    ):
        ids = message if isinstance(message, tuple) else (message,)
        for msgid in ids:
            if msgid:
                found[msgid] = filename
    return found


def test_catalogs_exist() -> None:
    assert catalog_files("zh")


def test_every_marked_string_is_translated_to_chinese() -> None:
    zh = translator("zh")
    missing = [
        f"{where}: {msgid[:60]!r}" for msgid, where in _msgids().items() if zh(msgid) == msgid
    ]
    assert not missing, "untranslated:\n" + "\n".join(missing)


def test_translations_keep_placeholders_and_tags() -> None:
    zh = translator("zh")
    for msgid in _msgids():
        text = zh(msgid)
        assert sorted(PLACEHOLDER.findall(text)) == sorted(PLACEHOLDER.findall(msgid)), msgid
        assert sorted(TAG.findall(text)) == sorted(TAG.findall(msgid)), msgid


def test_language_resolution() -> None:
    assert resolve_language(None, "zh-hans") == "zh"
    assert resolve_language(None, "zh-TW") == "zh"
    assert resolve_language(None, "en-US") == "en"
    assert resolve_language(None, None) == "en"
    assert resolve_language("en", "zh-hans") == "en"  # /lang wins
    assert resolve_language("zh", "en") == "zh"


def test_every_provider_hint_and_explanation_is_translated() -> None:
    """Provider hints and explanations are msgids too, but not marked with N_()."""
    from bot.billing.registry import default_registry

    zh = translator("zh")
    missing = [
        f"{p.id}: {text[:60]!r}"
        for p in default_registry().values()
        for text in (p.hint, *p.explanations.values())
        if zh(text) == text
    ]
    assert not missing, "untranslated provider texts:\n" + "\n".join(missing)
    for p in default_registry().values():
        for text in (p.hint, p.title, *p.explanations.values()):
            assert sorted(PLACEHOLDER.findall(zh(text))) == sorted(PLACEHOLDER.findall(text))
