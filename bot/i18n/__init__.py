"""Translations: gettext catalogs (.po, managed with Babel), English source strings.

Strings are marked with `N_()` where they are defined and translated with a
`Translator` at render time, so one module can hold a feature's texts as constants.
Catalogs are compiled in memory from the .po files at first use: nothing to build.

Update the catalogs after changing texts:
    pybabel extract -k N_ -k ngettext:1,2 -o bot/i18n/messages.pot bot
    pybabel update -i bot/i18n/messages.pot -d bot/i18n/locales -D messages
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

    def plural(self, singular: str, plural: str, n: int, /, **values: object) -> str:
        text = self._catalog.ngettext(singular, plural, n)
        return text.format(n=n, **values)


@cache
def translator(lang: str) -> Translator:
    po = LOCALES / lang / "LC_MESSAGES" / "messages.po"
    if lang == DEFAULT or not po.is_file():
        return Translator(DEFAULT if lang not in LANGUAGES else lang, gettext.NullTranslations())
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buf = BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return Translator(lang, gettext.GNUTranslations(buf))
