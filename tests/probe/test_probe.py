"""probe_media on real files, good and hostile: what passes, what each rejection says, that
the event loop never stalls while a child checks a file, and that no child is left over
after a timeout or a cancellation."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import pytest

from media import child_process
from media.probe import MediaInfo, ProbeLimits, ProbeRejected, clean_filename, probe_media
from tests.hostile_media import (
    claim_seconds,
    cut,
    declare_size,
    endless_samples,
    huge_moov,
    huge_samples,
    png_bytes,
)
from tests.media import make_audio, make_mp4, make_video
from tests.processes import live_children

T = TypeVar("T")
MAX_LAG_SECONDS = 0.1


# --- the table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], bytes]
    kind: Literal["video", "audio"] = "video"
    filename: str = "clip.mp4"
    limits: ProbeLimits = field(default_factory=ProbeLimits)
    info: MediaInfo | None = None  # expected when it passes
    says: tuple[str, ...] = ()  # in the message when it is rejected


def _video(container: str = "mp4", *, seconds: float = 3.0, side: int = 64,
           audio: str | None = None) -> MediaInfo:
    return MediaInfo(kind="video", container=container, seconds=seconds, width=side,
                     height=side, video_codec="h264", audio_codec=audio)


def _audio(container: str, codec: str) -> MediaInfo:
    return MediaInfo(kind="audio", container=container, seconds=3.0, width=None,
                     height=None, video_codec=None, audio_codec=codec)


NOT_A_VIDEO = ("(`clip.mp4`) is not a video file I can read", "Attach an MP4 or MOV")
DAMAGED = ("seems damaged or cut short", "Upload the complete file again")
PNG_CODEC = ("uses the png codec, which the model cannot read", "export it as H.264 MP4")
WEBM = ("WebM/MKV", "references must be MP4 or MOV", "Convert it")

CASES = [
    # Files that pass.
    Case("mp4", lambda: make_mp4(seconds=3.0), info=_video()),
    Case("faststart mp4", lambda: make_video(faststart=True), info=_video()),
    Case("mov", lambda: make_video(fmt="mov"), filename="clip.mov", info=_video("mov")),
    Case("mp4 with sound", lambda: make_video(sound=True), info=_video(audio="aac")),
    Case("exactly 2 s", lambda: make_video(seconds=2.0), info=_video(seconds=2.0)),
    # The headers' picture size lies; the decoder reads the real one from the stream.
    Case("h264 declaring 60000x60000", lambda: declare_size(make_video(), b"avc1", 60000),
         info=_video()),
    Case("moov claiming 4 GB", lambda: huge_moov(make_video(faststart=True)),
         info=_video()),
    # Not a video.
    Case("png renamed .mp4", png_bytes, says=NOT_A_VIDEO),
    Case("random bytes", lambda: os.urandom(4096), says=NOT_A_VIDEO),
    Case("zero bytes", lambda: b"", says=NOT_A_VIDEO),
    Case("audio-only mp4", lambda: make_audio(fmt="mp4"),
         says=("has no video track, only sound", "Attach a video file")),
    Case("mp3 as video", lambda: make_audio(fmt="mp3"), says=("only sound",)),
    Case("webm", lambda: make_video(fmt="webm"), filename="clip.webm", says=WEBM),
    Case("mkv", lambda: make_video(fmt="matroska", codec="libx264"), filename="clip.mkv",
         says=WEBM),
    # Damaged.
    Case("faststart mp4 cut at 60%", lambda: cut(make_video(faststart=True), 0.6),
         says=DAMAGED),
    Case("mp4 without its index (cut at 80%)", lambda: cut(make_video(), 0.8),
         says=DAMAGED),
    Case("samples claiming 2 GB each", lambda: huge_samples(make_video(faststart=True)),
         says=DAMAGED),
    Case("2^31 samples", lambda: endless_samples(make_video(faststart=True)),
         says=DAMAGED),
    # Codecs: image codecs are refused from the headers, before any picture is decoded.
    Case("png in mov", lambda: make_video(fmt="mov", codec="png"), says=PNG_CODEC),
    Case("png bomb 16000x16000", lambda: declare_size(
        make_video(fmt="mov", codec="png"), b"png ", 16000), says=PNG_CODEC),
    Case("png bomb 60000x60000", lambda: declare_size(
        make_video(fmt="mov", codec="png"), b"png ", 60000), says=PNG_CODEC),
    Case("mjpeg in mov", lambda: make_video(fmt="mov", codec="mjpeg"),
         says=("uses the mjpeg codec",)),
    # Length, size, resolution.
    Case("0.5 s", lambda: make_mp4(seconds=0.5),
         says=("`video` is 0.5 s long", "references must be 2-30 s", "Attach a longer clip")),
    Case("40 s", lambda: make_video(seconds=40.0, width=32, height=32, fps=2),
         says=("is 40.0 s long", "2-30 s", "Trim it to at most 30 s")),
    Case("60 s whose headers claim 10 s", lambda: claim_seconds(
        make_video(seconds=60.0, width=32, height=32, fps=2), 10),
        says=("`video` is 60.0 s long", "Trim it to at most 30 s")),
    Case("1.96 s", lambda: make_video(seconds=1.96, fps=50, width=32, height=32),
         says=("is 1.96 s long",)),
    Case("over max_bytes", make_video, limits=ProbeLimits(max_bytes=4096),
         says=(" KB; files must be at most 4 KB", "Trim or compress")),
    Case("16x16", lambda: make_video(width=16, height=16),
         says=("is 16x16", "each side must be 32-4096 pixels", "at least 32")),
    Case("over max_side", make_video, limits=ProbeLimits(max_side=48),
         says=("is 64x64", "32-48 pixels", "Scale it down")),
    # Audio.
    Case("m4a", lambda: make_audio(fmt="ipod"), kind="audio", info=_audio("m4a", "aac")),
    Case("wav", lambda: make_audio(fmt="wav"), kind="audio",
         info=_audio("wav", "pcm_s16le")),
    Case("mp3", lambda: make_audio(fmt="mp3"), kind="audio", info=_audio("mp3", "mp3")),
    Case("mp4 video with sound as audio", lambda: make_video(sound=True), kind="audio",
         info=_audio("mp4", "aac")),
    Case("png as audio", png_bytes, kind="audio", filename="song.mp3",
         says=("`audio` (`song.mp3`) is not an audio file I can read", "MP3, WAV or M4A")),
    Case("silent video as audio", make_video, kind="audio", says=("has no sound",)),
    Case("0.5 s wav", lambda: make_audio(fmt="wav", seconds=0.5), kind="audio",
         says=("0.5 s long", "audio files must be 2-30 s")),
    Case("webm as audio", lambda: make_video(fmt="webm"), kind="audio",
         says=("has no sound",)),
]


def _children(parent: int | None = None) -> list[int]:
    return live_children("media.probe_worker", parent)


async def _with_lag(work: Awaitable[T]) -> tuple[T | BaseException, float]:
    """`work`'s result (or exception) and the event loop's worst lag while it ran, from a
    ticker sleeping 10 ms at a time."""
    loop = asyncio.get_running_loop()
    worst = 0.0

    async def tick() -> None:
        nonlocal worst
        while True:
            before = loop.time()
            await asyncio.sleep(0.01)
            worst = max(worst, loop.time() - before - 0.01)

    ticker = asyncio.create_task(tick())
    await asyncio.sleep(0)
    try:
        result: T | BaseException = await work
    except Exception as exc:
        result = exc
    finally:
        ticker.cancel()
    return result, worst


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every case's file, made once."""
    directory = tmp_path_factory.mktemp("probe")
    paths = {}
    for index, case in enumerate(CASES):
        path = directory / f"{index}-{Path(case.filename).suffix.lstrip('.')}"
        path.write_bytes(case.make())
        paths[case.name] = path
    return paths


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_probe(case: Case, files: dict[str, Path]) -> None:
    option = "audio" if case.kind == "audio" else "video"
    result, lag = await _with_lag(probe_media(
        files[case.name], option=option, kind=case.kind, limits=case.limits,
        filename=case.filename))
    if case.info is not None:
        assert result == case.info
    else:
        assert isinstance(result, ProbeRejected), result
        message = str(result)
        assert message.startswith(f"`{option}`")
        for words in case.says:
            assert words in message
    assert lag < MAX_LAG_SECONDS
    assert _children() == []


# --- limits of the child -----------------------------------------------------------------


async def test_a_timeout_says_so_and_leaves_no_child(files: dict[str, Path]) -> None:
    limits = ProbeLimits(timeout_seconds=0.05)
    result, lag = await _with_lag(probe_media(files["mp4"], option="video2", kind="video",
                                              limits=limits))
    assert isinstance(result, ProbeRejected)
    assert str(result).startswith("`video2` took too long to check. ")
    assert lag < MAX_LAG_SECONDS
    assert _children() == []


async def test_a_cancelled_probe_kills_its_child(files: dict[str, Path]) -> None:
    probe = asyncio.create_task(probe_media(files["mp4"], option="video", kind="video"))
    for _ in range(200):  # until the child is there
        await asyncio.sleep(0.005)
        if _children():
            break
    assert _children(), "the child never started"
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert _children() == []


async def test_four_probes_at_once(files: dict[str, Path]) -> None:
    names = ["mp4", "mov", "wav", "png renamed .mp4"]
    kinds: list[Literal["video", "audio"]] = ["video", "video", "audio", "video"]
    results, lag = await _with_lag(asyncio.gather(
        *(probe_media(files[name], option=f"o{i}", kind=kind)
          for i, (name, kind) in enumerate(zip(names, kinds, strict=True))),
        return_exceptions=True))
    assert isinstance(results, list)
    assert results[0] == _video()
    assert results[1] == _video("mov")
    assert results[2] == _audio("wav", "pcm_s16le")
    assert isinstance(results[3], ProbeRejected) and str(results[3]).startswith("`o3`")
    assert lag < MAX_LAG_SECONDS
    assert _children() == []


async def _address_space_of_python_with_av() -> int:
    """VmPeak of a child once it has imported what a probe needs, before any file."""
    script = ("import av, media.probe_worker\n"
              "print(open('/proc/self/status').read().split('VmPeak:')[1].split()[0])")
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, cwd=child_process.ROOT, stdout=asyncio.subprocess.PIPE)
    out, _ = await child.communicate()
    assert child.returncode == 0
    return int(out) * 1024


async def test_a_file_that_needs_too_much_memory(tmp_path: Path) -> None:
    """A 4096x4096 H.264 picture needs ~75 MiB more than Python and FFmpeg themselves, a
    small MP4 ~15 MiB."""
    path = tmp_path / "big.mp4"
    make_video(path, seconds=2.0, width=4096, height=4096, fps=1)
    info = await probe_media(path, option="video", kind="video")  # fine with the default
    assert (info.width, info.height) == (4096, 4096)
    base = await _address_space_of_python_with_av()
    tight = ProbeLimits(memory_bytes=base + 40 * 1024**2)
    result, lag = await _with_lag(probe_media(path, option="video", kind="video",
                                              limits=tight))
    assert isinstance(result, ProbeRejected)
    assert str(result).startswith("`video` needs too much memory to open. ")
    assert lag < MAX_LAG_SECONDS
    small = tmp_path / "small.mp4"  # while a small file still fits
    make_mp4(small, seconds=3.0)
    assert await probe_media(small, option="video", kind="video", limits=tight) == _video()
    assert _children() == []


def _caps(pid: int) -> tuple[int, int] | None:
    """(address space limit, nice) of a process, once it has set them; None before."""
    try:
        limits = Path(f"/proc/{pid}/limits").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    line = next(line for line in limits.splitlines() if line.startswith("Max address space"))
    soft = line.split()[3]
    if soft == "unlimited":
        return None
    return int(soft), int(stat[16])


async def test_the_child_runs_capped(tmp_path: Path) -> None:
    path = tmp_path / "big.mp4"  # a big picture to decode: the child lives a while
    make_video(path, seconds=2.0, width=4096, height=4096, fps=1)
    limits = ProbeLimits(memory_bytes=700 * 1024**2)
    probe = asyncio.create_task(probe_media(path, option="video", kind="video",
                                            limits=limits))
    seen = None
    while not probe.done() and seen is None:
        await asyncio.sleep(0.002)
        seen = next((caps for pid in _children() if (caps := _caps(pid))), None)
    await probe
    assert seen == (700 * 1024**2, 10)


# --- messages ------------------------------------------------------------------------------


def test_a_hostile_file_name_is_cleaned() -> None:
    assert clean_filename("my`clip`\n\u202e4pm.exe\x00.mp4") == "myclip4pm.exe.mp4"
    assert clean_filename("  spaced \t name.mov ") == "spaced name.mov"
    long = clean_filename("a" * 200 + ".mp4")
    assert long is not None and len(long) == 80 and long.endswith("…")
    assert clean_filename("``\n") is None
    assert clean_filename(None) is None


async def test_the_file_name_in_a_message_is_cleaned(files: dict[str, Path]) -> None:
    with pytest.raises(ProbeRejected) as caught:
        await probe_media(files["png renamed .mp4"], option="video", kind="video",
                          filename="evil`\n@everyone.mp4")
    assert "(`evil@everyone.mp4`)" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_limits_travel_to_the_child_as_json() -> None:
    """The child rebuilds ProbeLimits from its fields: they must stay plain values."""
    fields = dataclasses.asdict(ProbeLimits())
    assert ProbeLimits(**fields) == ProbeLimits()
    assert all(isinstance(value, int | float) for value in fields.values())


async def test_a_file_with_the_longest_name_is_probed(tmp_path: Path) -> None:
    # The verdict is written beside the file under a short name of its own.
    path = tmp_path / ("x" * 247 + ".mp4")
    make_mp4(path, seconds=3.0)
    assert await probe_media(path, option="video", kind="video") == _video()
    assert await asyncio.to_thread(os.listdir, tmp_path) == [path.name]
