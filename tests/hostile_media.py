"""Hostile media for tests: real files with their headers doctored (decoder bombs, lying
sizes and counts), cut short, or not media at all. Used by the probe's own table
(tests/probe) and by the bot's (tests/e2e/test_reference_checks_e2e.py)."""

from __future__ import annotations

import io
import struct

from PIL import Image


def box(data: bytes | bytearray, name: bytes, start: int = 0) -> tuple[int, int]:
    """Offset and size of the first ISO BMFF box called `name` (a naive search)."""
    at = data.find(name, start) - 4
    assert at >= 0, name
    return at, struct.unpack(">I", data[at : at + 4])[0]


def declare_size(data: bytes, fourcc: bytes, side: int) -> bytes:
    """The MP4/MOV `data` with its sample entry `fourcc` and track header declaring
    side x side pictures; for PNG also every picture's own header (IHDR): a decoder bomb,
    small on disk, huge once decoded."""
    out = bytearray(data)
    entry = out.find(fourcc, out.find(b"stsd"))
    out[entry + 28 : entry + 32] = struct.pack(">HH", side, side)
    at, size = box(out, b"tkhd")
    out[at + size - 8 : at + size] = struct.pack(">II", side << 16, side << 16)
    if fourcc == b"png ":
        index = 0
        while (index := out.find(b"IHDR", index)) >= 0:
            out[index + 4 : index + 12] = struct.pack(">II", side, side)
            index += 4
    return bytes(out)


def huge_moov(data: bytes) -> bytes:
    """The index box claims to be 4 GB long."""
    out = bytearray(data)
    at, _ = box(out, b"moov")
    out[at : at + 4] = struct.pack(">I", 0xFFFFFFF0)
    return bytes(out)


def huge_samples(data: bytes) -> bytes:
    """Every sample's size in the index claims 2 GB."""
    out = bytearray(data)
    at, _ = box(out, b"stsz")
    count = struct.unpack(">I", out[at + 16 : at + 20])[0]
    for k in range(count):
        out[at + 20 + 4 * k : at + 24 + 4 * k] = struct.pack(">I", 0x7FFFFFF0)
    return bytes(out)


def endless_samples(data: bytes) -> bytes:
    """The time-to-sample table claims 2^31 samples (of one tick each)."""
    out = bytearray(data)
    at, _ = box(out, b"stts")
    out[at + 16 : at + 28] = struct.pack(">III", 1, 0x7FFFFFFF, 1)
    return bytes(out)


def png_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 45)).save(buffer, format="PNG")
    return buffer.getvalue()


def cut(data: bytes, fraction: float) -> bytes:
    return data[: int(len(data) * fraction)]


def claim_seconds(data: bytes, seconds: int) -> bytes:
    """The MP4 with its movie, track and media headers claiming `seconds` long, whatever
    its samples hold (a minute passing for 10 s)."""
    out = bytearray(data)
    for name, length_at in ((b"mvhd", 24), (b"mdhd", 24)):
        at, _ = box(out, name)
        scale = struct.unpack(">I", out[at + 20 : at + 24])[0]
        out[at + length_at : at + length_at + 4] = struct.pack(">I", seconds * scale)
    mvhd, _ = box(out, b"mvhd")
    movie_scale = struct.unpack(">I", out[mvhd + 20 : mvhd + 24])[0]
    at, _ = box(out, b"tkhd")
    out[at + 28 : at + 32] = struct.pack(">I", seconds * movie_scale)
    return bytes(out)
