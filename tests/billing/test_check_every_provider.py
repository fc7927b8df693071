"""`balance-bot check` works for every provider id: the CLI as a process, against the
fake provider server scripted with the first successful case of that provider's fixture."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import pytest

from bot.billing.registry import default_registry
from tests.billing.test_provider_fixtures import _load, _reply
from tests.e2e.procs import clean_env
from tests.fakes.provider_server import FakeProviderServer

KEY = "sk-test-0123456789abcdef0123"


MONEY_LINE = re.compile(r"^(remaining|total|used|spent):\s+(-?\d+)(?:\.(\d+))? [A-Z]{3}\b", re.M)


def assert_same_decimals(text: str) -> None:
    """Money is printed alike for every provider: two decimals (more only below 1)."""
    for m in MONEY_LINE.finditer(text):
        decimals = len(m.group(3) or "")
        small = m.group(2).lstrip("-") == "0"
        assert decimals == 2 or (small and 2 <= decimals <= 6), m.group(0)


def _first_success(provider_id: str) -> dict:
    for _path, data in _load():
        if data.get("provider") == provider_id:
            for case in data["cases"]:
                if "expect" in case:
                    return case
    raise AssertionError(f"no successful fixture case for {provider_id}")


@pytest.mark.parametrize("provider_id", sorted(default_registry()))
async def test_check_cli_for_every_provider(provider_id: str, tmp_path: Path) -> None:
    case = _first_success(provider_id)
    server = await FakeProviderServer().start()
    try:
        for route, spec in case["routes"].items():
            specs = spec if isinstance(spec, list) else [spec]
            server.script(route, [_reply(s) for s in specs])
        base = server.url + case.get("url_suffix", "")
        key = case.get("key", KEY)
        env = clean_env(MY_KEY=key, ALLOW_PRIVATE_BASE_URLS="true", TELEGRAM_BOT_TOKEN="")
        args = ["check", "--provider", provider_id, "--key-env", "MY_KEY"]
        if case.get("user_url"):
            args += ["--url", base]
        else:
            env[f"PROVIDER_{provider_id.upper().replace('-', '_')}_BASE_URL"] = base
        if case.get("options", {}).get("currency"):
            args += ["--currency", case["options"]["currency"]]
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot",
            *args,
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        text = out.decode() + err.decode()
        assert proc.returncode == 0, text
        assert key not in text
        assert server.count() >= 1
        assert_same_decimals(text)
    finally:
        await server.stop()
