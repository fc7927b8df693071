"""Provider explanations are keyed by something the UI looks up: an ErrorKind value (for a
failure) or a result hint name. (Their Chinese is checked in tests/test_i18n.py.)"""

from __future__ import annotations

import re

from bot.billing.errors import ErrorKind
from bot.billing.registry import default_registry


def test_explanation_topics_are_error_kinds_or_hints() -> None:
    """A typo in a topic would silently never be shown."""
    kinds = {k.value for k in ErrorKind}
    for provider in default_registry().values():
        for topic in provider.explanations:
            assert topic in kinds or re.fullmatch(r"[a-z][a-z0-9_]{2,40}", topic), topic


def test_readme_lists_every_provider_id() -> None:
    """Provider ids are a public contract: README's list names each one."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    start = readme.index("Provider ids (for `provider=`)")
    listed = set(
        re.findall(r"`([a-z0-9-]+)`", readme[start : readme.index("PROVIDERS_FILE", start)])
    )
    missing = sorted(set(default_registry()) - listed)
    assert not missing, f"README's provider list lacks {missing}"
