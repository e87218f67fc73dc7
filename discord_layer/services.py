"""What the cogs are given: the core's stores and engine, the Discord layer's parts, and the
settings they need. The bot (bot.Ref2VideoBot) builds one when it is made and keeps it as
its `services`."""

from __future__ import annotations

from dataclasses import dataclass

import discord

from admission.gatekeeper import Gatekeeper
from admission.input_rules import InputLimits
from config import Settings
from discord_layer.audit import AuditLog
from discord_layer.balance_watch import BalanceWatch
from discord_layer.cost_watch import CostWatch
from discord_layer.job_actions import JobActions
from discord_layer.job_starter import JobStarter
from discord_layer.status import StatusBoard
from engine.engine import JobEngine
from media.intake import ReferenceIntake
from storage.credits import CreditStore
from storage.guild_settings import GuildSettingsStore
from storage.jobs import JobStore
from storage.media import MediaStore
from storage.usage import GuildUsage


@dataclass(frozen=True)
class Services:
    settings: Settings          # the prices too: settings.prices
    credits: CreditStore
    jobs: JobStore
    engine: JobEngine
    board: StatusBoard
    input_limits: InputLimits
    guild_settings: GuildSettingsStore
    usage: GuildUsage
    gatekeeper: Gatekeeper
    audit: AuditLog
    balance: BalanceWatch
    costs: CostWatch            # WaveSpeed's price per option, and the margin
    media: MediaStore           # the reference copies kept at WaveSpeed
    intake: ReferenceIntake     # download, probe and keep a member's references
    starter: JobStarter
    actions: JobActions         # what the buttons do; /jobs cancel too


def services_of(bot: discord.Client) -> Services:
    """The bot's services, for a cog's `setup(bot)` (discord.py types it a plain Bot)."""
    services = getattr(bot, "services", None)
    if not isinstance(services, Services):
        raise RuntimeError("the bot has no services: build it with bot.Ref2VideoBot")
    return services
