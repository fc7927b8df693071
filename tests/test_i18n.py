"""Every user-facing string has a Chinese translation, and translations keep placeholders."""

from __future__ import annotations

import re
from pathlib import Path

from babel.messages.extract import extract_from_dir

import bot
from bot.i18n import catalog_files, resolve_language, translator

PLACEHOLDER = re.compile(r"\{[a-z_]+\}")
TAG = re.compile(r"</?[a-z]+")


KEYWORDS = {"N_": None, "NP_": (1, 2)}


def _extracted() -> list[tuple[str, str | tuple[str, ...]]]:
    root = Path(bot.__file__).parent
    return [
        (filename, message)
        for filename, _lineno, message, _comments, _ctx in extract_from_dir(
            root, keywords=KEYWORDS, comment_tags=()
        )
    ]


def _msgids() -> dict[str, str]:
    """Every singular msgid (N_) and where it is."""
    return {m: f for f, m in _extracted() if isinstance(m, str) and m}


def _plurals() -> dict[tuple[str, str], str]:
    """Every NP_ pair and where it is."""
    return {(m[0], m[1]): f for f, m in _extracted() if isinstance(m, tuple) and len(m) == 2}


def test_catalogs_exist() -> None:
    assert catalog_files("zh")


def test_every_marked_string_is_translated_to_chinese() -> None:
    zh = translator("zh")
    missing = [
        f"{where}: {msgid[:60]!r}" for msgid, where in _msgids().items() if zh(msgid) == msgid
    ]
    assert not missing, "untranslated:\n" + "\n".join(missing)


def test_every_plural_pair_is_translated_and_keeps_placeholders() -> None:
    zh = translator("zh")
    pairs = _plurals()
    assert pairs, "no NP_ pairs found: is the NP_ keyword extracted?"
    for (one, many), where in pairs.items():
        for n in (1, 2):
            text = zh.plural((one, many), n)
            source = (one if n == 1 else many).format(n=n)
            assert text != source, f"{where}: untranslated plural {many!r}"
        form = zh._catalog.ngettext(one, many, 2)
        assert sorted(PLACEHOLDER.findall(form)) == sorted(PLACEHOLDER.findall(many)), many
    en = translator("en")
    assert en.plural(("{n} day", "{n} days"), 1) == "1 day"
    assert en.plural(("{n} day", "{n} days"), 2) == "2 days"


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
