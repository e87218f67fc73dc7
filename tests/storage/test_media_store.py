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
    # Recording a URL again does not make its copy younger.
    now[0] += 86400
    again = await store.record(url="https://ws/media/a", kind="video", size=10, seconds=3.0,
                               sha256="aa")
    assert again.uploaded_at == 1_000_000.0


async def test_the_same_bytes_are_reused_only_with_retention_to_spare(db: Database) -> None:
    now = [2_000_000.0]
    store = MediaStore(db, clock=lambda: now[0])
    await store.record(url="https://ws/media/a", kind="video", size=10, seconds=3.0,
                       sha256="cafe")
    found = await store.reusable("cafe", "video", for_at_least=86400)
    assert found is not None and found.url == "https://ws/media/a"
    assert await store.reusable("cafe", "audio", for_at_least=86400) is None
    now[0] += RETENTION_SECONDS - 3600  # an hour left: not enough for a queued job
    assert await store.reusable("cafe", "video", for_at_least=86400) is None
