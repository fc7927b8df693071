"""Translations: gettext catalogs (.po, managed with Babel), English source strings.

Strings are marked with `N_()` where they are defined and translated with a
`Translator` at render time, so one module can hold a feature's texts as constants.
Each feature has its own catalog file (`locales/zh/LC_MESSAGES/<feature>.po`), so
features can change independently; all files of a language are merged at first use
and compiled in memory: there is nothing to build.

After changing texts, `pybabel extract -k N_ -k NP_:1,2 -o /tmp/messages.pot bot` lists
every msgid; `tests/test_i18n.py` fails while any of them lacks a Chinese translation.
"""

from __future__ import annotations

import gettext
from functools import cache
from io import BytesIO
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES = Path(__file__).with_name("locales")
LANGUAGES = ("en", "zh")
DEFAULT = "en"


def N_(message: str) -> str:
    """Mark a string for extraction; translation happens later, per user."""
    return message


def NP_(singular: str, plural: str) -> tuple[str, str]:
    """Mark a singular/plural pair (`Translator.plural(pair, n)` picks the form for n)."""
    return (singular, plural)


def resolve_language(stored: str | None, telegram_code: str | None) -> str:
    """The user's choice (/lang) wins; else Chinese for any zh* Telegram locale."""
    if stored in LANGUAGES:
        return stored
    if telegram_code and telegram_code.lower().startswith("zh"):
        return "zh"
    return DEFAULT


class Translator:
    def __init__(self, lang: str, catalog: gettext.NullTranslations) -> None:
        self.lang = lang
        self._catalog = catalog

    def __call__(self, message: str, /, **values: object) -> str:
        text = self._catalog.gettext(message)
        return text.format(**values) if values else text

    def plural(self, pair: tuple[str, str], n: int, /, **values: object) -> str:
        """The form of an `NP_` pair for the number n ("1 day", "2 days"; Chinese has one)."""
        text = self._catalog.ngettext(pair[0], pair[1], n)
        return text.format(n=n, **values)


def catalog_files(lang: str) -> list[Path]:
    return sorted((LOCALES / lang / "LC_MESSAGES").glob("*.po"))


@cache
def translator(lang: str) -> Translator:
    files = catalog_files(lang) if lang != DEFAULT else []
    if not files:
        return Translator(lang if lang in LANGUAGES else DEFAULT, gettext.NullTranslations())
    merged = None
    for po in files:
        with po.open("rb") as fh:
            catalog = read_po(fh, locale=lang)
        if merged is None:
            merged = catalog
        else:
            for message in catalog:
                if message.id:
                    merged[message.id] = message
    buf = BytesIO()
    write_mo(buf, merged)
    buf.seek(0)
    return Translator(lang, gettext.GNUTranslations(buf))
