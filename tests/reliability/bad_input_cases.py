"""The rows of the bad input table (tests/reliability/test_bad_input.py): every option of
every slash command and the Use as reference form, at and beyond its limits.

A row either is refused (`says`: the words of the problem and its fix that the private
answer must hold) or is accepted (`ok`: what the answer says instead), which is how the
table proves each boundary from both sides. `discord=True` marks a value Discord itself
refuses before the bot sees it (outside the declared choices, range or length): the row
then checks the emulator refuses it, and sends it again past those checks (a forged or
malformed interaction) to check the bot refuses it too. `forged=True` sends a value only a
forged interaction could carry (NaN), without asking the emulator first."""

from __future__ import annotations

import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from discord_emulator.emulator import Channel, MessageRecord, Role
from tests.e2e.scene import Scene
from tests.hostile_media import png_bytes
from tests.media import make_audio, make_mp4, make_video

MB = 1024 * 1024
VIDEO_LIMIT = MB  # the scene's MAX_VIDEO_BYTES: small, so a real file can sit exactly at it
AUDIO_LIMIT = 20 * MB  # MAX_AUDIO_BYTES' default
PROMPT_LIMIT = 1500  # MAX_PROMPT_CHARS' default
SEED_MAX = 2**31 - 1
MAX_AMOUNT = 10_000_000  # discord_layer.text.MAX_AMOUNT, the range every amount option declares
INT53 = 2**53 - 1  # the largest INTEGER Discord carries
WHO = Literal["alice", "bob", "admin"]


@dataclass
class Bench:
    """A scene with what the rows refer to: a mentionable role, an audit channel, and
    (for /jobs and the buttons) alice's delivered first job and its clip."""

    s: Scene
    role: Role
    audit: Channel
    clip: MessageRecord | None = None

    def video(self, name: str = "ref.mp4", data: bytes | None = None,
              content_type: str | None = "video/mp4", *,
              declared_size: int | None = None) -> dict[str, Any]:
        return self.s.emu.add_attachment(name, make_mp4() if data is None else data,
                                         content_type, declared_size=declared_size)


Options = Callable[[Bench], dict[str, Any]]
After = Callable[[Bench, MessageRecord], Awaitable[None]]


@dataclass(frozen=True)
class Case:
    what: str
    command: str
    subcommand: str | None = None
    group: str | None = None
    options: Options = lambda b: {}
    user: WHO = "alice"
    says: tuple[str, ...] = ()  # refused: the answer holds each of these
    ok: str = ""  # accepted: the answer holds this
    discord: bool = False  # Discord refuses it first (then sent again past its checks)
    forged: bool = False  # only a forged interaction carries it
    after: After | None = None  # more checks of an accepted row


def padded_mp4(size: int) -> bytes:
    """A real MP4 of exactly `size` bytes: a top-level `free` box, which every reader skips,
    makes up the difference."""
    data = make_mp4()
    pad = size - len(data)
    assert pad >= 8, "the MP4 is larger than the size asked for"
    return data + struct.pack(">I", pad) + b"free" + b"\0" * (pad - 8)


def tree_says(option: str, *words: str) -> tuple[str, ...]:
    """What the bot's own option check answers (discord_layer.tree.option_problem)."""
    return (f"`{option}`", *words, "Nothing was changed or charged")


# ---- /ref2video ------------------------------------------------------------------------------

CONTROL = "Remove it"
EMPTY = ("`prompt` is empty", "Describe the clip you want")


def r2v(what: str, prompt: str = "a cat surfing a wave", *, says: tuple[str, ...] = (),
        discord: bool = False, after: After | None = None, **extra: Any) -> Case:
    def options(b: Bench) -> dict[str, Any]:
        made = {k: (v(b) if callable(v) else v) for k, v in extra.items()}
        made.setdefault("video", b.video())
        return {"prompt": prompt, **made}

    return Case(what, "ref2video", options=options, says=says, discord=discord,
                ok="" if says else "is queued", after=after)


def mentions(b: Bench) -> str:
    """A prompt that would ping everyone, a role and bob if echoed carelessly."""
    return f"@everyone @here <@&{b.role.id}> <@{b.s.bob.id}> a cat on stage"


REF2VIDEO: list[Case] = [
    # prompt
    r2v("prompt empty", "", discord=True, says=tree_says("prompt", "is empty")),
    r2v("prompt only spaces", "   \t  ", says=EMPTY),
    r2v("prompt only zero-width characters (U+200B, U+FEFF)", "\u200b\ufeff\u200b",
        says=EMPTY),
    r2v("prompt only line separators and zero-width joiners", "\u2028\u200d\u2029 \u200c",
        says=EMPTY),
    r2v(f"prompt at MAX_PROMPT_CHARS ({PROMPT_LIMIT})", "c" * PROMPT_LIMIT),
    r2v(f"prompt one over MAX_PROMPT_CHARS ({PROMPT_LIMIT + 1})", "c" * (PROMPT_LIMIT + 1),
        says=(f"`prompt` is {PROMPT_LIMIT + 1} characters; the limit is {PROMPT_LIMIT}",
              "Shorten it")),
    r2v("prompt at the declared 6,000", "c" * 6000,
        says=("`prompt` is 6000 characters", "Shorten it")),
    r2v("prompt one over the declared 6,000", "c" * 6001, discord=True,
        says=tree_says("prompt", "6,001 characters", "Shorten it")),
    r2v("prompt of 100,000 characters", "c" * 100_000, discord=True,
        says=tree_says("prompt", "100,000 characters", "Shorten it")),
    r2v("prompt with NUL", "a cat\x00 surfing", says=("U+0000", CONTROL)),
    r2v("prompt with ESC (a terminal escape)", "a cat \x1b[31msurfing", says=("U+001B", CONTROL)),
    r2v("prompt with BEL", "a cat\x07", says=("U+0007", CONTROL)),
    r2v("prompt with DEL", "a cat\x7f", says=("U+007F", CONTROL)),
    r2v("prompt with a lone surrogate", "a cat \ud800 surfing",
        says=("U+D800", "broken character", "Remove it")),
    r2v("prompt with line separators U+2028/U+2029 (line breaks: accepted, sent as typed)",
        "a cat\u2028surfing\u2029a wave"),
    r2v("prompt with zero-width characters inside words (accepted)", "a c\u200bat\ufeff surfing"),
    r2v("prompt with a right-to-left override U+202E (accepted, sent as typed)",
        "a cat \u202egnifrus\u202c on a wave"),
    # negative_prompt
    r2v("negative_prompt empty", negative_prompt="", discord=True,
        says=tree_says("negative_prompt", "is empty")),
    r2v("negative_prompt only spaces (ignored, accepted)", negative_prompt="   "),
    r2v("negative_prompt one over MAX_PROMPT_CHARS", negative_prompt="n" * (PROMPT_LIMIT + 1),
        says=(f"`negative_prompt` is {PROMPT_LIMIT + 1} characters", "Shorten it")),
    r2v("negative_prompt of 100,000 characters", negative_prompt="n" * 100_000, discord=True,
        says=tree_says("negative_prompt", "100,000 characters")),
    r2v("negative_prompt with NUL", negative_prompt="blur\x00", says=("`negative_prompt`",
                                                                      "U+0000", CONTROL)),
    # video
    r2v(f"video exactly MAX_VIDEO_BYTES ({VIDEO_LIMIT:,} bytes, accepted)",
        video=lambda b: b.video("exact.mp4", padded_mp4(VIDEO_LIMIT))),
    r2v("video one byte over MAX_VIDEO_BYTES",
        video=lambda b: b.video("big.mp4", padded_mp4(VIDEO_LIMIT + 1)),
        says=(f"`video` is {VIDEO_LIMIT + 1:,} bytes; the limit is {VIDEO_LIMIT:,} bytes",
              "Trim or compress")),
    r2v("video declared 2 GB",
        video=lambda b: b.video("huge.mp4", declared_size=2048 * MB),
        says=("`video` is 2048.0 MB; the limit is 1.0 MB", "Trim or compress")),
    r2v("video zero bytes", video=lambda b: b.video("empty.mp4", b""),
        says=("`video` (`empty.mp4`) is empty", "Attach the file again")),
    r2v("video a text file", video=lambda b: b.video("notes.txt", b"hello", "text/plain"),
        says=("`video` must be a video", "`notes.txt` is text/plain", "Attach a video file")),
    r2v("video with no content type", video=lambda b: b.video("clip.bin", make_mp4(), None),
        says=("`video` must be a video", "Attach a video file")),
    r2v("video an MP4 renamed .png", video=lambda b: b.video("clip.png", make_mp4(),
                                                             "image/png"),
        says=("`video` must be a video", "`clip.png` is image/png")),
    r2v("video a PNG renamed .mp4", video=lambda b: b.video("still.mp4", png_bytes()),
        says=("`video` (`still.mp4`) is not a video file I can read", "Attach an MP4 or MOV")),
    r2v("video an audio file", video=lambda b: b.video("song.mp3", make_audio(fmt="mp3"),
                                                       "audio/mpeg"),
        says=("`video` must be a video", "`song.mp3` is audio/mpeg")),
    # video2 and audio
    r2v("video2 a PNG", video2=lambda b: b.video("pic.png", png_bytes(), "image/png"),
        says=("`video2` must be a video", "`pic.png` is image/png")),
    r2v("video2 zero bytes", video2=lambda b: b.video("empty2.mp4", b""),
        says=("`video2` (`empty2.mp4`) is empty",)),
    r2v("every attachment option at once: video, video2 and audio (the most, accepted)",
        video2=lambda b: b.video("second.mov", make_video(fmt="mov"), "video/quicktime"),
        audio=lambda b: b.video("song.mp3", make_audio(fmt="mp3"), "audio/mpeg")),
    r2v("audio a video", audio=lambda b: b.video("clip2.mp4"),
        says=("`audio` must be an audio file", "`clip2.mp4` is video/mp4",
              "Attach an audio file")),
    r2v("audio zero bytes", audio=lambda b: b.video("silence.mp3", b"", "audio/mpeg"),
        says=("`audio` (`silence.mp3`) is empty",)),
    r2v("audio declared one byte over MAX_AUDIO_BYTES",
        audio=lambda b: b.video("long.mp3", make_audio(fmt="mp3"), "audio/mpeg",
                                declared_size=AUDIO_LIMIT + 1),
        says=(f"`audio` is {AUDIO_LIMIT + 1:,} bytes; the limit is {AUDIO_LIMIT:,} bytes",)),
    # size, duration, shot_type: choices
    r2v("size not a choice (4K)", size="3840*2160", discord=True,
        says=tree_says("size", "must be one of", "`1280*720`")),
    r2v("size 1080p portrait (a choice, accepted)", size="1080*1920"),
    r2v("duration 7 s (not a choice)", duration=7, discord=True,
        says=tree_says("duration", "must be one of `5`, `10`")),
    r2v("duration 0", duration=0, discord=True, says=tree_says("duration", "must be one of")),
    r2v("duration 10 s (a choice, accepted)", duration=10),
    r2v("shot_type not a choice", shot_type="triple", discord=True,
        says=tree_says("shot_type", "must be one of `single`, `multi`")),
    # seed
    r2v("seed -2", seed=-2, discord=True,
        says=tree_says("seed", "from -1 to 2,147,483,647")),
    r2v("seed 2^31", seed=2**31, discord=True,
        says=tree_says("seed", "from -1 to 2,147,483,647")),
    r2v("seed 2^63", seed=2**63, discord=True,
        says=tree_says("seed", "from -1 to 2,147,483,647")),
    r2v("seed -1 (random, the lowest, accepted)", seed=-1),
    r2v("seed 2^31-1 (the highest, accepted)", seed=SEED_MAX),
]


# ---- /credits -------------------------------------------------------------------------------

def credit(sub: str, what: str, amount: int | None, *, says: tuple[str, ...] = (),
           ok: str = "", discord: bool = False, user: WHO = "admin", target: WHO = "alice",
           reason: str | None = None) -> Case:
    def options(b: Bench) -> dict[str, Any]:
        member = {"alice": b.s.alice, "bob": b.s.bob, "admin": b.s.admin}[target]
        opts: dict[str, Any] = {"user": member}
        if amount is not None:
            opts["amount"] = amount
        if reason is not None:
            opts["reason"] = reason
        return opts

    return Case(what, "credits", sub, options=options, user=user, says=says, ok=ok,
                discord=discord)


AMOUNT = f"from 1 to {MAX_AMOUNT:,}"

CREDITS: list[Case] = [
    credit("grant", "grant 0", 0, discord=True, says=tree_says("amount", AMOUNT)),
    credit("grant", "grant -1", -1, discord=True, says=tree_says("amount", AMOUNT)),
    credit("grant", "grant MAX_AMOUNT + 1", MAX_AMOUNT + 1, discord=True,
           says=tree_says("amount", AMOUNT)),
    credit("grant", "grant 2^53", 2**53, discord=True, says=tree_says("amount", AMOUNT)),
    credit("grant", "grant 2^63", 2**63, discord=True, says=tree_says("amount", AMOUNT)),
    credit("grant", "grant -2^63", -(2**63), discord=True, says=tree_says("amount", AMOUNT)),
    credit("grant", "grant 1 (the least, accepted)", 1, ok="Granted 1 credits"),
    credit("grant", "grant MAX_AMOUNT (the most, accepted)", MAX_AMOUNT,
           ok=f"Granted {MAX_AMOUNT:,} credits"),
    credit("grant", "grant by a member without Manage Server", 5, user="alice",
           says=("You need the **Manage Server** permission",)),
    credit("grant", "grant with an empty reason", 5, reason="", discord=True,
           says=tree_says("reason", "is empty")),
    credit("grant", "grant with a 201-character reason", 5, reason="r" * 201, discord=True,
           says=tree_says("reason", "201 characters")),
    credit("grant", "grant with a 200-character reason (the most, accepted)", 5,
           reason="r" * 200, ok="Granted 5 credits"),
    credit("revoke", "revoke 0", 0, discord=True, says=tree_says("amount", AMOUNT)),
    credit("revoke", "revoke -5 (a grant in disguise)", -5, discord=True,
           says=tree_says("amount", AMOUNT)),
    credit("revoke", "revoke 2^63", 2**63, discord=True, says=tree_says("amount", AMOUNT)),
    credit("revoke", "revoke more than the balance", MAX_AMOUNT, target="bob",
           says=("has only 0 credits to take", "Revoke at most that")),
    credit("revoke", "revoke by a member without Manage Server", 1, user="bob",
           says=("You need the **Manage Server** permission",)),
    credit("set", "set -1", -1, discord=True,
           says=tree_says("amount", f"from 0 to {MAX_AMOUNT:,}")),
    credit("set", "set MAX_AMOUNT + 1", MAX_AMOUNT + 1, discord=True,
           says=tree_says("amount", f"from 0 to {MAX_AMOUNT:,}")),
    credit("set", "set 2^63", 2**63, discord=True,
           says=tree_says("amount", f"from 0 to {MAX_AMOUNT:,}")),
    credit("set", "set 0 (the least, accepted)", 0, target="bob", ok="balance is now 0"),
    credit("set", "set by a member without Manage Server", 1, user="alice",
           says=("You need the **Manage Server** permission",)),
    credit("balance", "balance of another member, asked by a member", None, user="alice",
           target="bob", says=("You need the **Manage Server** permission",)),
    Case("history page 0", "credits", "history", options=lambda b: {"page": 0},
         discord=True, says=tree_says("page", "from 1 to 100,000")),
    Case("history page 100,001", "credits", "history", options=lambda b: {"page": 100_001},
         discord=True, says=tree_says("page", "from 1 to 100,000")),
    Case("history page -2^63", "credits", "history", options=lambda b: {"page": -(2**63)},
         discord=True, says=tree_says("page", "from 1 to 100,000")),
    Case("history page 100,000 (the most: the last page shown, accepted)", "credits",
         "history", options=lambda b: {"page": 100_000}, ok="History of"),
]


def credit_mentions(b: Bench) -> dict[str, Any]:
    return {"user": b.s.alice, "amount": 3, "reason": f"@everyone <@&{b.role.id}> for the contest"}


CREDITS.append(Case("grant with @everyone and a role in its reason (accepted, pings nobody)",
                    "credits", "grant", options=credit_mentions, user="admin",
                    ok="Granted 3 credits"))


# ---- /jobs ----------------------------------------------------------------------------------

def cancel(what: str, job: int | Callable[[Bench], int], *, says: tuple[str, ...],
           discord: bool = False, user: WHO = "alice") -> Case:
    def options(b: Bench) -> dict[str, Any]:
        return {"job": job(b) if callable(job) else job}

    return Case(what, "jobs", "cancel", options=options, user=user, says=says, discord=discord)


JOB_RANGE = f"from 1 to {INT53:,}"

JOBS: list[Case] = [
    cancel("cancel job 0", 0, discord=True, says=tree_says("job", JOB_RANGE)),
    cancel("cancel job -1", -1, discord=True, says=tree_says("job", JOB_RANGE)),
    cancel("cancel job 2^53", 2**53, discord=True, says=tree_says("job", JOB_RANGE)),
    cancel("cancel job 2^63", 2**63, discord=True, says=tree_says("job", JOB_RANGE)),
    cancel("cancel job 2^53-1 (the most Discord carries; no such job)", INT53,
           says=(f"There is no job #{INT53} in this server", "`/jobs list`")),
    cancel("cancel a job that does not exist", 999_999,
           says=("There is no job #999999 in this server", "`/jobs list`")),
    cancel("cancel someone else's job", 1, user="bob",
           says=("Job #1 is not yours", "cannot cancel it")),
    cancel("cancel one's own job that was delivered", 1,
           says=("Job #1 is delivered", "only queued jobs can")),
    Case("list (no options, accepted)", "jobs", "list", ok=""),
]


# ---- /settings and /admin -------------------------------------------------------------------

def setting(sub: str, what: str, group: str | None = None, *,
            options: Options = lambda b: {}, says: tuple[str, ...] = (), ok: str = "",
            discord: bool = False, forged: bool = False, user: WHO = "admin") -> Case:
    return Case(what, "settings", sub, group, options=options, user=user, says=says, ok=ok,
                discord=discord, forged=forged)


def limit_row(option: str, value: float, span: str, **kw: Any) -> Case:
    return setting("limits", f"limits {option} {value!r}",
                   options=lambda b: {option: value}, says=tree_says(option, span), **kw)


SETTINGS: list[Case] = [
    setting("show", "show by a member without Manage Server", user="alice",
            says=("You need the **Manage Server** permission",)),
    limit_row("daily_jobs", -1, "from 0 to 100,000", discord=True),
    limit_row("daily_jobs", 100_001, "from 0 to 100,000", discord=True),
    limit_row("daily_jobs", 2**63, "from 0 to 100,000", discord=True),
    limit_row("cooldown_seconds", 7 * 86_400 + 1, "from 0 to 604,800", discord=True),
    limit_row("concurrent_jobs", 101, "from 0 to 100", discord=True),
    limit_row("concurrent_jobs", -1, "from 0 to 100", discord=True),
    limit_row("daily_spend_cap_usd", -0.01, "from 0 to 1,000,000", discord=True),
    limit_row("daily_spend_cap_usd", 1_000_000.01, "from 0 to 1,000,000", discord=True),
    limit_row("daily_spend_cap_usd", float("inf"), "from 0 to 1,000,000", discord=True),
    limit_row("daily_spend_cap_usd", float("nan"), "from 0 to 1,000,000", forged=True),
    setting("limits", "limits at their highest (accepted)", options=lambda b: {
        "daily_jobs": 100_000, "cooldown_seconds": 7 * 86_400, "concurrent_jobs": 100,
        "daily_spend_cap_usd": 1_000_000}, ok="Limits updated"),
    setting("limits", "limits all 0: off (the lowest, accepted)", options=lambda b: {
        "daily_jobs": 0, "cooldown_seconds": 0, "concurrent_jobs": 0,
        "daily_spend_cap_usd": 0}, ok="Limits updated"),
    setting("nsfw", "nsfw policy not a choice", options=lambda b: {"policy": "maybe"},
            discord=True, says=tree_says("policy", "must be one of `withhold`, `spoiler`")),
    setting("nsfw", "nsfw charge not a choice", options=lambda b: {"charge": "half"},
            discord=True, says=tree_says("charge", "must be one of")),
    setting("allowance", "allowance amount -1", options=lambda b: {"amount": -1},
            discord=True, says=tree_says("amount", f"from 0 to {MAX_AMOUNT:,}")),
    setting("allowance", "allowance amount MAX_AMOUNT + 1",
            options=lambda b: {"amount": MAX_AMOUNT + 1}, discord=True,
            says=tree_says("amount", f"from 0 to {MAX_AMOUNT:,}")),
    setting("allowance", "allowance amount 2^63", options=lambda b: {"amount": 2**63},
            discord=True, says=tree_says("amount", f"from 0 to {MAX_AMOUNT:,}")),
    setting("allowance", "allowance period not a choice", options=lambda b: {"period": "year"},
            discord=True, says=tree_says("period", "must be one of `day`, `week`")),
    setting("allowance", "allowance MAX_AMOUNT a week for a role (the most, accepted)",
            options=lambda b: {"amount": MAX_AMOUNT, "period": "week", "role": b.role},
            ok="Allowance:"),
    setting("allowance", "allowance 0: off (the least, accepted)",
            options=lambda b: {"amount": 0}, ok="Allowance:"),
    setting("add", "blocklist add an empty pattern", "blocklist",
            options=lambda b: {"pattern": ""}, discord=True, says=tree_says("pattern", "empty")),
    setting("add", "blocklist add a 201-character pattern", "blocklist",
            options=lambda b: {"pattern": "p" * 201}, discord=True,
            says=tree_says("pattern", "201 characters")),
    setting("add", "blocklist add kind not a choice", "blocklist",
            options=lambda b: {"pattern": "cat", "kind": "glob"}, discord=True,
            says=tree_says("kind", "must be one of `word`, `regex`")),
    setting("add", "blocklist add a regex that does not compile", "blocklist",
            options=lambda b: {"pattern": "(unclosed", "kind": "regex"}, says=("Not added",)),
    setting("add", "blocklist add a regex with lookahead", "blocklist",
            options=lambda b: {"pattern": "(?=cat)", "kind": "regex"}, says=("Not added",)),
    setting("add", "blocklist add a pattern of only zero-width characters", "blocklist",
            options=lambda b: {"pattern": "\u200b\ufeff"}, says=("Not added",)),
    setting("add", "blocklist add a 200-character word (the most, accepted)", "blocklist",
            options=lambda b: {"pattern": "p" * 200}, ok="the word entry:"),
    setting("add", "blocklist add @everyone (accepted, echoed without a ping)", "blocklist",
            options=lambda b: {"pattern": "@everyone"}, ok="the word entry:"),
    setting("remove", "blocklist remove an empty entry", "blocklist",
            options=lambda b: {"pattern": ""}, discord=True, says=tree_says("pattern", "empty")),
    setting("remove", "blocklist remove a 1,001-character entry", "blocklist",
            options=lambda b: {"pattern": "p" * 1001}, discord=True,
            says=tree_says("pattern", "1,001 characters")),
    setting("remove", "blocklist remove an entry it does not have", "blocklist",
            options=lambda b: {"pattern": "not there"},
            says=("The blocklist has no entry", "`/settings blocklist list`")),
    setting("list", "blocklist list page 0", "blocklist", options=lambda b: {"page": 0},
            discord=True, says=tree_says("page", "from 1 to 1,000")),
    setting("list", "blocklist list page 1,001", "blocklist",
            options=lambda b: {"page": 1001}, discord=True,
            says=tree_says("page", "from 1 to 1,000")),
    setting("list", "blocklist list page 1,000 (the most: the last page, accepted)",
            "blocklist", options=lambda b: {"page": 1000}, ok=""),
    setting("required", "role required @everyone", "role",
            options=lambda b: {"role": b.s.guild.everyone},
            says=("Everyone has @everyone", "Pick another role")),
    setting("blocked", "role blocked @everyone", "role",
            options=lambda b: {"role": b.s.guild.everyone},
            says=("Everyone has @everyone", "Pick another role")),
]

ADMIN: list[Case] = [
    Case("pause by a member without Manage Server", "admin", "pause", user="alice",
         says=("You need the **Manage Server** permission",)),
    Case("pause with an empty message", "admin", "pause", user="admin",
         options=lambda b: {"message": ""}, discord=True, says=tree_says("message", "empty")),
    Case("pause with a 501-character message", "admin", "pause", user="admin",
         options=lambda b: {"message": "m" * 501}, discord=True,
         says=tree_says("message", "501 characters")),
    Case("pause with a 100,000-character message", "admin", "pause", user="admin",
         options=lambda b: {"message": "m" * 100_000}, discord=True,
         says=tree_says("message", "100,000 characters")),
    Case("pause with a 500-character message (the most, accepted)", "admin", "pause",
         user="admin", options=lambda b: {"message": "m" * 500}, ok="paused"),
    Case("resume (no options, accepted)", "admin", "resume", user="admin", ok="resumed"),
    Case("resume when not paused", "admin", "resume", user="admin",
         says=("not paused", "nothing changed")),
    Case("status (no options, accepted)", "admin", "status", user="admin", ok=""),
]
