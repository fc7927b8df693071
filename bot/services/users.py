"""Users: created on first contact; language and time zone preferences."""

from __future__ import annotations

from dataclasses import dataclass

from bot.storage.db import Database
from bot.storage.repositories import UserRepo


@dataclass(frozen=True, slots=True)
class Profile:
    id: int
    language: str | None
    timezone: str
    currency: str | None = None


class UserService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def touch(self, user_id: int) -> Profile:
        """Get the user's profile, creating the row on first contact.

        Runs for every private message, so it only reads unless the row is missing; the
        first contact writes in a write transaction (bot/storage/db.py).
        """
        async with self.db.session() as s:
            user = await UserRepo(s).get(user_id)
            if user is not None:
                return Profile(user.id, user.language, user.timezone, user.currency)
        async with self.db.write() as s:
            user = await UserRepo(s).get_or_create(user_id)
            return Profile(user.id, user.language, user.timezone, user.currency)

    async def set_language(self, user_id: int, language: str | None) -> None:
        async with self.db.session() as s:
            user = await UserRepo(s).get_or_create(user_id)
            user.language = language

    async def set_currency(self, user_id: int, code: str | None) -> None:
        async with self.db.session() as s:
            user = await UserRepo(s).get_or_create(user_id)
            user.currency = code

    async def set_timezone(self, user_id: int, tz: str) -> None:
        async with self.db.session() as s:
            user = await UserRepo(s).get_or_create(user_id)
            user.timezone = tz
