"""Checking a user's reference video or audio file before any credits are reserved.

`probe_media` opens the (already downloaded) file with PyAV in a child process
(media/probe_worker.py) whose address space and CPU time are capped, killed after
`ProbeLimits.timeout_seconds` or when the caller is cancelled; the event loop never
blocks (subprocess APIs, file system calls in threads). It returns what the file is, or
raises ProbeRejected with a message for the user naming the option, the problem and the
fix. Limits are Alibaba's for WAN 2.6 references: MP4 or MOV, 2-30 s, at most 100 MB.

Each probe is one child, ~0.15 s for a small MP4 (most of it Python and FFmpeg
starting); nothing is shared between probes, so any number may run at once (callers
bound how many).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import secrets
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from media.child_process import ChildTimeout, run_child

MAX_FILENAME_CHARS: Final = 80
EXIT_MEMORY: Final = 4  # media/probe_worker.py's exit code when it ran out of memory
_WORKER: Final = "media.probe_worker"


@dataclass(frozen=True)
class ProbeLimits:
    """What a file must be within (WAN 2.6's reference limits), and what checking it may
    cost."""

    min_seconds: float = 2.0
    max_seconds: float = 30.0
    max_bytes: int = 100 * 1024 * 1024  # checked before any child is started
    min_side: int = 32  # each side of the picture within [min_side, max_side]
    max_side: int = 4096
    timeout_seconds: float = 15.0  # wall time for one probe, child included
    # The child's address space (RLIMIT_AS, not RSS). Python with PyAV maps ~120 MiB
    # before reading anything; a small MP4 needs ~130 MiB in all, 4096x2160 H.264 ~240.
    memory_bytes: int = 768 * 1024 * 1024


@dataclass(frozen=True)
class MediaInfo:
    """A file that passed. For kind "audio", only its sound was checked (width, height
    and video_codec are None even for a video file with sound)."""

    kind: str  # "video" or "audio"
    container: str  # "mp4", "mov", "m4a", "3gp"; "mp3", "wav", "aac", "ogg", "flac"
    seconds: float
    width: int | None
    height: int | None
    video_codec: str | None
    audio_codec: str | None


class ProbeRejected(Exception):
    """The file cannot be used; str() is a user-facing message naming the option and the
    fix."""


async def probe_media(path: Path, *, option: str, kind: Literal["video", "audio"],
                      limits: ProbeLimits = ProbeLimits(),
                      filename: str | None = None) -> MediaInfo:
    """Check the file at `path` (local, already downloaded) for the slash-command option
    `option` ("video", "video2", "audio"); `filename` is the user's name for it, shown
    (cleaned) in some messages. Raises ProbeRejected; OSError if `path` cannot be read
    at all (the caller's bug, not the user's). Cancelling kills the child."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.timeout_seconds
    words = _Words(option, kind, limits, clean_filename(filename))
    size, absolute = await asyncio.to_thread(_size_and_path, path)
    if size == 0:
        raise ProbeRejected(words.message("not_media", {}))
    if size > limits.max_bytes:
        raise ProbeRejected(words.message("too_large", {"bytes": size}))
    # Beside the file, in the caller's directory (the intake's, which it always removes),
    # not a temporary directory of its own that a cancellation could leave behind.
    out = Path(absolute).with_name(f".probe-{secrets.token_hex(8)}.json")
    try:
        try:
            code = await run_child(
                _WORKER, [absolute, kind, str(out), json.dumps(dataclasses.asdict(limits))],
                time_limit=max(0.0, deadline - loop.time()))
        except ChildTimeout:
            raise ProbeRejected(words.message("timeout", {})) from None
        result = await asyncio.to_thread(_read_result, out)
    finally:
        with contextlib.suppress(OSError):
            await asyncio.to_thread(out.unlink, missing_ok=True)
    return _verdict(code, result, words)


def clean_filename(name: str | None) -> str | None:
    """A user's file name safe to show inside backticks: printable characters only, no
    backticks, at most MAX_FILENAME_CHARS; None when nothing is left."""
    if name is None:
        return None
    kept = "".join(ch for ch in name if ch.isprintable() and ch != "`")
    kept = " ".join(kept.split())
    if len(kept) > MAX_FILENAME_CHARS:
        kept = kept[: MAX_FILENAME_CHARS - 1].rstrip() + "…"
    return kept or None


def _size_and_path(path: Path) -> tuple[int, str]:
    return path.stat().st_size, str(path.absolute())  # the child runs in another cwd


def _read_result(out: Path) -> dict[str, Any] | None:
    try:
        result = json.loads(out.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None


def _verdict(code: int, result: dict[str, Any] | None, words: _Words) -> MediaInfo:
    if code == 0 and result is not None and result.get("verdict") == "ok":
        return MediaInfo(kind=str(result["kind"]), container=str(result["container"]),
                         seconds=float(result["seconds"]), width=result["width"],
                         height=result["height"], video_codec=result["video_codec"],
                         audio_codec=result["audio_codec"])
    if code == 0 and result is not None and result.get("verdict") == "reject":
        raise ProbeRejected(words.message(str(result.get("reason")), result))
    if code == EXIT_MEMORY:
        raise ProbeRejected(words.message("memory", {}))
    if code == -signal.SIGXCPU:  # its CPU time ran out
        raise ProbeRejected(words.message("timeout", {}))
    raise ProbeRejected(words.message("crash", {}))


@dataclass(frozen=True)
class _Words:
    option: str
    kind: str
    limits: ProbeLimits
    filename: str | None

    def message(self, reason: str, facts: dict[str, Any]) -> str:
        """The user's message for a rejection `reason` with the worker's `facts`."""
        limits = self.limits
        video = self.kind == "video"
        it = f"`{self.option}`"
        named = f"{it} (`{self.filename}`)" if self.filename else it
        what = "references" if video else "audio files"
        span = f"{limits.min_seconds:g}-{limits.max_seconds:g} s"
        export = "export it as H.264 MP4" if video else "export it as MP3 or WAV"
        if reason == "not_media":
            if video:
                return f"{named} is not a video file I can read. Attach an MP4 or MOV video."
            return (f"{named} is not an audio file I can read. "
                    "Attach an MP3, WAV or M4A file.")
        if reason in ("damaged", "cut_short"):
            return (f"{named} seems damaged or cut short (it could not be read to the end). "
                    "Upload the complete file again.")
        if reason == "too_large":
            size, limit = _bytes(int(facts["bytes"]), limits.max_bytes)
            return (f"{named} is {size}; files must be at most {limit}. "
                    "Trim or compress it and try again.")
        if reason == "container":
            kind = _CONTAINER_WORDS.get(str(facts.get("container")),
                                        str(facts.get("container", "")).upper())
            if video:
                return (f"{named} is a {kind} file; references must be MP4 or MOV. "
                        "Convert it to an H.264 MP4 and try again.")
            return (f"{named} is a {kind} file; audio must be MP3, WAV, M4A, AAC, OGG or "
                    "FLAC. Convert it to MP3 and try again.")
        if reason == "no_video":
            if facts.get("has_audio"):
                return f"{named} has no video track, only sound. Attach a video file."
            return f"{named} has no video track. Attach an MP4 or MOV video."
        if reason == "no_audio":
            return f"{named} has no sound. Attach an MP3, WAV or M4A file."
        if reason == "codec":
            codec = clean_filename(str(facts.get("codec"))) or "unknown"
            reader = "the model cannot read" if video else "I cannot use for audio"
            return f"{it} uses the {codec} codec, which {reader}; {export}."
        if reason == "resolution":
            width, height = int(facts["width"]), int(facts["height"])
            fix = (f"Scale it down to at most {limits.max_side} pixels a side"
                   if max(width, height) > limits.max_side
                   else f"Export it at least {limits.min_side} pixels a side")
            return (f"{it} is {width}x{height}; each side must be "
                    f"{limits.min_side}-{limits.max_side} pixels. {fix} (e.g. 1280x720).")
        if reason == "no_size":
            return (f"{it} does not say how large its pictures are, or they are too large "
                    f"to read. Export it again as H.264 MP4 at most "
                    f"{limits.max_side}x{limits.max_side}.")
        if reason == "duration":
            seconds = float(facts["seconds"])
            if seconds < limits.min_seconds:
                length, fix = _seconds(seconds, limits.min_seconds), "Attach a longer clip."
            else:
                length = _seconds(seconds, limits.max_seconds)
                fix = f"Trim it to at most {limits.max_seconds:g} s and try again."
            return f"{it} is {length} s long; {what} must be {span}. {fix}"
        if reason == "no_duration":
            return (f"{it} does not say how long it is. Export it again "
                    f"({export.removeprefix('export it ')}, {span}).")
        if reason == "timeout":
            return (f"{it} took too long to check. Export it again as a plain "
                    f"{'H.264 MP4' if video else 'MP3 or WAV'} and try again.")
        if reason == "memory":
            return (f"{it} needs too much memory to open. Export it again "
                    f"{'at a lower resolution as H.264 MP4' if video else 'as MP3 or WAV'}.")
        # "crash", or a reason this version does not know
        return (f"{it} could not be checked: the reader crashed on it, so it is probably "
                f"damaged. Export it again ({export.removeprefix('export it ')}).")


_CONTAINER_WORDS: Final = {"matroska": "WebM/MKV", "ogg": "Ogg", "mov": "MOV", "mp4": "MP4"}


def _seconds(value: float, limit: float) -> str:
    """`value` with one decimal, or more when one would make it look like `limit`."""
    for digits in (1, 2, 3):
        text = f"{value:.{digits}f}"
        if float(text) != limit:
            return text
    return f"{value:.3f}"


def _bytes(size: int, limit: int) -> tuple[str, str]:
    """`size` and `limit` in MB (KB below one), e.g. ("150.3 MB", "100 MB"); with more
    decimals when one would make the size look like the limit."""
    unit, scale = ("MB", 2**20) if limit >= 2**20 else ("KB", 2**10)
    shown = f"{limit / scale:.2f}".rstrip("0").rstrip(".")
    for digits in (1, 2, 3):
        text = f"{size / scale:.{digits}f}"
        if text.rstrip("0").rstrip(".") != shown:
            break
    return f"{text} {unit}", f"{shown} {unit}"
