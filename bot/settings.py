"""One typed settings object, read from the environment and `.env`.

The names are part of the public contract (see README and `.env.example`); they are
matched case-insensitively, like every pydantic-settings field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.errors import ConfigError

_PROVIDER_URL_PREFIX = "PROVIDER_"
_PROVIDER_URL_SUFFIX = "_BASE_URL"


def _read_secret_file(path: str, name: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ValueError(f"cannot read {name} ({exc.strerror})") from None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    telegram_bot_token: SecretStr = Field(default=SecretStr(""))
    telegram_bot_token_file: str | None = None
    telegram_api_url: str = "https://api.telegram.org"

    database_url: str = "sqlite+aiosqlite:///data/bot.db"
    data_dir: Path = Path("data")

    encryption_key: SecretStr | None = None
    encryption_key_file: str | None = None
    keyring_file: Path | None = None

    alert_interval_seconds: float = Field(default=3600, gt=0)
    # Daily euro reference rates for /currency totals (services/fx.py).
    fx_rates_url: str = "https://www.ecb.europa.eu/stats/eurofxref/eurofxref-daily.xml"
    allowed_user_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    admin_user_ids: Annotated[frozenset[int], NoDecode] = frozenset()
    allow_private_base_urls: bool = False
    provider_base_urls: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    providers_file: Path | None = None  # extra providers declared in YAML (bot.billing.declared)
    # Politeness towards one provider: at most this many balance checks at once per built-in
    # or operator-configured host (the whole deployment's cap; replicas share it). At 100 ms a
    # reply that is at most 500 checks/s against one host (README "Performance").
    checks_per_host: int = Field(default=50, ge=1, le=1000)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_listen: str = "0.0.0.0"  # noqa: S104 - a container listens on all interfaces
    webhook_port: int = 8080

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("database_url")
    @classmethod
    def _supported_database(cls, value: str) -> str:
        return supported_database_url(value)

    @field_validator("allowed_user_ids", "admin_user_ids", mode="before")
    @classmethod
    def _id_list(cls, value: object) -> object:
        if isinstance(value, str):
            parts = [p.strip() for p in value.replace(";", ",").split(",")]
            try:
                return frozenset(int(p) for p in parts if p)
            except ValueError:
                raise ValueError(
                    "must be a comma-separated list of numeric Telegram user ids"
                ) from None
        return value

    @model_validator(mode="after")
    def _files_and_token(self) -> Settings:
        if self.telegram_bot_token_file and not self.telegram_bot_token.get_secret_value():
            token = _read_secret_file(self.telegram_bot_token_file, "TELEGRAM_BOT_TOKEN_FILE")
            object.__setattr__(self, "telegram_bot_token", SecretStr(token))
        if self.encryption_key_file and self.encryption_key is None:
            key = _read_secret_file(self.encryption_key_file, "ENCRYPTION_KEY_FILE")
            object.__setattr__(self, "encryption_key", SecretStr(key))
        if self.encryption_key is not None and not self.encryption_key.get_secret_value():
            object.__setattr__(self, "encryption_key", None)
        object.__setattr__(self, "telegram_api_url", self.telegram_api_url.rstrip("/"))
        return self

    # -- derived values -------------------------------------------------------------

    @property
    def bot_token(self) -> str:
        return self.telegram_bot_token.get_secret_value()

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def keyring_path(self) -> Path:
        return self.keyring_file or self.data_dir / "keyring.json"

    def provider_base_url(self, provider_id: str) -> str | None:
        """Operator override from `PROVIDER_<ID>_BASE_URL` (trusted, unlike user URLs)."""
        return self.provider_base_urls.get(provider_id.upper().replace("-", "_"))

    def require_token(self) -> None:
        if not self.bot_token:
            raise ConfigError(
                "TELEGRAM_BOT_TOKEN is not set: put the token from @BotFather in .env "
                "(TELEGRAM_BOT_TOKEN=123456:ABC...) or in the environment"
            )


#: The async drivers the bot ships with, and the spellings that mean them.
_DATABASE_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


def supported_database_url(url: str) -> str:
    """SQLite or PostgreSQL through the drivers we install, else a one-line refusal.

    Checked here, before any engine is made: SQLAlchemy would otherwise import the
    dialect's driver and fail with a ModuleNotFoundError traceback (mysql://…).
    The message never repeats the URL (it may hold a password).
    """
    scheme, sep, rest = url.strip().partition("://")
    driver = _DATABASE_DRIVERS.get(scheme.lower()) if sep else None
    if driver is None:
        shown = scheme.lower() if sep and scheme.replace("+", "").isalnum() else "?"
        raise ValueError(
            f"unsupported database {shown!r}: use sqlite+aiosqlite:///path/bot.db "
            "or postgresql+asyncpg://user:password@host/db"
        )
    return f"{driver}://{rest}"


def _provider_urls(env_file: str | os.PathLike[str] | None) -> dict[str, str]:
    """Collect `PROVIDER_<ID>_BASE_URL` from `.env` and the environment (env wins)."""
    from dotenv import dotenv_values

    found: dict[str, str] = {}
    sources: list[dict[str, str | None]] = []
    if env_file and Path(env_file).is_file():
        sources.append(dict(dotenv_values(env_file)))
    sources.append(dict(os.environ))
    for source in sources:
        for name, value in source.items():
            upper = name.upper()
            if upper.startswith(_PROVIDER_URL_PREFIX) and upper.endswith(_PROVIDER_URL_SUFFIX):
                provider = upper[len(_PROVIDER_URL_PREFIX) : -len(_PROVIDER_URL_SUFFIX)]
                if provider and value:
                    found[provider] = value.strip().rstrip("/")
    return found


def load_settings(env_file: str | None = ".env", **overrides: object) -> Settings:
    """Build settings or raise `ConfigError` with one line naming the bad variable."""
    try:
        settings = Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except ValueError as exc:  # a secret file that cannot be read
        raise ConfigError(str(exc)) from None
    urls = _provider_urls(env_file)
    if "provider_base_urls" not in overrides and urls:
        settings = settings.model_copy(update={"provider_base_urls": urls})
    return settings


def _describe(exc: ValidationError) -> str:
    err = exc.errors()[0]
    name = str(err["loc"][0]).upper() if err["loc"] else "configuration"
    msg = err["msg"].removeprefix("Value error, ")
    value = err.get("input")
    # A model-level error's input is every setting, secrets included: never echo it.
    secret = not err["loc"] or any(
        w in name.lower() for w in ("token", "key", "secret", "database")
    )  # DATABASE_URL may hold a password
    shown = "" if secret else f" (got {value!r})"
    return f"{name} is invalid: {msg}{shown}; fix it in .env or the environment"
