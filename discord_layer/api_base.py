"""Pointing discord.py at another Discord API root (DISCORD_API_BASE_URL).

discord.py builds every REST URL, interaction callbacks and webhooks included, from
`Route.BASE`. A plain Client still opens the default gateway without asking the API, so
the gateway URL is read from that base's `/gateway/bot` after login.
"""

from __future__ import annotations

import discord.http
import yarl
from discord.gateway import DiscordWebSocket

DEFAULT_API_BASE = "https://discord.com/api/v10"
DEFAULT_GATEWAY = yarl.URL("wss://gateway.discord.gg/")


def use_api_base(base_url: str | None) -> None:
    discord.http.Route.BASE = (base_url or DEFAULT_API_BASE).rstrip("/")
    if base_url is None:
        DiscordWebSocket.DEFAULT_GATEWAY = DEFAULT_GATEWAY


async def use_gateway_of(http: discord.http.HTTPClient) -> str:
    """Ask the API base where its gateway is, and connect there."""
    _, url, _ = await http.get_bot_gateway()
    DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(url)
    return url
