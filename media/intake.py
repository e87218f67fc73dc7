"""Taking in a member's reference files before anything is charged: download each one
(bounded bytes and time), probe it (media/probe.py, in a child process), and keep a copy in
WaveSpeed's media storage, whose URL the job then carries instead of a Discord link.

Discord-free: the Discord layer turns attachments into `Attached` values and shows an
`IntakeError`'s message as is. Every failure costs nothing: no credits are reserved yet.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import shutil
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Literal

from admission.input_rules import InputError
from media.probe import MediaInfo, ProbeLimits, ProbeRejected, probe_media
from storage.media import MediaStore
from wavespeed.errors import OutputTooLargeError, UnsafeOutputURLError, WaveSpeedError

log = logging.getLogger(__name__)

Download = Callable[[str, Path, int], Awaitable[int]]   # (url, dest, max_bytes) -> bytes
Upload = Callable[[Path, str, str], Awaitable[str]]     # (path, filename, type) -> url

DOWNLOAD_SECONDS = 120.0   # one reference from Discord's CDN, however slowly it trickles
# An earlier copy of the same bytes is reused only with this much of its retention left, so
# a queued job or a Re-roll of it does not find it gone.
REUSE_MARGIN = 86400.0
_SUFFIXES = {"video": (".mp4", ".mov", ".m4v"),
             "audio": (".mp3", ".wav", ".m4a", ".aac", ".ogg", ".flac")}


class IntakeError(InputError):
    """A reference that cannot be used; the message names it and the fix. Nothing charged."""


@dataclass(frozen=True)
class Attached:
    """One file to take in, as Discord described it."""

    option: str                       # the command option: video, video2, audio
    kind: Literal["video", "audio"]
    url: str
    filename: str
    content_type: str | None
    size: int | None                  # Discord's declared size; None: unknown


@dataclass(frozen=True)
class Kept:
    """A reference WaveSpeed now keeps: the URL to submit, and what the probe saw."""

    option: str
    url: str
    info: MediaInfo
    reused: bool                      # an earlier upload of the same bytes


@dataclass
class _Turn:
    """One owner's share of the intake, dropped when nobody of theirs waits."""

    semaphore: asyncio.Semaphore
    users: int = 0


class ReferenceIntake:
    def __init__(
        self, *, download: Download, upload: Upload, media: MediaStore, workdir: Path,
        video_limits: ProbeLimits, audio_limits: ProbeLimits, parallel: int = 4,
        per_owner: int = 2, download_seconds: float = DOWNLOAD_SECONDS,
    ) -> None:
        self._download = download
        self._upload = upload
        self._media = media
        self._workdir = workdir
        self._limits = {"video": video_limits, "audio": audio_limits}
        self._download_seconds = download_seconds
        # Across all commands: a burst must not start a hundred downloads and probes at once.
        self._slots = asyncio.Semaphore(parallel)
        # Nor may one member's commands take every slot while others wait.
        self._per_owner = per_owner
        self._owners: dict[object, _Turn] = {}

    def clear_leftovers(self) -> None:
        """Remove what an intake cut short by a crash left in the work directory (blocking:
        call before serving, or in a thread)."""
        if self._workdir.is_dir():
            for stale in self._workdir.glob("intake-*"):
                shutil.rmtree(stale, ignore_errors=True)

    def limits(self, kind: str) -> ProbeLimits:
        return self._limits[kind]

    async def take(self, files: Sequence[Attached], *, owner: object = None) -> list[Kept]:
        """Every file checked and kept, in order; or IntakeError for the first (in option
        order) that cannot be, with the others stopped. One `owner` (a member) has at most
        `per_owner` of these under way at once; more wait their turn behind their own, so
        one member's burst never holds every slot while others wait."""
        if owner is None:
            return await self._take_all(files)
        turn = self._owners.setdefault(owner, _Turn(asyncio.Semaphore(self._per_owner)))
        turn.users += 1
        try:
            async with turn.semaphore:
                return await self._take_all(files)
        finally:
            turn.users -= 1
            if not turn.users:
                del self._owners[owner]

    async def _take_all(self, files: Sequence[Attached]) -> list[Kept]:
        tasks = [asyncio.create_task(self._take_one(f), name=f"intake-{f.option}")
                 for f in files]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:  # option order: the message names the first bad one
            if isinstance(result, BaseException) and not isinstance(
                    result, asyncio.CancelledError):
                raise result
        if any(isinstance(r, BaseException) for r in results):
            raise asyncio.CancelledError
        return [r for r in results if isinstance(r, Kept)]

    async def _take_one(self, file: Attached) -> Kept:
        limits = self._limits[file.kind]
        async with self._slots:
            await asyncio.to_thread(self._workdir.mkdir, parents=True, exist_ok=True)
            directory = Path(await asyncio.to_thread(
                tempfile.mkdtemp, prefix="intake-", dir=self._workdir))
            try:
                path = directory / f"{file.option}{_suffix(file)}"
                await self._fetch(file, path, limits)
                info = await _probe(file, path, limits)
                digest = await asyncio.to_thread(_sha256, path)
                earlier = await self._media.reusable(digest, file.kind, for_at_least=REUSE_MARGIN)
                if earlier is not None:
                    return Kept(file.option, earlier.url, info, reused=True)
                url = await self._store(file, path)
                size = (await asyncio.to_thread(path.stat)).st_size
                await self._media.record(url=url, kind=file.kind, size=size,
                                         seconds=info.seconds, sha256=digest)
                return Kept(file.option, url, info, reused=False)
            finally:
                await asyncio.to_thread(shutil.rmtree, directory, True)

    async def _fetch(self, file: Attached, path: Path, limits: ProbeLimits) -> None:
        """The file's bytes, never more than Discord declared (nor than the limit)."""
        cap = limits.max_bytes if file.size is None else min(file.size, limits.max_bytes)
        name = f"`{file.option}`"
        try:
            async with asyncio.timeout(self._download_seconds):
                await self._download(file.url, path, cap)
        except TimeoutError:
            raise IntakeError(f"{name} took too long to download from Discord. Try again, or "
                              "attach a smaller file. Nothing was charged.") from None
        except OutputTooLargeError:
            if file.size is not None and file.size < limits.max_bytes:
                raise IntakeError(f"{name} is larger than Discord said it was. Attach the "
                                  "file again. Nothing was charged.") from None
            raise IntakeError(f"{name} is over {_mb(limits.max_bytes)}, the limit for a "
                              f"reference. Trim or compress it and try again. Nothing was "
                              "charged.") from None
        except UnsafeOutputURLError:
            raise IntakeError(f"{name} is not at an address I download from. Attach the file "
                              "to the command itself. Nothing was charged.") from None
        except WaveSpeedError as exc:
            gone = exc.status in (403, 404, 410)
            raise IntakeError(
                f"{name} could not be downloaded from Discord ("
                f"{'its link has expired' if gone else _why(exc)}). Attach the file again. "
                "Nothing was charged.") from None

    async def _store(self, file: Attached, path: Path) -> str:
        suffix = _suffix(file)
        content_type = file.content_type or ("video/mp4" if file.kind == "video" else
                                             "audio/mpeg")
        # Not the member's file name: it may say anything, and WaveSpeed's URL shows it.
        upload_name = f"reference-{secrets.token_hex(4)}{suffix}"
        try:
            return await self._upload(path, upload_name, content_type.split(";")[0].strip())
        except WaveSpeedError as exc:
            log.warning("could not keep %s at WaveSpeed (%s, status %s)", file.option,
                        type(exc).__name__, exc.status)
            raise IntakeError(
                f"`{file.option}` could not be stored at WaveSpeed ({_why(exc)}), so nothing "
                "was started or charged. Please try again in a minute.") from None


async def _probe(file: Attached, path: Path, limits: ProbeLimits) -> MediaInfo:
    try:
        return await probe_media(path, option=file.option, kind=file.kind, limits=limits,
                                 filename=file.filename)
    except ProbeRejected as rejected:
        raise IntakeError(f"{rejected} Nothing was charged.") from None


def _suffix(file: Attached) -> str:
    suffix = PurePosixPath(file.filename.lower()).suffix
    allowed = _SUFFIXES[file.kind]
    return suffix if suffix in allowed else allowed[0]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def _why(exc: WaveSpeedError) -> str:
    return f"HTTP {exc.status}" if exc.status is not None else "no answer"


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB"


def limits_for(base: ProbeLimits, *, max_bytes: int, min_seconds: float,
               max_seconds: float) -> ProbeLimits:
    """The probe's limits with the operator's settings."""
    return replace(base, max_bytes=max_bytes, min_seconds=min_seconds, max_seconds=max_seconds)
