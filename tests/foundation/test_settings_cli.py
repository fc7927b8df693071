"""Settings and the CLI's error behaviour: one clear line naming the variable, no traceback;
provider base-URL overrides; secrets from files."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path

import pytest

from bot.crypto.keyring import from_env_key
from bot.crypto.masterkey import configured_ring
from bot.errors import ConfigError
from bot.settings import load_settings
from tests.conftest import TEST_TOKEN
from tests.foundation.conftest import _OWN_NAMES, _OWN_PREFIXES, clean_env, run_cli


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """An environment without any bot setting, in an empty directory (no stray .env)."""
    for name in list(os.environ):
        if name.upper().startswith(_OWN_PREFIXES) or name.upper() in _OWN_NAMES:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def config_error(env: pytest.MonkeyPatch, **env_vars: str) -> str:
    for name, value in env_vars.items():
        env.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(env_file=None)
    message = str(info.value)
    assert "\n" not in message
    return message


# -- the CLI as an operator meets it -------------------------------------------------------------


def assert_one_line_naming(result: object, name: str) -> None:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    assert result.returncode != 0  # type: ignore[attr-defined]
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert name in lines[0]


def test_cli_run_without_token(tmp_path: Path) -> None:
    result = run_cli("run", cwd=tmp_path, env=clean_env(), timeout=60)
    assert_one_line_naming(result, "TELEGRAM_BOT_TOKEN")
    assert result.returncode == 78
    assert not (tmp_path / "data").exists()  # refused before touching any storage


@pytest.mark.parametrize(
    ("name", "value"),
    [("ALERT_INTERVAL_SECONDS", "soon"), ("ALLOWED_USER_IDS", "123,@alice")],
)
def test_cli_bad_setting_is_one_line(tmp_path: Path, name: str, value: str) -> None:
    env = clean_env(TELEGRAM_BOT_TOKEN=TEST_TOKEN, **{name: value})
    result = run_cli("migrate", cwd=tmp_path, env=env, timeout=60)
    assert_one_line_naming(result, name)
    assert TEST_TOKEN not in result.stderr
    assert not (tmp_path / "data").exists()


# -- settings in process -------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["soon", "0", "-5", ""])
def test_bad_alert_interval(env: pytest.MonkeyPatch, value: str) -> None:
    assert "ALERT_INTERVAL_SECONDS" in config_error(env, ALERT_INTERVAL_SECONDS=value)


@pytest.mark.parametrize("var", ["ALLOWED_USER_IDS", "ADMIN_USER_IDS"])
@pytest.mark.parametrize("value", ["abc", "1,2,x", "1.5"])
def test_bad_user_id_lists(env: pytest.MonkeyPatch, var: str, value: str) -> None:
    assert var in config_error(env, **{var: value})


def test_user_id_lists_parse(env: pytest.MonkeyPatch) -> None:
    env.setenv("ALLOWED_USER_IDS", " 1, 2;3 ,")
    env.setenv("ALERT_INTERVAL_SECONDS", "90.5")
    env.setenv("LOG_LEVEL", "debug")
    settings = load_settings(env_file=None)
    assert settings.allowed_user_ids == frozenset({1, 2, 3})
    assert settings.admin_user_ids == frozenset()
    assert settings.alert_interval_seconds == 90.5
    assert settings.log_level == "DEBUG"


def test_bad_log_level(env: pytest.MonkeyPatch) -> None:
    assert "LOG_LEVEL" in config_error(env, LOG_LEVEL="chatty")


def test_provider_base_urls_from_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("PROVIDER_DEEPSEEK_BASE_URL", "http://127.0.0.1:8001/")
    env.setenv("PROVIDER_OPENAI_ADMIN_BASE_URL", "http://127.0.0.1:8002/v1")
    settings = load_settings(env_file=None)
    assert settings.provider_base_url("deepseek") == "http://127.0.0.1:8001"
    assert settings.provider_base_url("openai-admin") == "http://127.0.0.1:8002/v1"
    assert settings.provider_base_url("openai") is None
    assert settings.provider_base_url("openrouter") is None


def test_provider_base_urls_from_a_dotenv_file(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dotenv = tmp_path / "custom.env"
    dotenv.write_text(
        f"TELEGRAM_BOT_TOKEN={TEST_TOKEN}\n"
        "PROVIDER_DEEPSEEK_BASE_URL=http://127.0.0.1:9001\n"
        "PROVIDER_OPENAI_ADMIN_BASE_URL=http://127.0.0.1:9002\n"
        "ALLOWED_USER_IDS=5,6\n"
    )
    settings = load_settings(env_file=str(dotenv))
    assert settings.bot_token == TEST_TOKEN
    assert settings.allowed_user_ids == frozenset({5, 6})
    assert settings.provider_base_url("deepseek") == "http://127.0.0.1:9001"
    assert settings.provider_base_url("openai-admin") == "http://127.0.0.1:9002"
    env.setenv("PROVIDER_DEEPSEEK_BASE_URL", "http://127.0.0.1:9999")  # the environment wins
    settings = load_settings(env_file=str(dotenv))
    assert settings.provider_base_url("deepseek") == "http://127.0.0.1:9999"
    assert settings.provider_base_url("openai-admin") == "http://127.0.0.1:9002"
    # the default `.env` in the working directory is read too
    (tmp_path / ".env").write_text("PROVIDER_OPENAI_ADMIN_BASE_URL=http://127.0.0.1:9003\n")
    assert load_settings().provider_base_url("openai-admin") == "http://127.0.0.1:9003"


def test_secrets_from_files(env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    token_file = tmp_path / "token"
    token_file.write_text(TEST_TOKEN + "\n")
    key_file = tmp_path / "master.key"
    key_file.write_text(key + "\n")
    env.setenv("TELEGRAM_BOT_TOKEN_FILE", str(token_file))
    env.setenv("ENCRYPTION_KEY_FILE", str(key_file))
    env.setenv("DATA_DIR", str(tmp_path / "data"))
    settings = load_settings(env_file=None)
    assert settings.bot_token == TEST_TOKEN
    assert settings.encryption_key is not None
    assert settings.encryption_key.get_secret_value() == key
    ring = configured_ring(settings)
    assert ring is not None and ring.active == from_env_key(key).active
    shown = repr(settings) + str(settings)
    assert TEST_TOKEN not in shown and key not in shown
    # a value in the variable itself wins over the file
    env.setenv("TELEGRAM_BOT_TOKEN", "987654321:direct-token-BBBBBBBBBBBBBBBBBBBBBBBB")
    assert load_settings(env_file=None).bot_token.startswith("987654321:")


@pytest.mark.parametrize("var", ["TELEGRAM_BOT_TOKEN_FILE", "ENCRYPTION_KEY_FILE"])
def test_unreadable_secret_file_names_the_variable_and_no_secret(
    env: pytest.MonkeyPatch, tmp_path: Path, var: str
) -> None:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    others = {"ENCRYPTION_KEY": key} if var.startswith("TELEGRAM") else {}
    others |= {"TELEGRAM_BOT_TOKEN": TEST_TOKEN} if var.startswith("ENCRYPTION") else {}
    others |= {"WEBHOOK_SECRET": "hook-secret-value-123"}
    message = config_error(env, **{var: str(tmp_path / "nope")}, **others)
    assert var in message
    for value in others.values():  # regression: the whole input used to be echoed
        assert value not in message


def test_cli_unreadable_secret_file_echoes_no_secret(tmp_path: Path) -> None:
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    env = clean_env(ENCRYPTION_KEY=key, TELEGRAM_BOT_TOKEN_FILE=str(tmp_path / "missing"))
    result = run_cli("migrate", cwd=tmp_path, env=env, timeout=60)
    assert_one_line_naming(result, "TELEGRAM_BOT_TOKEN_FILE")
    assert key not in result.stderr + result.stdout


def test_empty_encryption_key_means_unset(env: pytest.MonkeyPatch) -> None:
    env.setenv("ENCRYPTION_KEY", "")
    assert load_settings(env_file=None).encryption_key is None


def test_missing_token_is_one_line(env: pytest.MonkeyPatch) -> None:
    settings = load_settings(env_file=None)
    with pytest.raises(ConfigError) as info:
        settings.require_token()
    assert "TELEGRAM_BOT_TOKEN" in str(info.value) and "\n" not in str(info.value)
    assert info.value.exit_code == 78
