"""Does a piece of text contain something that looks like an API key?

Used where a key must not be accepted or kept (group chats, stray messages, labels):
such text is deleted and the user warned. False positives only cost a warning.
"""

from __future__ import annotations

import re

_KEYISH = re.compile(
    r"(?<![A-Za-z0-9])(?:"
    r"sk-[A-Za-z0-9_\-]{16,}"  # sk-, sk-proj-, sk-or-v1-, sk-ant-…, sk-admin-
    r"|sess-[A-Za-z0-9_\-]{16,}"  # OpenAI browser session keys
    r"|[A-Za-z0-9_\-]*T3BlbkFJ[A-Za-z0-9_\-]*"  # base64 "OpenAI" inside legacy OpenAI keys
    r")"
)


def looks_like_key(text: str | None) -> bool:
    return bool(text) and _KEYISH.search(text or "") is not None
