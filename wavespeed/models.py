"""Typed shapes of the WAN 2.6 reference-to-video contract (shared/wavespeed-wan26-ref2video.md)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

MODEL_PATH = "alibaba/wan-2.6/reference-to-video"

SIZES: tuple[str, ...] = ("1280*720", "720*1280", "1920*1080", "1080*1920")
DURATIONS: tuple[int, ...] = (5, 10)
SHOT_TYPES: tuple[str, ...] = ("single", "multi")
SEED_MIN = -1
SEED_MAX = 2_147_483_647
MAX_VIDEOS = 2
# The history endpoint's `status` filter; "processing" also covers tasks still "created".
HISTORY_STATUSES: tuple[str, ...] = ("completed", "failed", "processing")

# Date, time to the second, optional fraction, optional Z or +hh:mm / +hhmm. ASCII digits only.
_TIMESTAMP = re.compile(
    r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:[.,](\d+))?(Z|[+-]\d{2}:?\d{2})?",
    re.IGNORECASE | re.ASCII,
)


class TaskStatus(StrEnum):
    CREATED = "created"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    # Not in the model page, but the contract says clients must treat these as terminal failures.
    CANCELLED = "cancelled"
    TIMEOUT = "timeout"
    DELETED = "deleted"

    @property
    def is_terminal(self) -> bool:
        return self not in (TaskStatus.CREATED, TaskStatus.PROCESSING)

    @classmethod
    def parse(cls, value: object) -> TaskStatus | str:
        """The member for a known status; any other value as a string, meaning "in progress".

        WaveSpeed's SDK polls on through any status it does not know (`pending`, `queued`,
        ...), ending only at completed/failed/cancelled/timeout; so do we, rather than calling
        the reply malformed and giving up on a task that exists and bills.
        """
        text = value.strip().lower() if isinstance(value, str) else ""
        try:
            return cls(text)
        except ValueError:
            return text or "unknown"


def status_is_terminal(status: TaskStatus | str) -> bool:
    """Only the enum's terminal members end a task; unknown statuses are still running."""
    return isinstance(status, TaskStatus) and status.is_terminal


def parse_timestamp(text: object) -> datetime | None:
    """An ISO 8601 date-time as an aware UTC datetime; None when absent or unparsable.

    WaveSpeed writes `2025-05-19T06:09:15.948268264Z`: nanoseconds, which datetime cannot hold,
    so a fraction of any length is truncated to microseconds (not rounded: truncation keeps a
    comparison with a microsecond bound the same as the server's nanosecond one). Z or an
    offset (+02:00, -0530) is accepted; a time without one is taken as UTC, the only zone
    WaveSpeed reports in. A date without a time, or anything else, is None.
    """
    if not isinstance(text, str):
        return None
    match = _TIMESTAMP.fullmatch(text.strip())
    if match is None:
        return None
    base, fraction, zone = match.groups()
    micros = (fraction or "")[:6].ljust(6, "0")
    offset = "+00:00" if zone is None or zone.upper() == "Z" else zone
    try:
        return datetime.fromisoformat(f"{base}.{micros}{offset}").astimezone(UTC)
    except (ValueError, OverflowError):  # month 13, hour 25, year 1 shifted before year 1
        return None


def resolution_of(size: str) -> str:
    """'720p' or '1080p' for a WaveSpeed size string."""
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, not {size!r}")
    return "1080p" if "1080" in size.split("*") else "720p"


@dataclass(frozen=True)
class GenerationRequest:
    """The body of one submit POST. Validated on construction so a bad one never costs money."""

    videos: tuple[str, ...]
    prompt: str
    negative_prompt: str | None = None
    audio: str | None = None
    size: str = "1280*720"
    duration: int = 5
    shot_type: str = "single"
    enable_prompt_expansion: bool = False
    seed: int = -1

    def __post_init__(self) -> None:
        if not 1 <= len(self.videos) <= MAX_VIDEOS:
            raise ValueError(f"videos must hold 1 to {MAX_VIDEOS} URLs, not {len(self.videos)}")
        if any(not isinstance(v, str) or not v for v in self.videos):
            raise ValueError("every video must be a non-empty URL")
        if not self.prompt.strip():
            raise ValueError("prompt must not be empty")
        resolution_of(self.size)
        if self.duration not in DURATIONS:
            raise ValueError(f"duration must be 5 or 10 seconds, not {self.duration}")
        if self.shot_type not in SHOT_TYPES:
            raise ValueError(f"shot_type must be single or multi, not {self.shot_type!r}")
        if isinstance(self.seed, bool) or not SEED_MIN <= self.seed <= SEED_MAX:
            raise ValueError(f"seed must be between {SEED_MIN} and {SEED_MAX}, not {self.seed}")

    @property
    def resolution(self) -> str:
        return resolution_of(self.size)

    def to_json(self) -> dict[str, Any]:
        """The submit body; optional text fields are left out when unset."""
        body: dict[str, Any] = {
            "videos": list(self.videos),
            "prompt": self.prompt,
            "size": self.size,
            "duration": self.duration,
            "shot_type": self.shot_type,
            "enable_prompt_expansion": self.enable_prompt_expansion,
            "seed": self.seed,
        }
        if self.negative_prompt:
            body["negative_prompt"] = self.negative_prompt
        if self.audio:
            body["audio"] = self.audio
        return body

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> GenerationRequest:
        return cls(
            videos=tuple(data["videos"]),
            prompt=data["prompt"],
            negative_prompt=data.get("negative_prompt"),
            audio=data.get("audio"),
            size=data.get("size", "1280*720"),
            duration=int(data.get("duration", 5)),
            shot_type=data.get("shot_type", "single"),
            enable_prompt_expansion=bool(data.get("enable_prompt_expansion", False)),
            seed=int(data.get("seed", -1)),
        )


@dataclass(frozen=True)
class Prediction:
    """`data` of a submit or result reply."""

    id: str
    # A TaskStatus member when known; an unknown status is kept as its (lowercased) text.
    status: TaskStatus | str
    outputs: tuple[str, ...] = ()
    has_nsfw_contents: tuple[bool, ...] = ()
    error: str | None = None
    model: str | None = None
    created_at: str | None = None
    inference_ms: int | None = None

    @property
    def is_terminal(self) -> bool:
        return status_is_terminal(self.status)

    @property
    def succeeded(self) -> bool:
        return self.status is TaskStatus.COMPLETED and bool(self.outputs)

    @property
    def output_is_nsfw(self) -> bool:
        return bool(self.has_nsfw_contents and self.has_nsfw_contents[0])

    @property
    def created(self) -> datetime | None:
        """`created_at` as an aware UTC datetime (see parse_timestamp); None if unusable."""
        return parse_timestamp(self.created_at)

    @classmethod
    def from_data(cls, data: Any) -> Prediction:
        """Parse `data`; raises ValueError (the client turns it into MalformedResponseError)."""
        if not isinstance(data, dict):
            raise ValueError("data is not an object")
        task_id = data.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise ValueError("data.id is missing")
        status = TaskStatus.parse(data.get("status"))
        outputs = data.get("outputs") or []
        nsfw = data.get("has_nsfw_contents") or []
        if not isinstance(outputs, list) or not all(isinstance(o, str) for o in outputs):
            raise ValueError("data.outputs is not a list of URLs")
        if not isinstance(nsfw, list):
            raise ValueError("data.has_nsfw_contents is not a list")
        timings = data.get("timings") or {}
        inference = timings.get("inference") if isinstance(timings, dict) else None
        error = data.get("error")
        return cls(
            id=task_id,
            status=status,
            outputs=tuple(outputs),
            has_nsfw_contents=tuple(bool(x) for x in nsfw),
            error=str(error) if error else None,
            model=data.get("model") if isinstance(data.get("model"), str) else None,
            created_at=data.get("created_at") if isinstance(data.get("created_at"), str) else None,
            inference_ms=(int(inference) if isinstance(inference, int | float)
                          and math.isfinite(inference) else None),  # 1e400 parses as inf
        )


@dataclass(frozen=True)
class History:
    """What `WaveSpeedClient.predictions` found, newest first, each task once.

    `complete` is False when the walk stopped at its page limit with pages left, or when an
    item could not be parsed (it is then missing here): the caller has not seen everything.
    """

    items: tuple[Prediction, ...]
    complete: bool


@dataclass(frozen=True)
class UploadTicket:
    """`data` of `POST /api/v3/media/uploads` (the SDK's direct upload): PUT the bytes to
    `put_url` with exactly `put_headers`, then use `download_url`."""

    put_url: str
    put_headers: dict[str, str]
    download_url: str

    @classmethod
    def from_data(cls, data: Any) -> UploadTicket:
        """Parse `data`; raises ValueError when it is not a PUT instruction we can follow."""
        if not isinstance(data, dict):
            raise ValueError("data is not an object")
        instruction = data.get("upload")
        if not isinstance(instruction, dict):
            raise ValueError("data.upload is missing")
        method = instruction.get("method")
        if not isinstance(method, str) or method.upper() != "PUT":
            raise ValueError(f"data.upload.method is {method!r}, not PUT")
        url = instruction.get("url")
        if not isinstance(url, str) or not url:
            raise ValueError("data.upload.url is missing")
        headers = instruction.get("headers") or {}
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError("data.upload.headers is not an object of strings")
        download_url = data.get("download_url")
        if not isinstance(download_url, str) or not download_url:
            raise ValueError("data.download_url is missing")
        return cls(put_url=url, put_headers=dict(headers), download_url=download_url)
