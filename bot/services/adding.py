"""Adding a key: the rules behind /add, shared by the guided and the one-line form.

The plaintext key is only ever in memory (as `Secret`) for the duration of one update.
The moment a key arrives it is sealed into the user's flow row (`hold`: encrypted by
`FlowStore`, bound to that flow instance) and committed — only then may the message that
carried it be deleted. From there the dialogue goes on (ambiguous provider, a relay
without base URL, a rejected key awaiting "save anyway") or the key is checked and saved
(step SAVING). A process killed in between leaves the sealed key behind, never a lost
one: `interrupted()` finds such flows and the handler asks the user whether to save it.

Providers are found from the key's shape (`BillingService.detect`) or, for a self-hosted
site given by its address, from the site itself without the key
(`BillingService.detect_family`); `provider=` always overrides both.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from enum import StrEnum
from typing import Any

from bot.billing.errors import BillingError, ErrorKind
from bot.billing.models import CheckOutcome, KeyRequest
from bot.billing.service import BillingService
from bot.secret import Secret
from bot.services.balances import BalanceService, ManualCheckLimiter
from bot.services.flows import WORKING, Flow, FlowStore
from bot.services.keys import (
    MAX_KEYS_PER_USER,
    InvalidLabel,
    KeyService,
    KeyView,
    LabelTaken,
    TooManyKeys,
    next_label,
)
from bot.storage.repositories import KeyRepo

KIND = "add"


class Step(StrEnum):
    """What the user's next answer in an /add flow is for."""

    PROVIDER = "provider"  # press a provider button (guided start)
    URL = "url"  # send the base URL
    LABEL = "label"  # send a label or press Skip
    KEY = "key"  # send the key
    PICK = "pick"  # press the provider (the key sealed, or a site that matched no family)
    CONFIRM = "confirm"  # key sealed, provider rejected it; save anyway?
    OFFER = "offer"  # key pasted without a command, sealed: add it?
    RESUME = "resume"  # key sealed, its saving was interrupted: save it now?
    SAVING = WORKING  # key sealed, being checked and saved (bot/services/flows.py)
    DONE = "done"  # everything known: save now


def next_step(data: Mapping[str, Any], has_key: bool, needs_url: Callable[[str], bool]) -> Step:
    """The first missing piece, in the order the guided dialogue asks for them.

    URL and label are asked *before* the key, so in the guided form the key is checked
    and saved the moment it arrives. "Detect from the site" (`site`) asks the URL first
    and the site then names its software (or the user does, from `candidates`).
    """
    provider = data.get("provider")
    if provider is None:
        if data.get("site") and not data.get("url"):
            return Step.URL
        if data.get("candidates") is not None and (has_key or data.get("site")):
            return Step.PICK
        if not data.get("auto") and not has_key and not data.get("site"):
            return Step.PROVIDER
    elif needs_url(provider) and not data.get("url"):
        return Step.URL
    if not data.get("label_done") and not has_key:
        return Step.LABEL
    if not has_key:
        return Step.KEY
    if provider is None:
        return Step.PICK
    return Step.DONE


class Why(StrEnum):
    """Why the user is asked to pick the provider (the handler says it)."""

    SHARED_PREFIX = "prefix"  # e.g. a bare sk- key: several providers use that shape
    UNKNOWN_SHAPE = "shape"  # no provider recognises the key's shape
    SITE = "site"  # the site's software matched no family


class Status(StrEnum):
    SAVED = "saved"
    DUPLICATE = "duplicate"  # the same key is already stored (result.key is that one)
    TOO_MANY = "too_many"
    REJECTED = "rejected"  # the provider refused the key: ask before saving
    SLOW_DOWN = "slow_down"  # too many new keys checked lately (docs/security.md §T13)


@dataclass(frozen=True, slots=True)
class Next:
    """Where the dialogue goes after an answer: the step to ask for next, or DONE."""

    step: Step
    data: dict[str, Any]
    secret: Secret | None = None  # DONE: the key to save; None when its sealed copy expired
    default_label: str | None = None  # LABEL: the name Skip gives (provider known)


@dataclass(frozen=True, slots=True)
class AddResult:
    status: Status
    key: KeyView | None = None
    check: CheckOutcome | None = None


@dataclass(frozen=True, slots=True)
class Interrupted:
    """A key whose saving was cut short (the process died): what to tell its owner."""

    user_id: int
    nonce: str
    hint: str
    saved: KeyView | None = None  # it was saved after all (the crash came after the commit)


def is_rejected(outcome: CheckOutcome | None) -> bool:
    error = outcome.error if outcome is not None else None
    return isinstance(error, BillingError) and error.kind is ErrorKind.KEY_REJECTED


#: A key being saved for longer than this was abandoned (a check ends within 45 s, with
#: its retries; docs/security.md §4.5). Another replica may still be at it before then.
STALE_AFTER = timedelta(seconds=90)

#: First checks of new keys per user and hour. Without a cap the bot would be a free
#: oracle for testing stolen keys (docs/security.md §T13). Per process, like the /balance cap.
ADD_CHECKS_PER_HOUR = 20


def new_add_limiter() -> ManualCheckLimiter:
    return ManualCheckLimiter(limit=ADD_CHECKS_PER_HOUR, window=3600.0)


class AddService:
    """The /add dialogue's decisions and storage: what to ask next, detection, saving."""

    def __init__(
        self,
        keys: KeyService,
        billing: BillingService,
        flows: FlowStore,
        balances: BalanceService | None = None,
        limiter: ManualCheckLimiter | None = None,
    ) -> None:
        self.keys = keys
        self.billing = billing
        self.flows = flows
        self.balances = balances  # records the first check as the key's status
        self.limiter = limiter or new_add_limiter()
        #: SQLite serves one bot process (docs/architecture.md): another process's saving
        #: flow is abandoned at once. On PostgreSQL replicas wait for STALE_AFTER.
        self.single_instance = keys.db.is_sqlite

    # -- the dialogue ------------------------------------------------------------------

    async def start(self, user_id: int) -> str:
        """A fresh guided dialogue at its first step; the nonce its buttons carry."""
        nonce = self.flows.new_nonce()
        await self.flows.set(user_id, KIND, Step.PROVIDER, {}, nonce=nonce, secret=None)
        return nonce

    async def flow(self, user_id: int) -> Flow | None:
        """The user's live /add dialogue, if any."""
        return await self.flows.get(user_id, KIND)

    async def sealed_key(self, user_id: int, nonce: str) -> Secret | None:
        """The key waiting in the dialogue with this nonce (None: gone or expired)."""
        return await self.flows.secret(user_id, nonce)

    async def hold(
        self,
        user_id: int,
        data: Mapping[str, Any],
        nonce: str,
        secret: Secret,
        *,
        step: Step = Step.SAVING,
    ) -> KeyView | None:
        """A key arrived: the first thing done with it, before its message is deleted.

        A key the user already saved is named at once (returned; nothing kept; a flow that
        was waiting for this key ends). Otherwise the key is sealed into the user's flow at
        `step` and committed, so that from here on a crash leaves it recoverable.
        """
        same = await self.duplicate_of(user_id, secret)
        if same is not None:
            flow = await self.flows.get(user_id, KIND)
            if flow is not None and flow.nonce == nonce:
                await self.flows.clear(user_id)
            return same
        data = {**data, "hint": secret.hint, "by": self.flows.instance}
        await self.flows.set(user_id, KIND, step, data, nonce=nonce, secret=secret)
        return None

    async def interrupted(self) -> list[Interrupted]:
        """Keys whose saving was cut short, each claimed by this process to tell its owner.

        A flow still at SAVING that no live process works on (another process's on SQLite,
        any older than STALE_AFTER) moves to RESUME; a key that turns out saved already
        ends its flow and is reported as saved.
        """
        found: list[Interrupted] = []
        now = self.flows.clock()
        for flow in await self.flows.working(KIND):
            age = now - (flow.updated_at or now)
            mine = flow.data.get("by") == self.flows.instance
            if age < STALE_AFTER and (mine or not self.single_instance):
                continue
            data = {k: v for k, v in flow.data.items() if k != "by"}
            if not await self.flows.claim(flow.user_id, flow.nonce, Step.SAVING, Step.RESUME, data):
                continue  # another process got there first
            hint = str(data.get("hint", ""))
            secret = await self.flows.secret(flow.user_id, flow.nonce)
            same = await self.duplicate_of(flow.user_id, secret) if secret is not None else None
            if same is not None or secret is None:
                await self.flows.clear(flow.user_id)
            if secret is not None:
                found.append(Interrupted(flow.user_id, flow.nonce, hint, same))
        return found

    async def cancel(self, user_id: int) -> bool:
        """Forget the user's dialogue (of any kind) and a key waiting in it; True if one was."""
        had = await self.flows.get(user_id) is not None
        await self.flows.clear(user_id)
        return had

    def needs_url(self, provider_id: str) -> bool:
        try:
            return self.billing.provider(provider_id).needs_base_url
        except KeyError:
            return False

    async def advance(
        self,
        user_id: int,
        data: Mapping[str, Any],
        nonce: str,
        *,
        secret: Secret | None = None,
        sealed: bool = False,
    ) -> Next:
        """Store what is known, then say which piece is missing first — or that all is.

        A key that arrives before the provider is known is detected from its shape;
        when it must wait for another answer it is sealed into the flow row.
        """
        data = {k: v for k, v in data.items() if k != "by"}
        has_key = secret is not None or sealed
        if secret is not None:
            data["hint"] = secret.hint
        if (
            data.get("provider") is None
            and data.get("candidates") is None
            and (has_key or (data.get("site") and data.get("url")))
        ):
            if secret is None and sealed:
                secret = await self.flows.secret(user_id, nonce)
                if secret is None:  # the sealed key expired meanwhile
                    await self.flows.clear(user_id)
                    return Next(Step.DONE, data, None)
            data.update(await self._detect(secret, data.get("url")))
        step = next_step(data, has_key, self.needs_url)
        if step is Step.DONE:
            if secret is None:
                secret = await self.flows.secret(user_id, nonce)
            if secret is None:
                await self.flows.clear(user_id)
                return Next(step, data, None)
            saving = {**data, "by": self.flows.instance}
            await self.flows.set(user_id, KIND, Step.SAVING, saving, nonce=nonce, secret=secret)
            return Next(step, data, secret)
        if secret is not None:
            await self.flows.set(user_id, KIND, step, data, nonce=nonce, secret=secret)
        else:
            await self.flows.set(user_id, KIND, step, data, nonce=nonce)
        default = None
        provider = data.get("provider")
        if step is Step.LABEL and provider:
            taken = {k.label for k in await self.keys.list(user_id)}
            default = next_label(provider, taken)
        return Next(step, data, default_label=default)

    async def _detect(self, secret: Secret | None, url: str | None) -> dict[str, Any]:
        """The provider (or the candidates and why) from the key's shape or the site.

        With a base URL, a key whose shape names one self-hosted kind (`cr_…`) needs no
        probe; else the site is asked which software it runs, without the key. Without a
        URL, the shape decides: one match is taken, several or none are asked.
        """
        shaped = self.billing.detect(secret.reveal()) if secret is not None else []
        if url:
            if len(shaped) == 1 and shaped[0].needs_base_url:
                return {"provider": shaped[0].id}
            try:
                family = await self.billing.detect_family(url)
            except BillingError:  # refused by the guard: the check will say so in words
                family = None
            if family is not None and self.needs_url(family.provider):
                return {"provider": family.provider, "family": family.value}
            sites = [p.id for p in self.billing.providers() if p.needs_base_url]
            return {"candidates": sites, "why": Why.SITE.value}
        if len(shaped) == 1:
            return {"provider": shaped[0].id}
        why = Why.SHARED_PREFIX if shaped else Why.UNKNOWN_SHAPE
        return {"candidates": [p.id for p in shaped], "why": why.value}

    async def finish(
        self,
        user_id: int,
        data: Mapping[str, Any],
        nonce: str,
        secret: Secret,
        *,
        confirmed: bool = False,
    ) -> AddResult:
        """Check and save. A rejected key waits, sealed, for "save anyway" (step CONFIRM);
        a saved key's first check becomes its stored status, as if /balance had run."""
        result = await self.submit(
            user_id,
            secret,
            str(data["provider"]),
            base_url=data.get("url"),
            label=data.get("label"),
            confirmed_rejected=confirmed,
        )
        if result.status is Status.REJECTED:
            waiting = {**data, "hint": secret.hint}
            await self.flows.set(user_id, KIND, Step.CONFIRM, waiting, nonce=nonce, secret=secret)
            return result
        await self.flows.clear(user_id)
        if result.status is Status.SAVED and result.key is not None:
            await self._remember_check(user_id, result, confirmed)
        return result

    async def _remember_check(self, user_id: int, result: AddResult, confirmed: bool) -> None:
        assert result.key is not None
        outcome = result.check
        if confirmed:
            error = BillingError(ErrorKind.KEY_REJECTED, "rejected when added")
            outcome = CheckOutcome(result.key.id, result.key.provider, error=error)
        if outcome is not None and self.balances is not None:
            await self.balances.record(user_id, [replace(outcome, key_id=result.key.id)])

    # -- saving --------------------------------------------------------------------------

    async def duplicate_of(self, owner_id: int, secret: Secret) -> KeyView | None:
        async with self.keys.db.session() as s:
            row = await KeyRepo(s).by_fingerprint(
                owner_id, self.keys.vault.fingerprints(owner_id, secret)
            )
            return None if row is None else KeyView.of(row)

    async def label_taken(self, owner_id: int, label: str) -> bool:
        return await self.keys.find(owner_id, label) is not None

    async def submit(
        self,
        owner_id: int,
        secret: Secret,
        provider: str,
        *,
        base_url: str | None,
        label: str | None,
        confirmed_rejected: bool = False,
    ) -> AddResult:
        """Check, then save. A key the provider rejects is saved only once confirmed.

        Duplicates and the per-user limit are checked first, so neither costs a
        request to the provider (docs/security.md §T13).
        """
        same = await self.duplicate_of(owner_id, secret)
        if same is not None:
            return AddResult(Status.DUPLICATE, same)
        if len(await self.keys.list(owner_id)) >= MAX_KEYS_PER_USER:
            return AddResult(Status.TOO_MANY)
        outcome: CheckOutcome | None = None
        options: dict[str, str] = {}
        if confirmed_rejected:
            options["rejected_at"] = self.keys.db.clock().isoformat(timespec="seconds")
        else:
            if not await self.limiter.take(owner_id):
                return AddResult(Status.SLOW_DOWN)
            request = KeyRequest("new", provider, secret, base_url)
            outcome = await self.billing.fetch(request, use_cache=False)
            if is_rejected(outcome):
                return AddResult(Status.REJECTED, check=outcome)
        try:
            added = await self._add(owner_id, secret, provider, base_url, label, options)
        except TooManyKeys:
            return AddResult(Status.TOO_MANY)
        if added.duplicate:
            return AddResult(Status.DUPLICATE, added.key)
        return AddResult(Status.SAVED, added.key, outcome)

    async def _add(
        self,
        owner_id: int,
        secret: Secret,
        provider: str,
        base_url: str | None,
        label: str | None,
        options: Mapping[str, str],
    ) -> Any:
        try:
            return await self.keys.add(
                owner_id, secret, provider, base_url=base_url, label=label, options=options
            )
        except (LabelTaken, InvalidLabel):  # taken since it was asked: use the default
            return await self.keys.add(
                owner_id, secret, provider, base_url=base_url, label=None, options=options
            )
