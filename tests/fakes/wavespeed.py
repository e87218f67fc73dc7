"""The fake WaveSpeed the tests use: the product's simulated WaveSpeed (simulator/), with
the tests' fast timing, a tiny real MP4 as every output, and references uploaded to its own
media store checked by decoding them with PyAV (as WaveSpeed fails a task whose reference
it cannot use)."""

from __future__ import annotations

import asyncio
import io
from typing import Any

import av

from simulator.wavespeed_api import *  # noqa: F403
from simulator.wavespeed_api import SimulatedWaveSpeed
from tests.media import make_mp4


def decode_problem(data: bytes, kind: str) -> str | None:
    """None if `data` holds a `kind` ("video" or "audio") stream with a frame that decodes;
    else why not. Blocking: run it in a thread. The tests' inputs are trusted files."""
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            streams = container.streams.video if kind == "video" else container.streams.audio
            if not streams:
                return f"no {kind} stream"
            for _frame in container.decode(streams[0]):
                return None
            return f"no {kind} frame decodes"
    except (av.FFmpegError, ValueError, OSError, EOFError) as exc:
        return f"not a readable {kind} file ({type(exc).__name__})"


async def pyav_reference_check(data: bytes, kind: str) -> str | None:
    """SimulatedWaveSpeed's `reference_check`: decode_problem, off the event loop."""
    return await asyncio.to_thread(decode_problem, data, kind)


class FakeWaveSpeed(SimulatedWaveSpeed):
    def __init__(self, **options: Any) -> None:
        options.setdefault("reference_check", pyav_reference_check)
        super().__init__(**options)
        self.static_output = make_mp4()
