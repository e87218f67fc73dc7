"""Rendering in a child process: what comes back, what a bad reference says, and that a
cancelled or overlong render leaves no process behind."""

from __future__ import annotations

import asyncio
import io
import sys
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

import simulator.render_worker as worker
from simulator.render_worker import RenderFailed, reference_path, render_in_child
from tests.media import make_mp4
from tests.processes import live_children


def _children(parent: int | None = None) -> list[int]:
    return live_children("simulator.render_worker", parent)


async def _render(references: list[bytes], **options: Any) -> bytes:
    """render_in_child with the references put where the child reads them."""
    with tempfile.TemporaryDirectory() as name:
        for index, data in enumerate(references, start=1):
            reference_path(Path(name), index).write_bytes(data)
        return await render_in_child(Path(name), len(references), **options)


def _alive(pid: int) -> bool:
    try:
        return (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z")
    except OSError:
        return False


def _png_in_mov() -> bytes:
    """A video whose pictures are PNGs: a container that can carry decoder bombs."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mov") as container:
        stream = container.add_stream("png", rate=10)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "rgb24"
        stream.time_base = Fraction(1, 10)
        for index in range(5):
            frame = av.VideoFrame(64, 64, "rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


async def test_a_clip_comes_back_from_the_child() -> None:
    data = await _render([make_mp4()], width=320, height=240, seconds=1.0,
                                 caption="a cat")
    with av.open(io.BytesIO(data), mode="r") as container:
        context = container.streams.video[0].codec_context
        assert (context.width, context.height) == (320, 240)
    assert _children() == []


async def test_an_unusable_reference_says_why() -> None:
    with pytest.raises(RenderFailed, match="is not a video file we can read"):
        await _render([b"\x89PNG" * 100], width=320, height=240, seconds=1.0,
                              caption="x")
    with pytest.raises(RenderFailed, match=r"not a camera or screen video \(png\)"):
        await _render([_png_in_mov()], width=320, height=240, seconds=1.0,
                              caption="x")


async def test_a_cancelled_render_kills_its_child() -> None:
    render = asyncio.create_task(_render(
        [make_mp4(seconds=1.0)], width=1920, height=1080, seconds=10.0, caption="long"))
    for _ in range(100):  # until the child is there
        await asyncio.sleep(0.02)
        if _children():
            break
    assert _children()
    render.cancel()
    with pytest.raises(asyncio.CancelledError):
        await render
    assert _children() == []


async def test_an_overlong_render_is_stopped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(worker, "RENDER_TIMEOUT_SECONDS", 0.3)
    with pytest.raises(RenderFailed, match="timed out"):
        await _render([make_mp4(seconds=1.0)], width=1920, height=1080,
                              seconds=10.0, caption="slow")
    assert _children() == []


async def test_a_worker_dies_with_the_bot() -> None:
    """A bot killed with SIGKILL cannot kill its worker: the worker must notice by itself."""
    script = ("import asyncio, sys, tempfile\nfrom pathlib import Path\n"
              "from simulator.render_worker import reference_path, render_in_child\n"
              "from tests.media import make_mp4\n"
              "d = Path(tempfile.mkdtemp())\n"
              "reference_path(d, 1).write_bytes(make_mp4(seconds=1.0))\n"
              "asyncio.run(render_in_child(d, 1, width=1920, height=1080,"
              " seconds=60.0, caption='x'))\n")  # many seconds of work
    bot = await asyncio.create_subprocess_exec(sys.executable, "-c", script, cwd=worker.ROOT)
    try:
        for _ in range(250):
            await asyncio.sleep(0.02)
            if orphans := _children(bot.pid):
                break
        assert orphans, "the worker never started"
        await asyncio.sleep(1.0)  # well into rendering (a worker started orphaned quits)
        bot.kill()
        await bot.wait()
        for _ in range(50):  # a second, far less than the render takes
            if not _alive(orphans[0]):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the worker outlived the bot")
    finally:
        if bot.returncode is None:
            bot.kill()
            await bot.wait()
