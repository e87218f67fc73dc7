"""ReferenceIntake on its own: nothing is uploaded unless every file of a command passes,
one member's files cannot hold every slot, and nothing is left in the work directory
whatever happens. Files are real (probed by the real child process); the download and
upload are local functions over bytes, with their own timing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from media.intake import Attached, IntakeError, ReferenceIntake
from media.probe import ProbeLimits
from storage.database import Database
from storage.media import MediaStore
from tests.media import make_audio, make_mp4


class Remote:
    """What the intake downloads from (url -> bytes, with a delay) and uploads to."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.delay: dict[str, float] = {}
        self.uploaded: list[tuple[str, str, bytes]] = []
        self.active: dict[str, int] = {}
        self.most_active: dict[str, int] = {}

    async def download(self, url: str, dest: Path, max_bytes: int) -> int:
        who = url.split("/")[2]
        self.active[who] = self.active.get(who, 0) + 1
        self.most_active[who] = max(self.most_active.get(who, 0), self.active[who])
        try:
            await asyncio.sleep(self.delay.get(url, 0.0))
            data = self.files[url]
            await asyncio.to_thread(dest.write_bytes, data)
            return len(data)
        finally:
            self.active[who] -= 1

    async def upload(self, path: Path, filename: str, content_type: str) -> str:
        data = await asyncio.to_thread(path.read_bytes)
        self.uploaded.append((filename, content_type, data))
        return f"https://ws.example/media/{len(self.uploaded)}/{filename}"


@pytest.fixture
def remote() -> Remote:
    return Remote()


@pytest.fixture
def intake(db: Database, remote: Remote, tmp_path: Path) -> Iterator[ReferenceIntake]:
    yield ReferenceIntake(download=remote.download, upload=remote.upload,
                          media=MediaStore(db), workdir=tmp_path / "intake",
                          video_limits=ProbeLimits(), audio_limits=ProbeLimits(),
                          parallel=3, per_owner=2, wait_seconds=5.0)


def attach(remote: Remote, who: str, option: str, data: bytes, *, kind: str = "video",
           filename: str = "clip.mp4", delay: float = 0.0) -> Attached:
    url = f"https://{who}/{option}/{filename}"
    remote.files[url] = data
    remote.delay[url] = delay
    return Attached(option, "video" if kind == "video" else "audio", url, filename,
                    "video/x-msvideo", len(data))


async def test_good_files_are_kept_in_order_with_the_probed_type(
        intake: ReferenceIntake, remote: Remote, db: Database, tmp_path: Path) -> None:
    first = attach(remote, "alice", "video", make_mp4(seconds=3.0), delay=0.2)
    second = attach(remote, "alice", "video2", make_mp4(seconds=2.5))
    kept = await intake.take([first, second], owner="alice")
    assert [k.option for k in kept] == ["video", "video2"]
    uploaded = {url: data for url, (_, _, data) in zip(
        [f"https://ws.example/media/{i + 1}" for i in range(2)], remote.uploaded, strict=True)}
    for k, file in zip(kept, (first, second), strict=True):
        number = k.url.split("/media/")[1].split("/")[0]
        assert uploaded[f"https://ws.example/media/{number}"] == remote.files[file.url]
        stored = await MediaStore(db).get(k.url)
        assert stored is not None and stored.seconds == k.info.seconds
    by_url = {k.url: k for k in kept}
    # The member declared video/x-msvideo; WaveSpeed is told what the probe found.
    assert {ct for _, ct, _ in remote.uploaded} == {"video/mp4"}
    assert all(name.startswith("reference-") and "clip" not in name
               for name, _, _ in remote.uploaded)
    assert len(by_url) == 2
    assert list((tmp_path / "intake").iterdir()) == []


async def test_a_bad_sibling_means_nothing_is_uploaded(
        intake: ReferenceIntake, remote: Remote, tmp_path: Path) -> None:
    good = attach(remote, "mallory", "video", make_mp4(seconds=3.0))
    bad = attach(remote, "mallory", "audio", make_audio(fmt="mp3", seconds=45.0),
                 kind="audio", filename="song.mp3", delay=0.5)
    with pytest.raises(IntakeError, match=r"`audio` is 45\.0 s long"):
        await intake.take([good, bad], owner="mallory")
    assert remote.uploaded == []
    assert list((tmp_path / "intake").iterdir()) == []


async def test_one_members_commands_never_hold_every_slot(
        intake: ReferenceIntake, remote: Remote) -> None:
    # Three slots; mallory sends three commands of two files at once.
    burst = [asyncio.create_task(intake.take(
        [attach(remote, "mallory", f"v{i}-{j}", make_mp4(seconds=3.0), delay=0.4)
         for j in range(2)], owner="mallory")) for i in range(3)]
    await asyncio.sleep(0.05)
    alice = attach(remote, "alice", "video", make_mp4(seconds=3.0))
    started = asyncio.get_running_loop().time()
    await intake.take([alice], owner="alice")
    waited = asyncio.get_running_loop().time() - started
    assert waited < 0.4, f"alice waited {waited:.2f} s behind mallory's burst"
    assert remote.most_active["mallory"] <= 2 * 2  # two commands of two files at a time
    await asyncio.gather(*burst)
    assert len(remote.uploaded) == 7


async def test_a_command_waiting_too_long_for_a_slot_is_told_to_try_later(
        db: Database, remote: Remote, tmp_path: Path) -> None:
    intake = ReferenceIntake(download=remote.download, upload=remote.upload,
                             media=MediaStore(db), workdir=tmp_path / "intake",
                             video_limits=ProbeLimits(), audio_limits=ProbeLimits(),
                             parallel=1, wait_seconds=0.2)
    slow = asyncio.create_task(intake.take(
        [attach(remote, "bob", "video", make_mp4(seconds=3.0), delay=1.0)], owner="bob"))
    await asyncio.sleep(0.05)
    with pytest.raises(IntakeError, match="Try again in a few minutes"):
        await intake.take([attach(remote, "alice", "video", make_mp4(seconds=3.0))],
                          owner="alice")
    await slow
    assert len(remote.uploaded) == 1 and list((tmp_path / "intake").iterdir()) == []


async def test_a_cancelled_intake_leaves_nothing_behind(
        intake: ReferenceIntake, remote: Remote, tmp_path: Path) -> None:
    slow = attach(remote, "alice", "video", make_mp4(seconds=3.0), delay=5.0)
    task = asyncio.create_task(intake.take([slow], owner="alice"))
    await asyncio.sleep(0.2)
    assert list((tmp_path / "intake").iterdir()) != []  # under way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list((tmp_path / "intake").iterdir()) == []
    assert remote.uploaded == []
