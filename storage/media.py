"""Which reference files the bot keeps at WaveSpeed, and until when (migration 0007).

A reference is uploaded once, at admission; its WaveSpeed URL then goes into the job's
request. WaveSpeed keeps uploads for `RETENTION_SECONDS`, so before a Re-roll (or a queued
job's submit) reuses a request, `expiry()` says whether its files still exist there."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from storage.database import Database

RETENTION_SECONDS = 7 * 86400  # WaveSpeed's media storage keeps an upload this long


@dataclass(frozen=True)
class StoredMedia:
    url: str
    kind: str          # "video" or "audio"
    bytes: int
    seconds: float
    sha256: str
    uploaded_at: float
    expires_at: float


class MediaStore:
    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time,
                 retention: float = RETENTION_SECONDS) -> None:
        self.db = db
        self.clock = clock
        self.retention = retention

    async def record(self, *, url: str, kind: str, size: int, seconds: float, sha256: str,
                     uploaded_at: float | None = None) -> StoredMedia:
        """Remember an upload made at `uploaded_at` (now by default). A URL WaveSpeed
        names again (it stores by content, say) holds the latest upload: its bytes and
        retention are that upload's."""
        at = self.clock() if uploaded_at is None else uploaded_at
        async with self.db.transaction() as conn:
            await conn.execute(
                "INSERT INTO stored_media (url, kind, bytes, seconds, sha256, uploaded_at,"
                " expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (url) DO UPDATE SET"
                " kind = excluded.kind, bytes = excluded.bytes, seconds = excluded.seconds,"
                " sha256 = excluded.sha256, uploaded_at = excluded.uploaded_at,"
                " expires_at = excluded.expires_at",
                (url, kind, size, seconds, sha256, at, at + self.retention))
        found = await self.get(url)
        assert found is not None
        return found

    async def get(self, url: str) -> StoredMedia | None:
        async with self.db.reading() as conn, conn.execute(
            "SELECT * FROM stored_media WHERE url = ?", (url,)
        ) as cur:
            row = await cur.fetchone()
        return None if row is None else StoredMedia(
            row["url"], row["kind"], row["bytes"], row["seconds"], row["sha256"],
            row["uploaded_at"], row["expires_at"])

    async def expiry(self, urls: Iterable[str]) -> float | None:
        """When the first of these stored copies is gone; None if any URL is not one of
        ours (a Discord link of a job from before copies were kept: nothing to rely on)."""
        soonest: float | None = None
        for url in urls:
            stored = await self.get(url)
            if stored is None:
                return None
            soonest = stored.expires_at if soonest is None else min(soonest, stored.expires_at)
        return soonest
