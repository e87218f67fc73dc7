"""What the cogs are given: the core's stores and engine, and the settings they need."""

from __future__ import annotations

from dataclasses import dataclass

import discord

from config import Settings
from discord_layer.audit import AuditLog
from discord_layer.balance_watch import BalanceWatch
from discord_layer.job_starter import JobStarter
from discord_layer.status import StatusBoard
from engine.admission import Gatekeeper
from engine.engine import JobEngine
from engine.input_rules import InputLimits
from engine.pricing import PriceTable
from storage.credits import CreditStore
from storage.database import Database
from storage.guild_settings import GuildSettingsStore
from storage.jobs import JobStore
from storage.offers import OfferStore


@dataclass(frozen=True)
class Services:
    settings: Settings
    prices: PriceTable
    credits: CreditStore
    jobs: JobStore
    engine: JobEngine
    board: StatusBoard
    input_limits: InputLimits
    guild_settings: GuildSettingsStore
    db: Database
    gatekeeper: Gatekeeper
    audit: AuditLog
    balance: BalanceWatch
    offers: OfferStore
    starter: JobStarter


def services_of(bot: discord.Client) -> Services:
    """The bot's services; the composition root (bot.py) sets `bot.services`."""
    services = getattr(bot, "services", None)
    if not isinstance(services, Services):
        raise RuntimeError("the bot has no services: build it with bot.Ref2VideoBot")
    return services
