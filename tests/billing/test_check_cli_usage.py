"""`balance-bot check` as a process: its help, a key on the command line, an http relay.

(Issue 12, "beyond": the help describes the command and lists the provider ids; `--key`
is answered without echoing the key; the non-https refusal says once why and names the
setting that lifts it.)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from bot.billing.registry import default_registry
from tests.e2e.procs import clean_env

KEY = "sk-CANARY-cli-0123456789abcdef0123"


async def check(tmp_path: Path, *args: str, **env: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "check",
        *args,
        env=clean_env(TELEGRAM_BOT_TOKEN="", **env),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def test_help_describes_the_command_and_lists_every_provider_id(tmp_path: Path) -> None:
    code, text = await check(tmp_path, "--help")
    assert code == 0
    flat = " ".join(text.split())
    assert "Check one API key's balance" in flat and "never from the command line" in flat
    listed = text.split("provider ids:", 1)[1].split()
    assert set(default_registry()) <= set(listed)
    assert "--url" in text and "relay" in text.split("need --url:", 1)[1]


@pytest.mark.parametrize(
    "args",
    [
        ["--provider", "deepseek", "--key", KEY],
        ["--provider", "deepseek", f"--key={KEY}"],
        ["--provider", "deepseek", "--api-key", KEY],
        ["--provider", "deepseek", "--key-env", "X", KEY],  # pasted as a bare argument
        ["--key", KEY, "--provider", "deepseek"],
    ],
)
async def test_a_key_on_the_command_line_is_refused_never_echoed(
    tmp_path: Path, args: list[str]
) -> None:
    code, text = await check(tmp_path, *args)
    assert code == 2
    assert "keys are never taken on the command line; use --key-env or --key-file" in text
    assert KEY not in text and "CANARY" not in text


async def test_an_http_relay_is_refused_once_naming_the_setting(tmp_path: Path) -> None:
    code, text = await check(
        tmp_path,
        "--provider", "relay", "--key-env", "MY_KEY", "--url", "http://relay.example.com",
        MY_KEY=KEY,
    )  # fmt: skip
    assert code == 1
    [line] = [ln for ln in text.splitlines() if ln.strip()]
    assert line.count("https") == 1, line  # the reason, said once
    assert "ALLOW_PRIVATE_BASE_URLS=true" in line
    assert KEY not in text
    # metadata addresses stay refused whatever the setting: no setting is suggested
    code, text = await check(
        tmp_path,
        "--provider", "relay", "--key-env", "MY_KEY", "--url", "https://169.254.169.254",
        MY_KEY=KEY,
    )  # fmt: skip
    assert code == 1 and "metadata" in text and "ALLOW_PRIVATE_BASE_URLS" not in text
