"""Which reference copies WaveSpeed keeps, and until when."""

from __future__ import annotations

from storage.database import Database
from storage.media import RETENTION_SECONDS, MediaStore


async def test_expiry_is_the_soonest_copy_and_unknown_urls_are_not_ours(db: Database) -> None:
    now = [1_000_000.0]
    store = MediaStore(db, clock=lambda: now[0])
    await store.record(url="https://ws/media/a", kind="video", size=10, seconds=3.0,
                       sha256="aa")
    now[0] += 3600
    await store.record(url="https://ws/media/b", kind="audio", size=10, seconds=3.0,
                       sha256="bb")
    assert await store.expiry(["https://ws/media/a", "https://ws/media/b"]) == (
        1_000_000.0 + RETENTION_SECONDS)
    assert await store.expiry(["https://ws/media/a", "https://cdn.discordapp.com/x"]) is None
    # A URL uploaded again holds the new upload, with its own retention.
    now[0] += 86400
    again = await store.record(url="https://ws/media/a", kind="video", size=12, seconds=4.0,
                               sha256="a2")
    assert (again.uploaded_at, again.sha256, again.bytes) == (1_000_000.0 + 90000, "a2", 12)
    assert again.expires_at == again.uploaded_at + RETENTION_SECONDS
