"""Starting a job, the same way from every place that can: /ref2video, Confirm, Re-roll and
Use as reference.

Every path runs the same checks (prompt limits, the server's rules, credits), asks for the
price to be confirmed when the server wants that (Re-roll always asks), and starts at most
one job per command or press: each start carries a key (the command's interaction id, the
offer a Confirm accepts, the modal submitted) that the job store accepts only once.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
from collections.abc import Awaitable
from typing import Any, Literal

import discord

from admission.gatekeeper import Gatekeeper, Refused, Requester
from admission.input_rules import InputError, InputLimits, check_text
from discord_layer.audit import AuditLog
from discord_layer.buttons import CONFIRM_SECONDS, confirm_view, queued_view
from discord_layer.errors import UserFacingError
from discord_layer.replies import reply_private
from discord_layer.status import StatusBoard
from discord_layer.text import NO_PINGS, credits_text, job_link, thread_name
from engine.engine import JobEngine
from money.prices import PriceTable
from storage.credits import CreditStore, InsufficientCreditsError
from storage.guild_settings import GuildSettingsStore
from storage.jobs import AlreadyStarted, Job, JobStore
from storage.offers import Offer, OfferClosed, OfferStore, offer_key
from wavespeed.models import GenerationRequest

log = logging.getLogger(__name__)

THREAD_ARCHIVE_MINUTES: Literal[1440] = 1440  # a day; posting again reopens it
THREAD_ALREADY_CREATED = 160004  # Discord: "A thread has already been created for this message"


class JobStarter:
    def __init__(
        self, *, prices: PriceTable, engine: JobEngine, jobs: JobStore,
        gatekeeper: Gatekeeper, guild_settings: GuildSettingsStore, offers: OfferStore,
        audit: AuditLog, board: StatusBoard, input_limits: InputLimits, credits: CreditStore,
    ) -> None:
        self.prices = prices
        self.credits = credits
        self.engine = engine
        self.jobs = jobs
        self.gatekeeper = gatekeeper
        self.guild_settings = guild_settings
        self.offers = offers
        self.audit = audit
        self.board = board
        self.input_limits = input_limits
        self._no_thread_logged: set[int] = set()

    # ---- the ways in ------------------------------------------------------------------------

    async def begin(
        self, interaction: discord.Interaction, request: GenerationRequest, channel: Any, *,
        start_key: str | None = None, always_confirm: bool = False, intro: str = "",
    ) -> None:
        """Check the request, then either ask to confirm its price (the server's
        `confirm_cost`, or `always_confirm`) or start it with `start_key` (what makes this
        start happen once). The interaction must already be acknowledged or answerable with
        a private reply."""
        self.check_text(request)
        assert interaction.guild_id is not None and channel is not None  # guild_only
        confirm = always_confirm or (await self.guild_settings.get(interaction.guild_id)
                                     ).confirm_cost
        if not confirm:
            if start_key is None:
                raise ValueError("a start without confirmation needs a start_key")
            await self.start(interaction, request, channel, start_key=start_key)
            return
        price = self.prices.credits_for(request.size, request.duration)
        offer = await self.offers.create(
            guild_id=interaction.guild_id, user_id=interaction.user.id, channel_id=channel.id,
            request=request, price=price, lifetime=CONFIRM_SECONDS)
        cost = credits_text(price, self.prices.usd(price))
        await reply_private(
            interaction, f"{intro}This clip costs **{cost}**. Start it? "
            "Nothing is reserved until you confirm, and you are charged only if "
            f"the clip is delivered (this question expires in {CONFIRM_SECONDS / 60:.0f} "
            "minutes).", view=confirm_view(offer.token))

    async def _offer(self, interaction: discord.Interaction, token: str, verb: str) -> Offer:
        """The offer behind a button, if this member was the one asked."""
        offer = await self.offers.get(token)
        if offer is None or offer.guild_id != interaction.guild_id:
            raise OfferClosed("missing")
        if offer.user_id != interaction.user.id:
            raise UserFacingError(f"Only the member who was asked can {verb} this.")
        return offer

    async def accept(self, interaction: discord.Interaction, token: str) -> None:
        """A press of Confirm: start the offer's job, once however often it is pressed."""
        offer = await self._offer(interaction, token, "confirm")
        price = self.prices.credits_for(offer.request.size, offer.request.duration)
        if price != offer.price:
            raise UserFacingError(
                f"The price changed since you were asked: it is now "
                f"{credits_text(price, self.prices.usd(price))}. Nothing was charged; ask "
                "again to see the new price.")
        channel = await _channel(interaction, offer.channel_id)
        # At the price confirmed, even if the table changes while this waits for its turn.
        await self.start(interaction, offer.request, channel, offer_token=token,
                         price=offer.price)

    async def decline(self, interaction: discord.Interaction, token: str) -> str:
        """A press of Not now; the answer to show."""
        offer = await self._offer(interaction, token, "answer")
        if await self.offers.decline(token):
            return "Not started; nothing was charged."
        job = await self.jobs.by_start_key(offer.start_key)
        if job is not None:
            return f"Job #{job.id} was already started from this question: {job_link(job)}"
        return "Not started; nothing was charged."

    def check_text(self, request: GenerationRequest) -> None:
        limit = self.input_limits.max_prompt_chars
        check_text("prompt", request.prompt, limit, required=True)
        check_text("negative_prompt", request.negative_prompt, limit, required=False)

    # ---- starting ---------------------------------------------------------------------------

    async def start(
        self, interaction: discord.Interaction, request: GenerationRequest, channel: Any, *,
        start_key: str | None = None, offer_token: str | None = None, price: int | None = None,
    ) -> None:
        """Admit, reserve, post the status message and thread, queue, and tell the member.
        `price`: what the member confirmed; else today's, read once here, so what is
        reserved is what the member is told."""
        assert interaction.guild_id is not None and channel is not None  # guild_only
        key = offer_key(offer_token) if offer_token is not None else start_key
        if key is not None and (earlier := await self.jobs.by_start_key(key)) is not None:
            # Said before the rules are asked: a second press is not a second job, and must
            # not be refused by a cooldown the first press just started. (The job store
            # checks the key again, atomically, for presses that race past this.)
            await self._already_started(interaction, earlier)
            return
        _check_can_post(channel, interaction.app_permissions)
        if price is None:
            price = self.prices.credits_for(request.size, request.duration)
        member = interaction.user
        who = _requester(interaction, channel)
        try:
            async with self.gatekeeper.admitting(who, request, price=price) as admission:
                job = await self.engine.create_job(
                    guild_id=interaction.guild_id, channel_id=channel.id, user_id=member.id,
                    request=request, enqueue=False, max_active=admission.max_active,
                    start_key=start_key, offer_token=offer_token, price=price)
        except AlreadyStarted as started:
            await self._already_started(interaction, started.job)
            return
        except Refused as refused:
            await self.audit.refused(interaction.guild_id, member.id, channel.id,
                                     refused.refusal.reason_code, refused.refusal.detail)
            raise
        except InsufficientCreditsError as exc:
            raise self._no_credits(price, exc.balance) from None

        # From here the job exists and holds its price: every way out either undoes it (and
        # says nothing was charged) or queues it (and says so), never neither.
        try:
            message_id, thread_id = await self._post_status(job, channel,
                                                            interaction.app_permissions)
        except BaseException as exc:
            await self._undo(interaction, job, exc)
            raise
        queued = dataclasses.replace(job, status_channel_id=channel.id,
                                     status_message_id=message_id, thread_id=thread_id)
        try:
            await self.jobs.record_messages(job.id, status_channel_id=channel.id,
                                            status_message_id=message_id, thread_id=thread_id)
            queued = await self.jobs.get(job.id) or queued
        except Exception:
            # The job runs anyway; with its messages unsaved a restart delivers in the channel.
            log.exception("job %d: could not save where its messages are", job.id)
        self.engine.enqueue(queued)
        self.board.update(queued)
        left = job.balance_after or 0  # JobStore.create always records it
        await reply_private(
            interaction,
            f"Job #{job.id} is queued. {credits_text(job.price, self.prices.usd(job.price))} "
            "reserved; "
            f"you have {left:,} credits left. Follow it here: {job_link(queued)}\n"
            "You are only charged if the clip is delivered; a failure is refunded in full.")

    def _no_credits(self, price: int, balance: int) -> InputError:
        return InputError(
            f"This clip costs {credits_text(price, self.prices.usd(price))}, and you have "
            f"{balance:,} credits. Ask a moderator for credits, or pick 720p or 5 s "
            f"(see `/credits prices`). Nothing was charged.")

    async def precheck(self, interaction: discord.Interaction, request: GenerationRequest,
                       channel: Any) -> None:
        """What would refuse this request now (text, where, who, the rules, credits),
        asked before its references are downloaded; `start` asks all of it again."""
        self.check_text(request)
        assert interaction.guild_id is not None and channel is not None  # guild_only
        _check_can_post(channel, interaction.app_permissions)
        try:
            await self.gatekeeper.precheck(_requester(interaction, channel), request)
        except Refused as refused:
            await self.audit.refused(interaction.guild_id, interaction.user.id, channel.id,
                                     refused.refusal.reason_code, refused.refusal.detail)
            raise
        price = self.prices.credits_for(request.size, request.duration)
        balance = await self.credits.balance(interaction.guild_id, interaction.user.id)
        if balance.available < price:
            raise self._no_credits(price, balance.available)

    async def _already_started(self, interaction: discord.Interaction, job: Job) -> None:
        await reply_private(interaction, f"Job #{job.id} was already started by this; nothing "
                            f"more was charged. Follow it here: {job_link(job)}")

    async def _undo(self, interaction: discord.Interaction, job: Job, exc: BaseException
                    ) -> None:
        """The status message could not be posted: cancel and refund the job, then raise
        what to tell the member. If even the cancel fails, queue the job rather than leave
        it holding credits unseen, and say that instead."""
        try:
            cancelled = await self.engine.cancel(
                job.id, reason="its status message could not be posted", notify=False)
        except Exception:
            log.exception("job %d: could not be cancelled after its status post failed", job.id)
            cancelled = None
        if cancelled is None:
            current = await _quietly(self.jobs.get(job.id))
            if current is not None and current.state.is_terminal:
                cancelled = current
        if cancelled is None:
            self.engine.enqueue(job)
            raise UserFacingError(
                f"Job #{job.id} is queued, but its status message could not be posted here. "
                "It will run, and its clip (or a refund) will be posted in this channel.")
        if isinstance(exc, discord.Forbidden):
            raise InputError(
                "I could not post in this channel, so nothing was charged. Ask a moderator "
                "to let me send messages and embed links here, or use another channel."
            ) from None
        if isinstance(exc, discord.HTTPException):
            # Not a permission problem: Discord refused the message itself (a 400) or was
            # failing (5xx). Never send the member to a moderator for that.
            reference = secrets.token_hex(4)
            log.error("job %d: status message refused by Discord (%s %s: %s; reference %s)",
                      job.id, exc.status, exc.code, exc.text, reference)
            raise UserFacingError(
                f"Discord did not accept the job's status message (error {exc.status}), so "
                f"nothing was started or charged. Please try again; if it keeps happening, "
                f"tell the bot's operator the reference `{reference}`.") from None
        if isinstance(exc, Exception):
            reference = secrets.token_hex(4)
            log.error("job %d: setting it up failed (reference %s)", job.id, reference,
                      exc_info=exc)
            raise UserFacingError(
                f"Something went wrong on our side while starting the job (reference "
                f"`{reference}`). It was cancelled, so nothing was charged.") from None

    async def _post_status(self, job: Job, channel: Any, perms: discord.Permissions
                           ) -> tuple[int, int | None]:
        """Post the job's status message and start its thread where it can: the message's
        id, and the thread's (None: the job is delivered right in `channel`)."""
        message = await channel.send(embed=self.board.embed(job, None),
                                     view=queued_view(job.id), allowed_mentions=NO_PINGS)
        if not isinstance(channel, discord.TextChannel):
            return message.id, None  # already a thread (or a channel without threads)
        if not perms.create_public_threads:
            self._log_no_thread(channel.id, "no Create Public Threads permission")
            return message.id, None
        try:
            thread = await channel.create_thread(
                name=thread_name(job.id, job.request.prompt), message=message,
                auto_archive_duration=THREAD_ARCHIVE_MINUTES)
        except discord.HTTPException as exc:
            if exc.code == THREAD_ALREADY_CREATED:
                # A retry after a 5xx whose thread Discord had in fact made: a thread
                # started from a message has that message's id. Use it, not the channel.
                return message.id, message.id
            self._log_no_thread(channel.id, f"{exc.status} {exc.code}")
            return message.id, None
        return message.id, thread.id

    def _log_no_thread(self, channel_id: int, why: str) -> None:
        if channel_id not in self._no_thread_logged:
            self._no_thread_logged.add(channel_id)
            log.warning("cannot create threads in channel %d (%s); delivering in the channel",
                        channel_id, why)


def _requester(interaction: discord.Interaction, channel: Any) -> Requester:
    assert interaction.guild_id is not None
    member = interaction.user
    return Requester(
        guild_id=interaction.guild_id, user_id=member.id, channel_id=channel.id,
        parent_channel_id=channel.parent_id if isinstance(channel, discord.Thread) else None,
        role_ids=frozenset(r.id for r in getattr(member, "roles", ())))


def _check_can_post(channel: Any, perms: discord.Permissions) -> None:
    in_thread = isinstance(channel, discord.Thread)
    can_send = perms.send_messages_in_threads if in_thread else perms.send_messages
    if not (can_send and perms.embed_links and perms.view_channel):
        raise InputError(
            "I cannot post in this channel (I need View Channel, Send Messages and Embed "
            "Links). Ask a moderator to allow that, or use `/ref2video` in another channel. "
            "Nothing was charged.")


async def _quietly(read: Awaitable[Job | None]) -> Job | None:
    try:
        return await read
    except Exception:  # noqa: BLE001 - the database is failing: we cannot know
        return None


async def _channel(interaction: discord.Interaction, channel_id: int) -> Any:
    """The channel an offer was made in (the interaction's own, usually)."""
    if interaction.channel is not None and interaction.channel.id == channel_id:
        return interaction.channel
    found = interaction.client.get_channel(channel_id)
    if found is not None:
        return found
    try:
        return await interaction.client.fetch_channel(channel_id)
    except discord.HTTPException:
        raise UserFacingError("The channel this was asked in is gone, so nothing was "
                              "started or charged.") from None
