"""Taking in a member's reference files before anything is charged: download each one
(bounded bytes and time), probe it (media/probe.py, in a child process), and keep a copy in
WaveSpeed's media storage, whose URL the job then carries instead of a Discord link.

Discord-free: the Discord layer turns attachments into `Attached` values and shows an
`IntakeError`'s message as is. Every failure costs nothing: no credits are reserved yet.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import shutil
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TypeVar

from admission.input_rules import InputError
from media.probe import MediaInfo, ProbeLimits, ProbeRejected, probe_media
from storage.media import MediaStore
from wavespeed.errors import OutputTooLargeError, UnsafeOutputURLError, WaveSpeedError

log = logging.getLogger(__name__)

Download = Callable[[str, Path, int], Awaitable[int]]   # (url, dest, max_bytes) -> bytes
Upload = Callable[[Path, str, str], Awaitable[str]]     # (path, filename, type) -> url

DOWNLOAD_SECONDS = 120.0   # one reference from Discord's CDN, however slowly it trickles
# A command's answer must come within Discord's 15 minutes (the interaction token's life):
WAIT_SECONDS = 180.0       # waiting for a slot, at most
WORK_SECONDS = 540.0       # downloads, probes and uploads of one command, at most
_CONTENT_TYPES = {"mp4": "video/mp4", "mov": "video/quicktime", "m4a": "audio/mp4",
                  "mp3": "audio/mpeg", "wav": "audio/wav", "aac": "audio/aac",
                  "ogg": "audio/ogg", "flac": "audio/flac"}
T = TypeVar("T")
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
    # What a member can do when it cannot be fetched: attach it again, or for a posted
    # clip (Use as reference), which has nothing to attach, send it with /ref2video.
    again: str = "Attach the file again."


@dataclass(frozen=True)
class Kept:
    """A reference WaveSpeed now keeps: the URL to submit, and what the probe saw."""

    option: str
    url: str
    info: MediaInfo


@dataclass(frozen=True)
class _Checked:
    file: Attached
    path: Path
    info: MediaInfo


@dataclass
class _Turn:
    """One owner's share of the slots, dropped when nothing of theirs waits."""

    semaphore: asyncio.Semaphore
    users: int = 0


class ReferenceIntake:
    def __init__(
        self, *, download: Download, upload: Upload, media: MediaStore, workdir: Path,
        video_limits: ProbeLimits, audio_limits: ProbeLimits, parallel: int = 3,
        per_owner: int = 2, download_seconds: float = DOWNLOAD_SECONDS,
        wait_seconds: float = WAIT_SECONDS, work_seconds: float = WORK_SECONDS,
    ) -> None:
        self._download = download
        self._upload = upload
        self._media = media
        self._workdir = workdir
        self._limits = {"video": video_limits, "audio": audio_limits}
        self._download_seconds = download_seconds
        self._wait_seconds = wait_seconds
        self._work_seconds = work_seconds
        # Across all commands: a burst must not start a hundred downloads and probes at once,
        # nor hold a hundred 100 MB files on disk.
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

    async def take(self, files: Sequence[Attached], *, owner: object = None,
                   ready: Callable[[], Awaitable[None]] | None = None) -> list[Kept]:
        """Every file checked and kept, in order; or IntakeError for the first (in option
        order) that cannot be, with the others stopped. Nothing is uploaded until every
        file has passed its probe, so a refused command leaves nothing at WaveSpeed.

        A command holds one of `parallel` slots from its first download to its last upload,
        so at most that many commands' files are on disk at once; `owner` (a member) holds
        at most `per_owner` of them. A command that waits longer than `wait_seconds` for a
        slot, or takes longer than `work_seconds` once it has one, is refused: its answer
        must still reach the member within Discord's 15 minutes.

        `ready` runs once the slot is held, before any download, and refuses by raising:
        a command whose credits went to the member's earlier commands while it waited is
        told then, not after its files were fetched, probed and stored for nothing."""
        async with self._turn(owner):
            if ready is not None:
                await ready()
            directory = self._workdir / f"intake-{secrets.token_hex(8)}"
            try:
                async with asyncio.timeout(self._work_seconds):
                    await asyncio.to_thread(directory.mkdir, parents=True)
                    checked = await _all_or_none(
                        [self._check(f, directory) for f in files])
                    return await _all_or_none([self._keep(c) for c in checked])
            except TimeoutError:
                raise IntakeError("Checking and storing the files took too long. Try again, "
                                  "or use smaller files. Nothing was charged.") from None
            finally:
                await asyncio.to_thread(shutil.rmtree, directory, True)

    @contextlib.asynccontextmanager
    async def _turn(self, owner: object) -> AsyncIterator[None]:
        """One of the owner's turns, then a slot (waiting at most `wait_seconds`)."""
        turn = self._owners.setdefault(owner, _Turn(asyncio.Semaphore(self._per_owner)))
        turn.users += 1
        try:
            try:
                async with asyncio.timeout(self._wait_seconds):
                    await turn.semaphore.acquire()
                    try:
                        await self._slots.acquire()
                    except BaseException:
                        turn.semaphore.release()
                        raise
            except TimeoutError:
                raise IntakeError("Too many files are being checked right now. Try again in "
                                  "a few minutes. Nothing was charged.") from None
            try:
                yield
            finally:
                self._slots.release()
                turn.semaphore.release()
        finally:
            turn.users -= 1
            if not turn.users:
                del self._owners[owner]

    async def _check(self, file: Attached, directory: Path) -> _Checked:
        limits = self._limits[file.kind]
        path = directory / f"{file.option}{_suffix(file)}"
        await self._fetch(file, path, limits)
        return _Checked(file, path, await _probe(file, path, limits))

    async def _keep(self, checked: _Checked) -> Kept:
        file, path = checked.file, checked.path
        digest = await asyncio.to_thread(_sha256, path)
        size = (await asyncio.to_thread(path.stat)).st_size
        # Stamped before the upload: WaveSpeed's 7 days may start as its bytes arrive.
        began = self._media.clock()
        url = await self._store(file, path, checked.info)
        await self._media.record(url=url, kind=file.kind, size=size,
                                 seconds=checked.info.seconds, sha256=digest,
                                 uploaded_at=began)
        return Kept(file.option, url, checked.info)

    async def _fetch(self, file: Attached, path: Path, limits: ProbeLimits) -> None:
        """The file's bytes, never more than Discord declared (nor than the limit)."""
        cap = limits.max_bytes if file.size is None else min(file.size, limits.max_bytes)
        name = f"`{file.option}`"
        try:
            async with asyncio.timeout(self._download_seconds):
                await self._download(file.url, path, cap)
        except TimeoutError:
            raise IntakeError(f"{name} took too long to download. Try again, or use a "
                              "smaller file. Nothing was charged.") from None
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
                f"{name} could not be downloaded ("
                f"{'it is no longer there' if gone else _why(exc)}). {file.again} "
                "Nothing was charged.") from None

    async def _store(self, file: Attached, path: Path, info: MediaInfo) -> str:
        suffix = _suffix(file)
        # The type the probe found, not the one the member's client declared.
        content_type = _CONTENT_TYPES.get(info.container) or (
            "video/mp4" if file.kind == "video" else "audio/mpeg")
        # Not the member's file name: it may say anything, and WaveSpeed's URL shows it.
        upload_name = f"reference-{secrets.token_hex(16)}{suffix}"
        try:
            return await self._upload(path, upload_name, content_type)
        except WaveSpeedError as exc:
            log.warning("could not keep %s at WaveSpeed (%s, status %s)", file.option,
                        type(exc).__name__, exc.status)
            later = ("Please try again in a minute" if exc.retryable or exc.status is None
                     else "Trying again will not help; re-export it as an H.264 MP4")
            raise IntakeError(
                f"`{file.option}` could not be stored at WaveSpeed ({_why(exc)}), so nothing "
                f"was started or charged. {later}.") from None


async def _all_or_none(work: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Every result in order; or the first failure in order, with the rest stopped."""
    tasks = [asyncio.create_task(w) for w in work]
    try:
        if tasks:
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
    return [r for r in results if not isinstance(r, BaseException)]


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
