"""Canned provider replies: the routes of a case in tests/fixtures/providers/<id>.yaml, as
`Reply` objects for `FakeProviderServer.install`. One set of replies for the fixture tests,
the alert tests and the benchmark."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.fakes.provider_server import Reply

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "providers"


def canned_routes(provider: str, case: int | str = 0) -> dict[str, Reply]:
    """The routes of one case (by index or name) of a provider's fixture file."""
    doc = yaml.safe_load((FIXTURES / f"{provider}.yaml").read_text(encoding="utf-8"))
    cases: list[dict[str, Any]] = doc["cases"]
    chosen = cases[case] if isinstance(case, int) else next(c for c in cases if c["name"] == case)
    return {path: reply_of(spec) for path, spec in chosen["routes"].items()}


def reply_of(spec: dict[str, Any]) -> Reply:
    """One reply as the fixture files write it: status, json or body, headers, delay."""
    return Reply(
        status=int(spec.get("status", 200)),
        json=spec.get("json"),
        body=spec.get("body"),
        headers={str(k): str(v) for k, v in (spec.get("headers") or {}).items()},
        delay=float(spec.get("delay", 0.0)),
    )
