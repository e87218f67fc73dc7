"""Tiny real MP4 files for tests, encoded with PyAV (no numpy needed)."""

from __future__ import annotations

import functools
import io
from fractions import Fraction
from pathlib import Path

import av

from simulator.clip import encoder_name

FPS = 10


def _encode(seconds: float, width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(encoder_name(), rate=FPS)
        assert isinstance(stream, av.VideoStream)
        stream.width = width
        stream.height = height
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, FPS)
        frames = max(1, round(seconds * FPS))
        for index in range(frames):
            frame = av.VideoFrame(width, height, "yuv420p")
            # A moving brightness ramp, so every frame differs and the encoder has real work.
            luma = bytes((index * 16 + x) % 256 for x in range(frame.planes[0].buffer_size))
            frame.planes[0].update(luma)
            frame.planes[1].update(bytes([128]) * frame.planes[1].buffer_size)
            frame.planes[2].update(bytes([128]) * frame.planes[2].buffer_size)
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():  # flush the encoder's delayed frames
            container.mux(packet)
    return buffer.getvalue()


@functools.cache
def _cached(seconds: float, width: int, height: int) -> bytes:
    return _encode(seconds, width, height)


def make_mp4(
    path: Path | None = None, *, seconds: float = 0.5, width: int = 64, height: int = 64
) -> bytes:
    """Bytes of a small real MP4 (cached per shape); also written to `path` when given."""
    data = _cached(seconds, width, height)
    if path is not None:
        path.write_bytes(data)
    return data
