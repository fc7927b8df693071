"""`balance-bot` (also `python -m bot`): run the bot, migrate, rotate keys, check a key."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bot import __version__
from bot.errors import ConfigError
from bot.logs import install_redaction, setup_logging
from bot.settings import Settings, load_settings

log = logging.getLogger("bot")


def _echo(line: str) -> None:
    print(line, flush=True)


# -- commands -----------------------------------------------------------------------------


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    settings.require_token()
    if args.webhook or settings.webhook_url:
        return _run_webhook(settings)
    from telegram import Update

    from bot.app import build_application, build_services
    from bot.billing.registry import registry_for

    app = build_application(settings)

    async def prepare() -> None:
        # A broken PROVIDERS_FILE is a local mistake: one line, exit 78, before anything.
        # Then the token: the Application's own bot calls getMe (a rejected token is one
        # line here, not PTB's bootstrap traceback; nothing touched yet) and stays
        # initialised, so run_polling does not ask again. Then the services, once: the
        # migrations and master-key checks run there. All of it in the loop run_polling
        # then uses, so nothing is built twice (issue 17 item 4).
        registry_for(settings)
        await app.bot.initialize()
        try:
            app.bot_data.services = await build_services(settings)
        except BaseException:
            await app.bot.shutdown()
            raise

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(prepare())
    except BaseException:
        loop.close()
        asyncio.set_event_loop(None)
        raise
    log.info("starting in polling mode against %s", settings.telegram_api_url)
    app.run_polling(allowed_updates=Update.ALL_TYPES, close_loop=True)
    return 0


def _run_webhook(settings: Settings) -> int:
    from bot.app import check_token
    from bot.billing.registry import registry_for
    from bot.crypto.masterkey import open_vault
    from bot.storage.db import Database
    from bot.webhook import require_webhook_settings, run_webhook

    async def prepare() -> None:
        # Same order as polling: providers file, token, then storage (migrations, key ring).
        registry_for(settings)
        await check_token(settings)
        db = Database(settings.database_url)
        try:
            await open_vault(settings, db)
        finally:
            await db.dispose()

    asyncio.run(prepare())
    require_webhook_settings(settings)
    return int(run_webhook(settings) or 0)


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    from bot.crypto.masterkey import open_vault
    from bot.storage.db import Database

    async def go() -> None:
        db = Database(settings.database_url)
        try:
            await open_vault(settings, db)
        finally:
            await db.dispose()

    asyncio.run(go())
    _echo("database is up to date")
    return 0


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    from bot.crypto import rotation
    from bot.crypto.masterkey import check, configured_ring
    from bot.storage import migrate
    from bot.storage.db import Database

    async def go() -> int:
        ring = configured_ring(settings)
        if ring is None:
            raise ConfigError(
                "no master key is configured yet: start the bot once (it "
                "generates one) or set ENCRYPTION_KEY"
            )
        db = Database(settings.database_url)
        try:
            if not await migrate.is_current(db):
                raise ConfigError("the database schema is not current: run `balance-bot migrate`")
            if args.action != "verify":
                await check(settings, db, ring)
            match args.action:
                case "status":
                    await rotation.status(ring, db, _echo)
                case "add":
                    rotation.add(ring, settings, _echo, db.clock())
                case "activate":
                    await rotation.activate(ring, args.kid, settings, db, _echo)
                case "rewrap":
                    report = await rotation.rewrap(ring, db, _echo, batch=args.batch)
                    return 1 if report.failed else 0
                case "retire":
                    await rotation.retire(ring, args.kid, settings, db, _echo)
                case "verify":
                    return 1 if await rotation.verify(ring, db, _echo) else 0
            return 0
        finally:
            await db.dispose()

    return asyncio.run(go())


def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from bot.billing.check_cli import main_check

    return main_check(args, settings)


def run_bench(argv: Sequence[str]) -> int:
    """`balance-bot bench …` = `python -m bench …` in a child process.

    The benchmark is not part of the product: the wheel ships only `bot`, and `bot` never
    imports `bench`. It runs from a source checkout (the current directory).
    """
    import importlib.machinery
    import os
    import subprocess

    if importlib.machinery.PathFinder.find_spec("bench", [os.getcwd(), *sys.path]) is None:
        print(
            "balance-bot: the benchmark runs from a source checkout: "
            "cd into it and run `python -m bench`",
            file=sys.stderr,
        )
        return 2
    try:
        return subprocess.call([sys.executable, "-m", "bench", *argv])  # noqa: S603
    except KeyboardInterrupt:
        return 130


def cmd_bench(args: argparse.Namespace, settings: Settings) -> int:
    return run_bench(args.rest)


# -- parser -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="balance-bot", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="start the bot (polling; --webhook for webhook mode)")
    run.add_argument("--webhook", action="store_true", help="serve updates over HTTP")
    run.set_defaults(func=cmd_run)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)

    keys = sub.add_parser(
        "keys", help="master-key rotation: status|add|activate|rewrap|retire|verify"
    )
    kact = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    kact.add_parser("status", help="keys in the ring and rows per key")
    kact.add_parser("add", help="generate a new decrypt-only key")
    kact.add_parser("activate", help="make a key the active one").add_argument("kid")
    rw = kact.add_parser("rewrap", help="re-encrypt stored keys under the active key")
    rw.add_argument("--batch", type=int, default=500)
    kact.add_parser("retire", help="retire a key no row uses").add_argument("kid")
    kact.add_parser("verify", help="decrypt every stored key and report failures")
    keys.set_defaults(func=cmd_keys)

    check = sub.add_parser("check", help="check one key's balance (key from an env var or file)")
    try:
        from bot.billing.check_cli import add_check_arguments

        add_check_arguments(check)
    except ImportError:  # pragma: no cover
        pass
    check.set_defaults(func=cmd_check)

    bench = sub.add_parser("bench", help="run the benchmarks (see README)")
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["bench"]:  # its own options, passed through untouched
        return run_bench(argv[1:])
    args = build_parser().parse_args(argv)
    install_redaction()
    settings: Settings | None = None
    try:
        settings = load_settings(args.env_file)
        _register_secrets(settings)
        setup_logging(settings.log_level, settings.log_format)
        func: Callable[[argparse.Namespace, Settings], int | Awaitable[Any]] = args.func
        return int(func(args, settings) or 0)  # type: ignore[arg-type]
    except ConfigError as exc:
        print(f"balance-bot: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if _is_rejected_token(exc):
            print(
                "balance-bot: TELEGRAM_BOT_TOKEN was rejected by the Bot API at "
                f"{_safe_api_host(settings)}: check the token from @BotFather "
                "(and TELEGRAM_API_URL)",
                file=sys.stderr,
            )
            return ConfigError.exit_code
        if _is_unreachable_telegram(exc):
            print(
                f"balance-bot: cannot reach the Bot API at {_safe_api_host(settings)} "
                f"({type(exc).__name__}): check TELEGRAM_API_URL and the network",
                file=sys.stderr,
            )
            return 69  # EX_UNAVAILABLE
        if not _is_database_error(exc):
            raise  # printed by the redacting sys.excepthook (bot/logs.py)
        print(
            f"balance-bot: cannot use the database at DATABASE_URL ({_safe_url(settings)}): "
            f"{type(exc).__name__}; check that the server is running and the URL, user "
            "and password are right",
            file=sys.stderr,
        )
        return 69  # EX_UNAVAILABLE


def _register_secrets(settings: Settings) -> None:
    """Everything secret in the settings is redacted by value from logs and crash prints."""
    from sqlalchemy.engine import make_url

    from bot.secret import register_static

    register_static(settings.bot_token)
    for secret in (settings.encryption_key, settings.webhook_secret):
        if secret is not None:
            register_static(secret.get_secret_value())
    try:
        password = make_url(settings.database_url).password
    except Exception:
        password = None
    if password:
        register_static(str(password))


def _is_rejected_token(exc: BaseException) -> bool:
    """PTB's InvalidToken (getMe answered 401/404): its message holds the token itself."""
    from telegram.error import InvalidToken

    return isinstance(exc, InvalidToken)


def _is_unreachable_telegram(exc: BaseException) -> bool:
    from telegram.error import BadRequest, NetworkError

    return isinstance(exc, NetworkError) and not isinstance(exc, BadRequest)


def _safe_api_host(settings: Settings | None) -> str:
    from urllib.parse import urlsplit

    if settings is None:
        return "?"
    parts = urlsplit(settings.telegram_api_url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


def _is_database_error(exc: BaseException) -> bool:
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    if isinstance(exc, (DBAPIError, InterfaceError, OperationalError, ConnectionError)):
        return True
    if isinstance(exc, OSError) and exc.errno is not None:
        return True  # connection refused, unknown host, ...
    return type(exc).__module__.split(".")[0] in ("asyncpg", "aiosqlite", "sqlite3")


def _safe_url(settings: Settings | None) -> str:
    from sqlalchemy.engine import make_url

    if settings is None:
        return "?"
    try:
        return make_url(settings.database_url).render_as_string(hide_password=True)
    except Exception:
        return "unparseable"


if __name__ == "__main__":
    raise SystemExit(main())
