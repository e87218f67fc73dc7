"""Checks one user's media file in a child process (media/probe.py starts it):
`python -m media.probe_worker PATH KIND OUT_JSON LIMITS_JSON PARENT_PID`.

KIND is "video" or "audio"; LIMITS_JSON holds `ProbeLimits`' fields. The child caps its
own address space and CPU time first, then reads as little of the file as it can: the
headers (container, streams, codec, picture size, duration: most bad files stop here,
before anything is decoded), one frame at the start, and the packets from about a second
before the end, decoding a frame there, so that a file cut short is noticed. It writes
OUT_JSON, {"verdict": "ok", ...MediaInfo's fields} or {"verdict": "reject", "reason": ...,
...facts}, and exits 0, or EXIT_MEMORY when it ran out of memory. Messages for the user
are media/probe.py's business: nothing here knows the option or the user's file name.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from media.child_process import die_with, limit_resources
from media.codecs import VIDEO_CODECS, is_audio_codec
from media.probe import EXIT_MEMORY, ProbeLimits

if TYPE_CHECKING:  # av itself is imported only once the limits are set
    import av
    from av.container import InputContainer

# Demuxers FFmpeg may pick at all (it probes by content; any other format fails to open).
# Audio formats are allowed for videos too, to say "only sound" rather than "unreadable".
FORMAT_WHITELIST: Final = "mov,matroska,mp3,wav,aac,ogg,flac"
MOV_FAMILY: Final = "mov,mp4,m4a,3gp,3g2,mj2"  # FFmpeg's name for the MP4/MOV demuxer
AUDIO_FORMATS: Final = frozenset({MOV_FAMILY, "mp3", "wav", "aac", "ogg", "flac"})
# Bytes and microseconds FFmpeg may read when opening, to find the streams' parameters.
PROBE_BYTES: Final = 2_000_000
ANALYZE_MICROSECONDS: Final = 3_000_000
# Packets read at most for the first frame (decoders delay at most ~16 frames), and after
# the seek near the end (30 s at 240 fps in a single group of pictures is 7200).
FIRST_FRAME_PACKETS: Final = 128
TAIL_PACKETS: Final = 20_000
# After the seek, packets decoded at most until one frame comes out (the keyframe at or
# before the target); the rest of the tail is only read (cheap), to see that all of it
# is there.
TAIL_DECODED_PACKETS: Final = 48
SEEK_BEFORE_END_SECONDS: Final = 1.0
# How much earlier than declared the packets may end (rounding, edit lists).
END_TOLERANCE_SECONDS: Final = 0.25
# Packets past the declared end by more than this: the headers understate the length.
OVERRUN_TOLERANCE_SECONDS: Final = 1.0

class Reject(Exception):
    """The file fails the check: `reason` and facts for media/probe.py's message."""

    def __init__(self, reason: str, **facts: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.facts = facts


def main(argv: Sequence[str]) -> int:
    path, kind, out, limits_json, parent = argv[1:6]
    die_with(int(parent))
    limits = ProbeLimits(**json.loads(limits_json))
    limit_resources(limits.memory_bytes,
                    cpu_seconds=max(1, math.ceil(limits.timeout_seconds)))
    code = 0
    try:
        result: dict[str, Any] = {"verdict": "ok", **probe(Path(path), kind, limits)}
    except Reject as rejected:
        result = {"verdict": "reject", "reason": rejected.reason, **rejected.facts}
    except MemoryError:  # Python's own, or FFmpeg's ENOMEM (av.error.MemoryError)
        result, code = {"verdict": "reject", "reason": "memory"}, EXIT_MEMORY
    Path(out).write_text(json.dumps(result), encoding="utf-8")
    return code


def probe(path: Path, kind: str, limits: ProbeLimits) -> dict[str, Any]:
    """MediaInfo's fields for a file that passes; raises Reject (or MemoryError)."""
    import av  # after the limits: importing FFmpeg counts too

    try:
        container = av.open(
            str(path), mode="r", metadata_errors="replace",
            container_options={
                "probesize": str(PROBE_BYTES),
                "analyzeduration": str(ANALYZE_MICROSECONDS),
                "format_whitelist": FORMAT_WHITELIST,
                "protocol_whitelist": "file",  # never a URL, whatever a playlist says
            },
            # For the decoders opening runs: refuse pictures over the limit before
            # allocating them (the decoder bomb); no threads (each reserves memory).
            options={"max_pixels": str(limits.max_side**2), "threads": "1"})
    except MemoryError:
        raise
    except _decode_errors() as exc:
        if _short_of_memory(limits):
            raise MemoryError from exc
        raise Reject("damaged" if _looks_like(kind, path) else "not_media") from exc
    with container:
        try:
            if kind == "video":
                return _probe_video(container, limits)
            return _probe_audio(container, limits)
        except Reject as rejected:
            # Checked while the decoder still holds its memory: H.264's decoder, for one,
            # calls a picture it found no memory for invalid data.
            if rejected.reason in ("damaged", "cut_short") and _short_of_memory(limits):
                raise MemoryError from rejected
            raise


def _decode_errors() -> tuple[type[Exception], ...]:
    import av.error

    return (av.error.FFmpegError, OSError, ValueError, IndexError, EOFError, RuntimeError)


@contextlib.contextmanager
def _failing_as(reason: str) -> Iterator[None]:
    """FFmpeg's errors while reading become Reject(reason); running out of memory stays."""
    try:
        yield
    except MemoryError:
        raise
    except _decode_errors() as exc:
        raise Reject(reason) from exc


def _short_of_memory(limits: ProbeLimits) -> bool:
    """Whether a largest allowed picture (8-bit 4:2:2) would no longer fit in the address
    space: then a failure to open or decode was most likely the memory limit. A calloc
    this big is mapped, not touched, so asking costs nothing."""
    try:
        spare = bytearray(2 * limits.max_side**2)
    except MemoryError:
        return True
    del spare
    return False


def _probe_video(container: InputContainer, limits: ProbeLimits) -> dict[str, Any]:
    import av

    streams = [s for s in container.streams.video
               if not s.disposition & av.stream.Disposition.attached_pic]  # not cover art
    if container.format.name != MOV_FAMILY:
        if not streams and container.streams.audio:
            raise Reject("no_video", has_audio=True)
        raise Reject("container", container=_container_name(container))
    if not streams:
        raise Reject("no_video", has_audio=bool(container.streams.audio))
    stream = streams[0]
    codec = _codec_name(stream)
    if codec not in VIDEO_CODECS:
        raise Reject("codec", codec=codec)
    context = stream.codec_context
    width, height = int(context.width or 0), int(context.height or 0)
    if not width or not height:  # or over max_pixels: opening gave up on the picture
        raise Reject("no_size")
    _check_size(width, height, limits)
    seconds = _check_duration(container, stream, limits)
    audio = container.streams.audio
    info = {"kind": "video", "container": _container_name(container), "seconds": seconds,
            "width": width, "height": height, "video_codec": codec,
            "audio_codec": _codec_name(audio[0]) if audio else None}
    _prepare_decoder(container, stream, limits)
    with _failing_as("damaged"):
        frame = _first_frame(container, stream)
    if isinstance(frame, av.VideoFrame):  # the real picture, whatever the headers said
        _check_size(frame.width, frame.height, limits)
    _check_tail(container, stream, seconds, limits)
    return info


def _probe_audio(container: InputContainer, limits: ProbeLimits) -> dict[str, Any]:
    if not container.streams.audio:
        raise Reject("no_audio", has_video=bool(container.streams.video))
    if container.format.name not in AUDIO_FORMATS:
        raise Reject("container", container=_container_name(container))
    stream = container.streams.audio[0]
    codec = _codec_name(stream)
    if not is_audio_codec(codec):
        raise Reject("codec", codec=codec)
    seconds = _check_duration(container, stream, limits)
    info = {"kind": "audio", "container": _container_name(container), "seconds": seconds,
            "width": None, "height": None, "video_codec": None, "audio_codec": codec}
    _prepare_decoder(container, stream, limits)
    with _failing_as("damaged"):
        _first_frame(container, stream)
    _check_tail(container, stream, seconds, limits)
    return info


def _codec_name(stream: av.VideoStream | av.AudioStream) -> str:
    """FFmpeg's name of the stream's codec ("mp3", not its decoder's "mp3float")."""
    # PyAV has no codec context where this FFmpeg has no decoder (its stub says never).
    context: Any = getattr(stream, "codec_context", None)
    return str(context.codec.canonical_name) if context is not None else "unknown"


def _container_name(container: InputContainer) -> str:
    """What users call the file type: mp4, mov, m4a, 3gp; matroska; mp3, wav, ..."""
    fmt = container.format.name
    if fmt == MOV_FAMILY:
        brand = str(container.metadata.get("major_brand", "qt")).strip().lower()
        if brand == "qt":
            return "mov"
        if brand.startswith(("m4a", "m4b")):
            return "m4a"
        return "3gp" if brand.startswith("3g") else "mp4"
    return "matroska" if fmt.startswith("matroska") else fmt


def _check_size(width: int, height: int, limits: ProbeLimits) -> None:
    low, high = limits.min_side, limits.max_side
    if not (low <= width <= high and low <= height <= high):
        raise Reject("resolution", width=width, height=height)


def _check_duration(container: InputContainer, stream: av.VideoStream | av.AudioStream,
                    limits: ProbeLimits) -> float:
    """The length the headers declare (the container's, else the stream's), in range."""
    seconds: float | None = None
    if container.duration is not None and container.duration > 0:
        seconds = container.duration / 1_000_000
    elif stream.duration is not None and stream.time_base is not None and stream.duration > 0:
        seconds = float(stream.duration * stream.time_base)
    if seconds is None or not math.isfinite(seconds):
        raise Reject("no_duration")
    if not limits.min_seconds <= seconds <= limits.max_seconds:
        raise Reject("duration", seconds=seconds)
    return seconds


def _prepare_decoder(container: InputContainer, stream: av.VideoStream | av.AudioStream,
                     limits: ProbeLimits) -> None:
    """Only `stream` is demuxed; its decoder runs on this thread, pictures capped."""
    import av

    for other in container.streams:
        if other.index != stream.index:
            other.discard = av.stream.Discard.all
    context = stream.codec_context
    context.thread_count = 1
    context.options = {**context.options, "max_pixels": str(limits.max_side**2)}


def _first_frame(container: InputContainer,
                 stream: av.VideoStream | av.AudioStream) -> av.VideoFrame | av.AudioFrame:
    """The first frame of `stream`, within FIRST_FRAME_PACKETS."""
    for count, packet in enumerate(container.demux(stream), start=1):
        if count > FIRST_FRAME_PACKETS or packet.is_corrupt:
            break
        for frame in stream.decode(packet):
            return frame
    raise Reject("damaged")


def _check_tail(container: InputContainer, stream: av.VideoStream | av.AudioStream,
                seconds: float, limits: ProbeLimits) -> None:
    """Seek to about a second before the end (to the keyframe before), decode a frame
    there, and read the rest of the packets: cut short when no frame comes out, or the
    packets stop before the declared end or are cut; and too long when they go on well
    past it (headers doctored to pass for 10 s while the track holds a minute)."""
    base = stream.time_base
    if base is None:
        raise Reject("damaged")  # PyAV always has one for a demuxed stream
    start = float(stream.start_time * base) if stream.start_time is not None else 0.0
    if stream.duration is not None and stream.duration > 0:
        end = start + float(stream.duration * base)
    else:
        end = start + seconds
    target = max(start, end - SEEK_BEFORE_END_SECONDS)
    reached: float | None = None
    decoded = False
    with _failing_as("cut_short"):
        container.seek(int(target / base), stream=stream, backward=True)
        for count, packet in enumerate(container.demux(stream), start=1):
            if count > TAIL_PACKETS:
                raise Reject("damaged")  # no real 30 s file has this many
            if packet.is_corrupt:
                raise Reject("cut_short")
            if packet.size and packet.pts is not None:
                packet_end = float((packet.pts + (packet.duration or 0)) * base)
                reached = packet_end if reached is None else max(reached, packet_end)
            if not decoded and count <= TAIL_DECODED_PACKETS:
                decoded = bool(stream.decode(packet))
    if not decoded or reached is None or reached < end - END_TOLERANCE_SECONDS:
        raise Reject("cut_short")
    if reached > end + OVERRUN_TOLERANCE_SECONDS:
        real = reached - start
        if not limits.min_seconds <= real <= limits.max_seconds:
            raise Reject("duration", seconds=real)


def _looks_like(kind: str, path: Path) -> bool:
    """Whether a file that would not open starts like a format we take, so that it is
    damaged (a cut MP4 without its index) rather than some other kind of file."""
    try:
        with path.open("rb") as file:
            head = file.read(16)
    except OSError:
        return False
    if head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot"):
        return True
    if kind == "audio":
        return (head.startswith((b"ID3", b"OggS", b"fLaC"))
                or (head[:4] == b"RIFF" and head[8:12] == b"WAVE")
                or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0))
    return False


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
