"""Tiny real MP4 files for tests, encoded with PyAV (no numpy needed)."""

from __future__ import annotations

import functools
import io
import tempfile
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
    path: Path | None = None, *, seconds: float = 2.5, width: int = 64, height: int = 64
) -> bytes:
    """Bytes of a small real MP4 (cached per shape); also written to `path` when given.
    2.5 s by default: long enough to pass as a reference (2-30 s)."""
    data = _cached(seconds, width, height)
    if path is not None:
        path.write_bytes(data)
    return data


def _write_frames(container: av.container.OutputContainer, stream: av.VideoStream,
                  count: int) -> None:
    width, height, pix_fmt = stream.width, stream.height, stream.pix_fmt or "yuv420p"
    frame = av.VideoFrame(width, height, pix_fmt)
    ramp = bytes(range(256)) * (max(plane.buffer_size for plane in frame.planes) // 256 + 2)
    for index in range(count):
        frame = av.VideoFrame(width, height, pix_fmt)
        for plane in frame.planes:  # a moving ramp, so that every frame differs
            start = index * 16 % 256
            plane.update(ramp[start : start + plane.buffer_size])
        frame.pts = index
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def _write_tone(container: av.container.OutputContainer, codec: str, seconds: float,
                rate: int = 16000) -> None:
    stream = container.add_stream(codec, rate=rate)
    assert isinstance(stream, av.AudioStream)
    stream.layout = "mono"
    sample_fmt = "s16" if codec.startswith("pcm_") else (
        "s16p" if codec == "libmp3lame" else "fltp")
    stream.format = sample_fmt
    frame_size = 1024 if codec != "libmp3lame" else 1152
    total = round(seconds * rate)
    for start in range(0, total, frame_size):
        samples = min(frame_size, total - start)
        frame = av.AudioFrame(format=sample_fmt, layout="mono", samples=samples)
        frame.sample_rate = rate
        frame.pts = start
        frame.planes[0].update(bytes(frame.planes[0].buffer_size))  # silence
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


@functools.cache
def _cached_file(kind: str, fmt: str, seconds: float, width: int, height: int, fps: int,
                 codec: str, faststart: bool, sound: bool = False) -> bytes:
    with tempfile.TemporaryDirectory(prefix="test-media-") as directory:
        path = Path(directory) / f"out.{fmt}"
        options = {"movflags": "+faststart"} if faststart else {}
        with av.open(str(path), mode="w", format=fmt, options=options) as container:
            if kind == "video":
                fast = {"preset": "ultrafast"} if codec == "libx264" else {}
                stream = container.add_stream(codec, rate=fps, options=fast)
                assert isinstance(stream, av.VideoStream)
                stream.width, stream.height = width, height
                stream.pix_fmt = {"png": "rgb24", "mjpeg": "yuvj420p"}.get(codec, "yuv420p")
                stream.time_base = Fraction(1, fps)
                if sound:
                    _write_tone(container, "aac", seconds)
                _write_frames(container, stream, max(1, round(seconds * fps)))
            else:
                _write_tone(container, codec, seconds)
        return path.read_bytes()


def make_video(path: Path | None = None, *, fmt: str = "mp4", seconds: float = 3.0,
               width: int = 64, height: int = 64, fps: int = FPS, codec: str | None = None,
               faststart: bool = False, sound: bool = False) -> bytes:
    """Bytes of a small real video file (cached per shape): `fmt` "mp4", "mov", "webm",
    "matroska"...; `codec` defaults to H.264 (VP8 for webm); `faststart` puts an MP4's
    index (moov) first, as for streaming (else it is at the end); `sound` adds a silent
    AAC track. Also written to `path`."""
    if codec is None:
        codec = "libvpx" if fmt in ("webm", "matroska") else encoder_name()
    data = _cached_file("video", fmt, seconds, width, height, fps, codec, faststart, sound)
    if path is not None:
        path.write_bytes(data)
    return data


def make_audio(path: Path | None = None, *, fmt: str = "mp4", seconds: float = 3.0,
               codec: str | None = None) -> bytes:
    """Bytes of a silent sound file with no video (cached): "mp4" or "ipod" (m4a) with
    AAC, "wav" with PCM, "mp3" with MP3. Also written to `path`."""
    if codec is None:
        codec = {"wav": "pcm_s16le", "mp3": "libmp3lame"}.get(fmt, "aac")
    data = _cached_file("audio", fmt, seconds, 0, 0, 0, codec, False)
    if path is not None:
        path.write_bytes(data)
    return data
