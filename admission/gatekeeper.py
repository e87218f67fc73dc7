"""Whether a server lets this member start this job now, decided before anything is charged.

Reads the server's settings and the member's usage, grants any allowance that is due
(lazily, once per period), and runs the checks in order: pause, channel, roles
(`admission.server_rules`), the prompt blocklist (`admission.blocklist`), then the limits.
`admitting()` holds a per-server lock from the checks until the job is created, so two
commands at once cannot both slip under a daily limit, a cooldown or the spend cap (the
bot is one process; the per-user unfinished-job cap is also enforced inside the job's own
transaction).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass

from admission.blocklist import check_blocklist
from admission.periods import day_window, period_start
from admission.server_rules import (
    Refusal,
    allowance_for,
    check_channel,
    check_limits,
    check_pause,
    check_roles,
    effective_max_active,
)
from money.prices import PriceTable
from money.usd import credits_to_cents
from storage.database import Database
from storage.guild_settings import GuildSettings, GuildSettingsStore
from storage.usage import grant_allowance_once, limit_usage
from wavespeed.models import GenerationRequest

log = logging.getLogger(__name__)


class Refused(Exception):
    """The server's rules say no; `refusal.message` is for the member, as is."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal


@dataclass(frozen=True)
class Requester:
    guild_id: int
    user_id: int
    channel_id: int
    parent_channel_id: int | None      # set when the command ran in a thread
    role_ids: Collection[int]


@dataclass(frozen=True)
class Admission:
    settings: GuildSettings
    max_active: int                     # pass to create_job: the tighter of bot and server
    allowance_granted: int


class Gatekeeper:
    def __init__(
        self, db: Database, guild_settings: GuildSettingsStore, prices: PriceTable, *,
        starting_credits: int, bot_max_active: int, clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._settings = guild_settings
        self._prices = prices
        self._starting_credits = starting_credits
        self._bot_max_active = bot_max_active
        self.clock = clock  # swappable, so tests can step into the next day
        self._locks: defaultdict[int, asyncio.Lock] = defaultdict(asyncio.Lock)

    @asynccontextmanager
    async def admitting(self, who: Requester, request: GenerationRequest, *,
                        price: int | None = None) -> AsyncIterator[Admission]:
        """Raise Refused, or yield while holding the server's lock: create the job inside.
        `price`: what the job will reserve (a confirmed offer's), for the spend cap; else
        today's."""
        async with self._locks[who.guild_id]:
            yield await self._admit(who, request, price)

    async def precheck(self, who: Requester, request: GenerationRequest) -> None:
        """Raise Refused if the rules say no now, before slow work (downloading the
        references) that a refusal would waste. Not a promise: `admitting` decides."""
        await self._admit(who, request)

    async def _admit(self, who: Requester, request: GenerationRequest,
                     price: int | None = None) -> Admission:
        settings = await self._settings.get(who.guild_id)
        for refusal in (check_pause(settings),
                        check_channel(settings, who.channel_id, who.parent_channel_id),
                        check_roles(settings, who.role_ids)):
            if refusal is not None:
                raise Refused(refusal)
        # In a worker thread: matching is linear-time (RE2) but can still take a fraction
        # of a second for a long prompt and a heavy blocklist, and the loop serves every
        # server. Only this server waits, behind its own lock.
        entries = await self._settings.patterns(who.guild_id)
        blocked = await asyncio.to_thread(check_blocklist, entries, request.prompt,
                                          request.negative_prompt) if entries else None
        if blocked is not None:
            # For moderators: who and which entry, never the prompt itself.
            log.info("guild %d: prompt of user %d refused (%s)", who.guild_id, who.user_id,
                     blocked.detail)
            raise Refused(blocked)
        now = self.clock()
        granted = await self._grant_due(settings, who.user_id, who.role_ids, now)
        if settings.has_limits:
            day_start, next_day = day_window(now)
            usage = await limit_usage(self._db, who.guild_id, who.user_id, since=day_start)
            per_credit = self._prices.usd_per_credit
            if price is None:
                price = self._prices.credits_for(request.size, request.duration)
            refusal = check_limits(
                settings, jobs_today=usage.jobs_since, last_job_at=usage.last_job_at,
                active_jobs=usage.active_jobs,
                spend_today_cents=credits_to_cents(usage.guild_spend_since, per_credit),
                price_cents=credits_to_cents(price, per_credit),
                now=now, day_start=day_start, next_day_start=next_day)
            if refusal is not None:
                raise Refused(refusal)
        return Admission(settings, effective_max_active(settings, self._bot_max_active), granted)

    async def grant_due_allowance(self, guild_id: int, user_id: int,
                                  role_ids: Collection[int]) -> int:
        """Any allowance this member is due now (e.g. before showing their balance)."""
        settings = await self._settings.get(guild_id)
        return await self._grant_due(settings, user_id, role_ids, self.clock())

    async def _grant_due(self, settings: GuildSettings, user_id: int,
                         role_ids: Collection[int], now: float) -> int:
        amount = allowance_for(settings, role_ids)
        if amount <= 0:
            return 0
        return await grant_allowance_once(
            self._db, settings.guild_id, user_id, amount,
            period_start(now, settings.allowance_period), now,
            period=settings.allowance_period, starting_credits=self._starting_credits,
            cap=settings.allowance_cap)
