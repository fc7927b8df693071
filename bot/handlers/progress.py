"""A check shown while it runs: one answer that fills in as providers reply.

The handler that starts a check returns at once (so the user's next command is not
queued behind a slow provider, see `PerUserUpdateProcessor` in bot/app.py); `follow`
runs as a background task (`Application.create_task`) and edits the answer:

- within `QUICK_SECONDS` every key answered → one message, no edits;
- otherwise what has arrived is shown at once and the rest fills in by editing,
  at most one edit per `EDIT_GAP` (Telegram allows about one message per second
  per chat, docs/telegram.md §1);
- at `DEADLINE` (issue 14: an answer within 20 s in total, even when a provider
  hangs) the keys still outstanding are shown with their last known figure, and the
  message is edited again when the late answers arrive (the billing service's own,
  longer check timeout still bounds those);
- when every key has answered (or shutdown abandons the run), the final form.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Awaitable, Callable, Sequence

from telegram import Bot, InlineKeyboardMarkup, Message
from telegram.error import BadRequest, TelegramError

from bot.i18n import N_
from bot.services.balances import CheckRun

log = logging.getLogger(__name__)

QUICK_SECONDS = 0.6  # answers faster than this need no intermediate message
DEADLINE = 15.0  # seconds after the command: the answer is complete (or says who is late)
EDIT_GAP = 1.0  # at least this long between two edits of one answer

TOO_SOON = N_("⏳ Many checks in a short time. Try again in {n} s.")
ALREADY = N_("⏳ Already checking, one moment.")


class Stage(enum.Enum):
    PROGRESS = "progress"  # before the deadline, some keys still checking
    OVERDUE = "overdue"  # past the deadline, some keys still checking
    FINAL = "final"  # nothing pending any more (or the run was abandoned)


#: What an answer looks like at a stage: message-sized chunks and the buttons for the
#: last one; None = leave the answer as it is.
Rendered = tuple[Sequence[str], InlineKeyboardMarkup | None] | None
Render = Callable[[CheckRun, Stage], Awaitable[Rendered]]


def not_modified(exc: BadRequest) -> bool:
    """Telegram refuses an edit that changes nothing (400 "message is not modified")."""
    return "not modified" in str(exc).lower()


class Screen:
    """The messages one answer occupies: edited in place, grown or shrunk as it changes."""

    def __init__(self, bot: Bot, chat_id: int, messages: Sequence[Message] = ()) -> None:
        self.bot = bot
        self.chat_id = chat_id
        self.messages = list(messages)  # e.g. the message whose Refresh button was pressed
        self._shown: list[tuple[str, object]] = [("", None)] * len(self.messages)
        self._fresh = [False] * len(self.messages)  # True once this answer set its content
        self.shown_at = 0.0  # loop time of the last change (0: none yet)

    async def show(self, chunks: Sequence[str], markup: InlineKeyboardMarkup | None) -> None:
        loop = asyncio.get_running_loop()
        for i, chunk in enumerate(chunks):
            buttons = markup if i == len(chunks) - 1 else None
            wanted = (chunk, buttons.to_dict() if buttons is not None else None)
            if i < len(self.messages):
                if self._fresh[i] and self._shown[i] == wanted:
                    continue
                try:
                    await self.messages[i].edit_text(chunk, reply_markup=buttons)
                except BadRequest as exc:
                    if "not found" in str(exc).lower():  # the user deleted it: send anew
                        sent = await self.bot.send_message(
                            self.chat_id, chunk, reply_markup=buttons
                        )
                        self.messages[i] = sent
                    elif not not_modified(exc):
                        raise
            else:
                sent = await self.bot.send_message(self.chat_id, chunk, reply_markup=buttons)
                self.messages.append(sent)
                self._shown.append(wanted)
                self._fresh.append(True)
            self._shown[i] = wanted
            self._fresh[i] = True
            self.shown_at = loop.time()
        for extra in self.messages[len(chunks) :]:  # the answer got shorter
            with contextlib.suppress(TelegramError):
                await extra.delete()
        del self.messages[len(chunks) :]
        del self._shown[len(chunks) :]
        del self._fresh[len(chunks) :]


async def follow(
    run: CheckRun,
    screen: Screen,
    render: Render,
    *,
    started: float,
    quick: float = QUICK_SECONDS,
    deadline: float | None = None,
    gap: float = EDIT_GAP,
) -> None:
    """Show `run` on `screen` until every key has answered (see the module docstring).

    `started` is the loop time of the user's request: the deadline counts from it.
    """
    loop = asyncio.get_running_loop()
    limit = started + (DEADLINE if deadline is None else deadline)

    async def put(stage: Stage) -> None:
        shown = await render(run, stage)
        if shown is not None:
            await screen.show(*shown)

    await run.wait_all(timeout=max(0.0, started + quick - loop.time()))
    if not run.done:
        await put(Stage.PROGRESS)
        stage = Stage.PROGRESS
        while not run.done:
            if stage is Stage.PROGRESS and loop.time() >= limit:
                stage = Stage.OVERDUE
                await put(stage)
                continue
            before_limit = limit - loop.time() if stage is Stage.PROGRESS else None
            if await run.wait(before_limit):
                break
            pause = gap - (loop.time() - screen.shown_at)
            if pause > 0:  # let a few more answers arrive: one edit for them all
                if before_limit is not None:
                    pause = min(pause, max(0.0, limit - loop.time()))
                if await run.wait_all(timeout=pause):
                    break
            if stage is Stage.PROGRESS and loop.time() >= limit:
                continue  # the deadline passed while pausing: show the overdue form
            await put(stage)
    await put(Stage.FINAL)
