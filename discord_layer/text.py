"""Rendering user-supplied text safely: quoted, markdown-escaped, mention-defused, sized.

Escaping is the second line of defence; the first is that every message the bot sends uses
`NO_PINGS` or `only_pinging(user)` as its allowed_mentions.
"""

from __future__ import annotations

import discord

from storage.jobs import Job
from wavespeed.models import GenerationRequest

NO_PINGS = discord.AllowedMentions.none()
MAX_AMOUNT = 10_000_000  # the most credits a command option takes (grant, set, allowance...)

SIZE_LABELS: dict[str, str] = {
    "1280*720": "720p landscape 1280x720",
    "720*1280": "720p portrait 720x1280",
    "1920*1080": "1080p landscape 1920x1080",
    "1080*1920": "1080p portrait 1080x1920",
}


def only_pinging(user_id: int) -> discord.AllowedMentions:
    """Ping the requester and no one else, whatever the text contains."""
    return discord.AllowedMentions(everyone=False, roles=False, replied_user=False,
                                   users=[discord.Object(user_id)])


# Simulate mode (WAVESPEED_MODE=simulate): every message the bot posts carries this.
SIMULATED_NOTE = "🧪 Simulated: made locally, not by WaveSpeed; the operator pays nothing"


def simulated(client: discord.Client) -> bool:
    """Whether this bot runs in simulate mode (`Ref2VideoBot.simulated`)."""
    return getattr(client, "simulated", False) is True


def stamped(content: str | None, client: discord.Client, limit: int = 2000) -> str | None:
    """`content` with the simulate-mode note as its last line (within `limit`); unchanged
    outside simulate mode."""
    if not simulated(client):
        return content
    note = f"-# {SIMULATED_NOTE}"
    if not content:
        return note
    return f"{shorten(content, limit - len(note) - 1)}\n{note}"


def stamp_embed(embed: discord.Embed, client: discord.Client) -> discord.Embed:
    """`embed` with the simulate-mode note, whole, at the end of its footer (once), within
    Discord's 2,048 characters a footer and 6,000 an embed may hold (the description gives
    way); unchanged outside simulate mode."""
    footer = embed.footer.text or ""
    if not simulated(client) or footer.endswith(SIMULATED_NOTE):
        return embed
    tail = f" · {SIMULATED_NOTE}" if footer else SIMULATED_NOTE
    footer = shorten(footer, 2048 - len(tail)) if footer else ""
    over = len(embed) - len(embed.footer.text or "") + len(footer) + len(tail) - 6000
    if over > 0 and embed.description:
        embed.description = shorten(embed.description, max(1, len(embed.description) - over))
    embed.set_footer(text=footer + tail)
    return embed


def shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)].rstrip() + "…"


def quote(text: str, limit: int) -> str:
    """`text` as a Markdown block quote that its own markdown and mentions cannot escape,
    at most `limit` characters long.

    Lines are split as `str.splitlines()` splits them (\\r, \\u2028, \\x1c... not only
    \\n), and each costs its "> " prefix and joining newline: budgeting for \\n alone let
    a prompt of line separators grow past Discord's 1,024-character field limit."""
    out: list[str] = []
    used = 0
    # Split first, escape each line: markdown's line-start syntax (headings, quotes, lists)
    # must be escaped on every line the quote will show, whatever separated them.
    for raw in text.splitlines() or [""]:
        line = discord.utils.escape_mentions(discord.utils.escape_markdown(raw))
        cost = len(line) + 2 + (1 if out else 0)   # "> " and the "\n" before it
        if used + cost > limit:
            room = limit - used - (3 if out else 2) - 1   # prefix, newline and "…"
            if room > 0:
                out.append(f"> {line[:room].rstrip()}…")
            elif out:
                out[-1] = out[-1][: max(2, len(out[-1]) - 1)] + "…"
            break
        out.append(f"> {line}")
        used += cost
    result = "\n".join(out) or ">"
    return result[:limit]


def thread_name(job_id: int, prompt: str) -> str:
    """1-100 characters, one line, no markdown needed (names are shown as plain text)."""
    flat = " ".join(prompt.split())
    return shorten(f"#{job_id} {flat}", 100)


def describe_settings(request: GenerationRequest) -> str:
    seed = "random" if request.seed == -1 else str(request.seed)
    expansion = "on" if request.enable_prompt_expansion else "off"
    refs = f"{len(request.videos)} video{'s' if len(request.videos) > 1 else ''}"
    if request.audio:
        refs += " + audio"
    return (f"{SIZE_LABELS.get(request.size, request.size)} · {request.duration} s · "
            f"{request.shot_type} shot · prompt expansion {expansion} · seed {seed} · {refs}")


def credits_text(amount: int, usd: float) -> str:
    return f"{amount:,} credit{'s' if amount != 1 else ''} (${usd:,.2f})"


def timestamp(unix: float, style: str = "R") -> str:
    """A Discord timestamp, which each reader's client renders (and keeps current) itself."""
    return f"<t:{int(unix)}:{style}>"


def job_link(job: Job) -> str:
    if job.thread_id:
        return f"https://discord.com/channels/{job.guild_id}/{job.thread_id}"
    if job.status_message_id:
        return (f"https://discord.com/channels/{job.guild_id}/{job.channel_id}/"
                f"{job.status_message_id}")
    return f"https://discord.com/channels/{job.guild_id}/{job.channel_id}"
