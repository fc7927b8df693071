"""SQLAlchemy 2 models. Portable across SQLite and PostgreSQL; no plaintext keys anywhere."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from bot.limits import FIGURE_TEXT, LABEL_COLUMN, MAX_BASE_URL, MAX_CURRENCY, MAX_TIMEZONE

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow(context: Any) -> datetime:
    """Column default: the time of the program's clock, which `Database` hands the engine.

    SQLAlchemy calls this for ORM and Core inserts/updates alike, so no row is ever
    stamped by the wall clock behind the injected one (bot/clock.py).
    """
    clock: Callable[[], datetime] = context.execution_options["clock"]
    return clock()


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on both backends (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    language: Mapped[str | None] = mapped_column(String(8))  # None: follow Telegram's language
    timezone: Mapped[str] = mapped_column(String(MAX_TIMEZONE), default="UTC")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    currency: Mapped[str | None] = mapped_column(String(3))  # /currency: converted totals

    keys: Mapped[list[ApiKey]] = relationship(
        back_populates="owner", cascade="all, delete-orphan", passive_deletes=True
    )


class ApiKey(Base):
    """One stored provider key. `ciphertext` is bound (AAD) to id, owner, provider, base_url."""

    __tablename__ = "api_keys"
    __table_args__ = (
        UniqueConstraint("owner_id", "label", name="uq_api_keys_owner_label"),
        Index("ix_api_keys_owner_fingerprint", "owner_id", "fingerprint"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random, made before encrypting
    owner_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    label: Mapped[str] = mapped_column(String(LABEL_COLUMN))
    provider: Mapped[str] = mapped_column(String(32))
    base_url: Mapped[str | None] = mapped_column(String(MAX_BASE_URL))  # canonical, in the AAD
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    kid: Mapped[str] = mapped_column(String(16), index=True)  # copy of the header's key id
    hint: Mapped[str] = mapped_column(String(24))  # masked, e.g. "sk-…a1b2"
    fingerprint: Mapped[str] = mapped_column(String(32))  # keyed HMAC, to spot duplicates
    options: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)  # non-secret settings
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    owner: Mapped[User] = relationship(back_populates="keys")


class Meta(Base):
    """Small named values, e.g. the key-check value of the master key."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)


class KeyStatus(Base):
    """Outcome of the latest checks of one key, so a failed check can still show the last figure."""

    __tablename__ = "key_status"

    key_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    owner_id: Mapped[int] = mapped_column(BigInteger, index=True)
    last_ok_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_result: Mapped[dict[str, Any] | None] = mapped_column(
        JSON
    )  # BalanceResult, Decimals as str
    last_error_kind: Mapped[str | None] = mapped_column(String(32))
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)


class BalanceSnapshot(Base):
    """One successful reading: a time series for burn-rate forecasts. Decimals as exact text."""

    __tablename__ = "balance_snapshots"
    __table_args__ = (Index("ix_balance_snapshots_key_taken", "key_id", "taken_at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    key_id: Mapped[str] = mapped_column(String(32), ForeignKey("api_keys.id", ondelete="CASCADE"))
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))  # balance | spend | validity
    currency: Mapped[str | None] = mapped_column(String(MAX_CURRENCY))
    remaining: Mapped[str | None] = mapped_column(String(FIGURE_TEXT))
    total: Mapped[str | None] = mapped_column(String(FIGURE_TEXT))
    used: Mapped[str | None] = mapped_column(String(FIGURE_TEXT))
    # Migration 0005: what a non-money figure counts (points, characters; None = money)
    # and the plan windows of the reading (services/history.py), for charts and /export.
    unit: Mapped[str | None] = mapped_column(String(16))
    windows: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)


class FxRates(Base):
    """The latest exchange rates (migration 0009; services/fx.py): one row per source."""

    __tablename__ = "fx_rates"

    source: Mapped[str] = mapped_column(String(16), primary_key=True)
    published: Mapped[str | None] = mapped_column(String(10))  # the rates' date, YYYY-MM-DD
    rates: Mapped[dict[str, str] | None] = mapped_column(JSON)  # code → units per euro
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# -- alerts (migration 0004) ------------------------------------------------------------


class AlertPrefs(Base):
    """Per-user alert delivery: instant and/or daily digest; paused while the bot is blocked."""

    __tablename__ = "alert_prefs"

    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    instant: Mapped[bool] = mapped_column(Boolean, default=True)
    digest: Mapped[bool] = mapped_column(Boolean, default=False)
    digest_hour: Mapped[int] = mapped_column(Integer, default=9)  # local time
    digest_last: Mapped[str | None] = mapped_column(String(10))  # local date of the last digest
    lang: Mapped[str | None] = mapped_column(String(8))  # language seen last: alerts render in it
    paused_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # 403: bot blocked


class AlertState(Base):
    """Per-key alert settings, the event state machine's memory, and the sweep's lease."""

    __tablename__ = "alert_state"
    __table_args__ = (Index("ix_alert_state_due", "next_check_at"),)

    key_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("api_keys.id", ondelete="CASCADE"), primary_key=True
    )
    owner_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    thresholds: Mapped[list[str]] = mapped_column(JSON, default=list)  # "50", "20%"
    expiry_on: Mapped[bool] = mapped_column(Boolean, default=True)
    revoked_on: Mapped[bool] = mapped_column(Boolean, default=True)
    forecast_on: Mapped[bool] = mapped_column(Boolean, default=True)
    # Plan-window alert rungs in used % ("80", "95"): NULL = the default ladder, [] = off
    # (migration 0006; bot/alerts/windows.py).
    window_rungs: Mapped[list[str] | None] = mapped_column(JSON)
    muted_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    memory: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # see bot/alerts/rules.py
    last: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # last figure, for the digest
    failing_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    next_check_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class AlertOutbox(Base):
    """One notification to deliver, written in the same transaction as the event it reports."""

    __tablename__ = "alert_outbox"
    __table_args__ = (
        UniqueConstraint("idem_key", name="uq_alert_outbox_idem_key"),
        Index("ix_alert_outbox_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    idem_key: Mapped[str] = mapped_column(String(160))
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    key_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # no secrets, ever
    status: Mapped[str] = mapped_column(String(10), default="pending")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(40))
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# -- webhook (migration 0007) ------------------------------------------------------------


class WebhookUpdate(Base):
    """A Telegram update id taken by a webhook replica: handled once, across replicas.

    Telegram retries a webhook POST it did not get a 2xx for (a slow answer, a crash), so
    the same update can arrive twice, at two replicas. `done_at` is set once handled; a
    claim whose owner died is taken over (bot/services/webhook_updates.py). Pruned after
    two days (Telegram keeps an undelivered update for 24 hours).
    """

    __tablename__ = "webhook_updates"
    __table_args__ = (Index("ix_webhook_updates_claimed_at", "claimed_at"),)

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    owner: Mapped[str] = mapped_column(String(40))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


# -- limits shared by replicas (migration 0008) --------------------------------------------


class RateLimit(Base):
    """One shared limit's state, so that N replicas on PostgreSQL allow what one would.

    `hits`: times (database clock, epoch seconds) of recent uses, for "at most N per
    window" quotas; `tat`: the next free send time of a pacer (GCRA). `expires_at`: the
    row says nothing any more after this and is pruned (bot/services/shared_limits.py).
    """

    __tablename__ = "rate_limits"
    __table_args__ = (Index("ix_rate_limits_expires_at", "expires_at"),)

    key: Mapped[str] = mapped_column(String(96), primary_key=True)
    hits: Mapped[list[float] | None] = mapped_column(JSON)
    tat: Mapped[float | None] = mapped_column(Float)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Instance(Base):
    """A running bot process and its last heartbeat (database clock).

    Tells a replica how many others share the per-host politeness budget, and whether it
    is alone (then a fresh start may take back a crashed predecessor's leases).
    """

    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
