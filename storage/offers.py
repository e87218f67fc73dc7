"""Prices shown with a Confirm button, kept until the member answers or the offer expires.

An offer is what a Confirm press accepts: the request, where, for whom and at what price.
It lives in the database (not in a View object) so the button still works after a restart,
and the job it starts carries `start_key = offer_key(token)`, so the job store starts at
most one job per offer however many presses arrive, and whenever.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiosqlite

from storage.database import Database
from wavespeed.models import GenerationRequest


class OfferClosed(Exception):
    """The offer was declined, has expired, or does not exist: it starts nothing."""

    def __init__(self, why: str) -> None:
        super().__init__(why)
        self.why = why  # 'declined', 'expired' or 'missing'


def offer_key(token: str) -> str:
    """The start_key of the job an offer starts."""
    return f"offer:{token}"


@dataclass(frozen=True)
class Offer:
    token: str
    guild_id: int
    user_id: int
    channel_id: int
    request: GenerationRequest
    price: int
    created_at: float
    expires_at: float
    declined: bool = False

    @property
    def start_key(self) -> str:
        return offer_key(self.token)


class OfferStore:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def create(
        self, *, guild_id: int, user_id: int, channel_id: int, request: GenerationRequest,
        price: int, lifetime: float,
    ) -> Offer:
        now = self._clock()
        offer = Offer(secrets.token_urlsafe(12), guild_id, user_id, channel_id, request, price,
                      now, now + lifetime)
        async with self._db.transaction() as conn:
            # Expired offers are worth nothing: drop old ones as new ones are made.
            await conn.execute("DELETE FROM start_offers WHERE expires_at < ?",
                               (now - 86_400,))
            await conn.execute(
                "INSERT INTO start_offers (token, guild_id, user_id, channel_id, request, price,"
                " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (offer.token, guild_id, user_id, channel_id, json.dumps(request.to_json()),
                 price, now, offer.expires_at))
        return offer

    async def get(self, token: str) -> Offer | None:
        async with self._db.reading() as conn, conn.execute(
            "SELECT * FROM start_offers WHERE token = ?", (token,)
        ) as cur:
            row = await cur.fetchone()
        if row is None:
            return None
        return Offer(row["token"], row["guild_id"], row["user_id"], row["channel_id"],
                     GenerationRequest.from_json(json.loads(row["request"])), row["price"],
                     row["created_at"], row["expires_at"], bool(row["declined"]))

    async def decline(self, token: str) -> bool:
        """False if it was already declined, accepted (its job exists) or does not exist.
        One transaction, and the job store checks the offer inside the job's own one, so a
        Confirm and a Not now racing each other cannot both win."""
        async with self._db.transaction() as conn:
            cur = await conn.execute(
                "UPDATE start_offers SET declined = 1 WHERE token = ? AND declined = 0"
                " AND NOT EXISTS (SELECT 1 FROM jobs WHERE start_key = ?)",
                (token, offer_key(token)))
            return cur.rowcount == 1


async def check_open(conn: aiosqlite.Connection, token: str, now: float) -> None:
    """Inside a transaction: raise OfferClosed unless the offer may still be accepted."""
    async with conn.execute(
        "SELECT declined, expires_at FROM start_offers WHERE token = ?", (token,)
    ) as cur:
        row = await cur.fetchone()
    if row is None:
        raise OfferClosed("missing")
    if row["declined"]:
        raise OfferClosed("declined")
    if now >= row["expires_at"]:
        raise OfferClosed("expired")
