"""Typed access to long-lived services from handlers (PTB's contexttypesbot pattern).

Services are built once in `post_init` and closed in `post_shutdown`; handlers reach
them as `context.services`. The per-update translator is set by the guard handler.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from telegram.ext import Application, CallbackContext, ExtBot

from bot.clock import Clock
from bot.i18n import Translator, translator

if TYPE_CHECKING:
    from bot.alerts.digest import DailyDigest
    from bot.alerts.outbox import OutboxService
    from bot.alerts.preferences import AlertPreferences
    from bot.alerts.sweep import AlertSweep
    from bot.billing.providers.base import Provider
    from bot.billing.service import BillingService
    from bot.charts import ChartRenderer
    from bot.delivery import Sender
    from bot.services.account import AccountService
    from bot.services.adding import AddService
    from bot.services.balances import BalanceService
    from bot.services.flows import FlowStore
    from bot.services.fx import FxService
    from bot.services.history import HistoryService
    from bot.services.keys import KeyService
    from bot.services.shared_limits import Instances
    from bot.services.users import UserService
    from bot.settings import Settings
    from bot.storage.db import Database


@dataclass
class Services:
    settings: Settings
    db: Database
    keys: KeyService
    users: UserService
    billing: BillingService
    balances: BalanceService
    history: HistoryService
    flows: FlowStore  # multi-step dialogues (one per user), a waiting key sealed
    adding: AddService  # /add's decisions; holds the first-check limit (docs/security.md §T13)
    account: AccountService  # /forget
    charts: ChartRenderer
    fx: FxService
    alerts: AlertPreferences | None = None
    sweep: AlertSweep | None = None
    digest: DailyDigest | None = None
    outbox: OutboxService | None = None
    instances: Instances | None = None  # PostgreSQL: this replica's heartbeat (shared limits)

    @property
    def clock(self) -> Clock:
        """The program's one clock; the database was built with it (app.build_services)."""
        return self.db.clock

    @property
    def providers(self) -> Mapping[str, Provider]:
        """The one provider registry, the billing service's (app.build_services)."""
        return self.billing.registry


class BotData:
    """`bot_data`: holds the services once post_init has built them."""

    def __init__(self) -> None:
        self.services: Services | None = None
        self.settings: Settings | None = None
        self.sender: Sender | None = None  # delivers the alert outbox (bot/jobs.py makes it)
        # (chat id, message id) of answers a check is editing right now (bot/handlers/progress.py)
        self.busy_messages: set[tuple[int, int]] = set()


class BotContext(CallbackContext[ExtBot[None], dict[Any, Any], dict[Any, Any], BotData]):
    def __init__(
        self,
        application: Application[Any, Any, Any, Any, Any, Any],
        chat_id: int | None = None,
        user_id: int | None = None,
    ) -> None:
        super().__init__(application=application, chat_id=chat_id, user_id=user_id)
        self.lang = "en"
        self.timezone = "UTC"
        self.currency: str | None = None  # /currency: totals also converted to this

    @property
    def services(self) -> Services:
        services = self.bot_data.services
        if services is None:
            raise RuntimeError("services are not ready (post_init has not run)")
        return services

    def now(self) -> datetime:
        """Business time from the program's one clock (bot.clock), never the wall clock."""
        return self.services.clock()

    @property
    def providers(self) -> Mapping[str, Provider]:
        """The providers the billing service knows (built-in and PROVIDERS_FILE's)."""
        return self.services.providers

    @property
    def t(self) -> Translator:
        return translator(self.lang)

    def deliver_alerts(self) -> None:
        """Send new outbox rows now, without making the caller wait for the sends."""
        sender = self.bot_data.sender
        if sender is not None:
            self.application.create_task(sender.run())
