"""The output video of a simulated WAN 2.6 reference-to-video task, rendered locally.

`render_clip` turns the 1-2 reference videos a user uploaded into a real, playable MP4:
each reference plays at its own speed (looped when short), the first cross-fades into the
second over the clip, both scaled to cover the frame, with the prompt as a caption at the
bottom and a badge saying it is simulated. `sample_reference` makes a small reference for
people who have none.

Resources stay bounded whatever a user uploads: each reference is decoded once, only for
as many seconds as the clip needs (at most `_MAX_SOURCE_SECONDS`), and only an evenly spaced
sample of at most `_MAX_SAMPLES` frames is kept, downscaled to a small working size. Each
output frame is blended at that size and upscaled by swscale straight into the encoder's
yuv420p; the caption and badge are rendered once and blended into the rows they cover.

Everything here is blocking and CPU-bound: callers run it in a thread.
"""

from __future__ import annotations

import bisect
import functools
import io
import math
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
from av.container import InputContainer, OutputContainer
from av.video.plane import VideoPlane
from av.video.reformatter import ColorRange, Colorspace, Interpolation, VideoReformatter
from PIL import Image, ImageDraw, ImageFont

from media.codecs import VIDEO_CODECS

# Output frames are blended at this size at most (aspect kept), then upscaled.
_WORK_SIDE = 480
# Kept frames per reference: between half this and this many, evenly spaced.
_MAX_SAMPLES = 48
# How much of a reference is used at most; a longer one is cut, a shorter one looped.
_MAX_SOURCE_SECONDS = 10.0
# Hard stops for hostile files whose timestamps never reach the limit above.
_MAX_DECODED_FRAMES = 1200
_MAX_PACKETS = 6000
# Bigger references would make the decoder itself hold too much (8K and up).
_MAX_SOURCE_PIXELS = 4096 * 4096
# Sanity bounds on the arguments (the product asks for at most 1080p, 10 s).
_MAX_SIDE = 4096
_MAX_SECONDS = 60.0
_MAX_FPS = 60
# The containers the bot accepts as references (.mp4 .m4v .mov, .webm .mkv). Without this
# a PNG or a GIF would "decode" as a one-frame video.
_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})
# What PyAV and broken files raise while opening or decoding.
_DECODE_ERRORS = (av.error.FFmpegError, OSError, ValueError, IndexError, EOFError)
_NOT_A_VIDEO = "reference {} is not a video file we can read (MP4, MOV, WebM or MKV)"
# Camera and screen video codecs only (media/codecs.py says why).
_VIDEO_CODECS = VIDEO_CODECS

# x264 (preset, crf). Clips: ultrafast, on two cores the fastest and leanest preset by far
# (at 1080p ~90 MB in x264 against ~200 MB for veryfast), and its Constrained Baseline
# output plays everywhere; the frames are upscaled from _WORK_SIDE, so crf 26 loses little.
# The small sample is offered for download: veryfast halves its size.
_CLIP_QUALITY = ("ultrafast", 26)
# A ceiling on the clips' bit rate, so even noise stays under Discord's default 10 MiB
# upload limit at 10 s (5 MB at most): a bigger clip would be posted as a link, which on
# a simulated WaveSpeed points at 127.0.0.1.
_MAX_KBITS = 4000
_SAMPLE_QUALITY = ("veryfast", 30)

_MAX_CAPTION_CHARS = 400
_MAX_CAPTION_LINES = 3
_MAX_BANNER_CHARS = 32
_ELLIPSIS = "…"
_WHITE = (255, 255, 255, 255)
_CAPTION_BAND = (0, 0, 0, 150)  # ~60 % black: white text reads on any background
_BADGE_FILL = (200, 30, 45, 215)

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


class ClipError(Exception):
    """A reference cannot be used; str() is a short message fit to show a user, e.g.
    'reference 2 has no video stream' or 'reference 1 could not be decoded'."""


def render_clip(
    references: Sequence[bytes],
    *,
    width: int,
    height: int,
    seconds: float,
    caption: str,
    fps: int = 12,
    banner: str = "SIMULATED",
) -> bytes:
    """An MP4 (H.264 yuv420p when this FFmpeg can encode it, else MPEG-4 part 2) of exactly
    width x height and `seconds` long (round(seconds*fps) frames, with timestamps so that
    PyAV reports that duration), made from the 1-2 reference videos: each reference's frames
    resampled in time to fill the clip (looping a short reference), cross-fading from the
    first reference to the second over the clip (one reference: no fade), scaled to fill
    the frame (keep aspect: cover + centre crop), the prompt `caption` drawn as a readable
    wrapped caption at the bottom (shortened with an ellipsis if long; any unicode must not
    crash it), and `banner` drawn as a badge in the top-left corner. Blocking and CPU-bound:
    callers run it in a thread. Raises ClipError for an unusable reference (not a
    container, no video stream, no decodable frame) and ValueError for bad arguments
    (0 or >2 references, width/height not positive and even, seconds <= 0, fps < 1)."""
    if not 1 <= len(references) <= 2:
        raise ValueError(f"render_clip takes 1 or 2 references, not {len(references)}")
    count = _frame_count(width=width, height=height, seconds=seconds, fps=fps)
    work = _work_size(width, height)
    needed = min(seconds, _MAX_SOURCE_SECONDS)
    sources = [
        _load_reference(data, number=i + 1, size=work, seconds=needed)
        for i, data in enumerate(references)
    ]
    overlay = _Overlay.build(width, height, caption=caption, banner=banner)
    frames = _composed_frames(sources, count=count, fps=fps, size=(width, height))
    return _encode(
        (overlay.apply(frame) for frame in frames),
        width=width,
        height=height,
        fps=fps,
        quality=_CLIP_QUALITY,
    )


def sample_reference(*, seconds: float = 3.0, width: int = 640, height: int = 360) -> bytes:
    """A small MP4 (a few hundred KB at most) to offer people who have no reference clip:
    moving colourful shapes/gradient and the word 'sample', so a render from it looks alive."""
    fps = 24
    count = _frame_count(width=width, height=height, seconds=seconds, fps=fps)
    reformatter = VideoReformatter()
    frames = (
        _yuv(image, (width, height), reformatter) for image in _sample_frames(width, height, count)
    )
    return _encode(frames, width=width, height=height, fps=fps, quality=_SAMPLE_QUALITY)


@functools.cache
def encoder_name() -> str:
    """'libx264' when this FFmpeg build can encode it, else 'h264', else 'mpeg4'."""
    for name in ("libx264", "h264"):
        if _can_encode(name):
            return name
    return "mpeg4"  # FFmpeg's own MPEG-4 part 2 encoder, in every build


def _can_encode(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except Exception:  # noqa: BLE001 - PyAV's "no such codec" type differs across versions
        return False
    return True


# --- arguments ---------------------------------------------------------------------------


def _frame_count(*, width: int, height: int, seconds: float, fps: int) -> int:
    for name, side in (("width", width), ("height", height)):
        if isinstance(side, bool) or not isinstance(side, int):
            raise ValueError(f"{name} must be an int, not {side!r}")
        if side <= 0 or side % 2 or side > _MAX_SIDE:
            raise ValueError(f"{name} must be even and between 2 and {_MAX_SIDE}, not {side}")
    if isinstance(fps, bool) or not isinstance(fps, int) or not 1 <= fps <= _MAX_FPS:
        raise ValueError(f"fps must be an int between 1 and {_MAX_FPS}, not {fps!r}")
    if not (math.isfinite(seconds) and 0 < seconds <= _MAX_SECONDS):
        raise ValueError(f"seconds must be above 0 and at most {_MAX_SECONDS:g}, not {seconds}")
    count = round(seconds * fps)
    if count < 1:
        raise ValueError(f"{seconds} seconds at {fps} fps is not even one frame")
    return count


def _work_size(width: int, height: int) -> tuple[int, int]:
    """The output's aspect ratio within _WORK_SIDE x _WORK_SIDE (never above the output)."""
    scale = min(1.0, _WORK_SIDE / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


# --- references ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Reference:
    """An evenly spaced sample of a reference's frames, at the working size."""

    times: list[float]  # seconds since its first frame, ascending; times[0] == 0
    images: list[Image.Image]
    period: float  # how long one pass lasts; a longer clip loops it

    def at(self, t: float) -> Image.Image:
        """The kept frame on screen at clip time `t`."""
        index = bisect.bisect_right(self.times, t % self.period) - 1
        return self.images[max(index, 0)]


class _Sampler:
    """Keeps every `stride`-th frame; when full, drops every other kept one and doubles the
    stride. So memory stays at _MAX_SAMPLES frames, evenly spaced, whatever the length."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size
        self.rate = 25.0  # frames per second, for files without usable timestamps
        self.stride = 1
        self.decoded = 0
        self.last_time = 0.0
        self.first_time: float | None = None
        self.times: list[float] = []
        self.images: list[Image.Image] = []
        self._reformatter = VideoReformatter()

    def time_of(self, frame: av.VideoFrame) -> float:
        """Seconds since the first frame; by frame index when timestamps are missing."""
        if frame.pts is None or frame.time_base is None:
            return self.decoded / self.rate
        time = float(frame.pts * frame.time_base)
        if self.first_time is None:
            self.first_time = time
        # Clamped so that the times stay sorted even for out-of-order timestamps.
        return max(time - self.first_time, self.last_time)

    def add(self, frame: av.VideoFrame, t: float) -> None:
        if self.decoded % self.stride == 0:
            if len(self.images) >= _MAX_SAMPLES:
                self.times, self.images = self.times[::2], self.images[::2]
                self.stride *= 2
            if self.decoded % self.stride == 0:
                self.times.append(t)
                self.images.append(_cover(frame, self.size, self._reformatter))
        self.decoded += 1
        self.last_time = t

    def result(self) -> _Reference:
        if self.decoded > 1 and self.last_time > 0:
            step = self.last_time / (self.decoded - 1)
            return _Reference(self.times, self.images, self.last_time + step)
        # One frame, or timestamps that never advance: space the kept frames by index.
        times = [i * self.stride / self.rate for i in range(len(self.images))]
        return _Reference(times, self.images, max(self.decoded, 1) / self.rate)


def _load_reference(
    data: bytes, *, number: int, size: tuple[int, int], seconds: float
) -> _Reference:
    if not data:
        raise ClipError(f"reference {number} is empty")
    try:
        # "replace": badly encoded metadata must not make a good video unusable.
        container = av.open(io.BytesIO(data), mode="r", metadata_errors="replace")
    except _DECODE_ERRORS as exc:
        raise ClipError(_NOT_A_VIDEO.format(number)) from exc
    sampler = _Sampler(size)
    try:
        with container:
            if container.format.name not in _CONTAINERS:
                raise ClipError(_NOT_A_VIDEO.format(number))
            _decode_into(sampler, container, number=number, seconds=seconds)
    except _DECODE_ERRORS as exc:
        if not sampler.images:  # a broken tail after good frames is still usable
            raise ClipError(f"reference {number} could not be decoded") from exc
    if not sampler.images:
        raise ClipError(f"reference {number} could not be decoded")
    return sampler.result()


def _decode_into(
    sampler: _Sampler, container: InputContainer, *, number: int, seconds: float
) -> None:
    """Decodes until `seconds` of content or a hard limit, whichever comes first. Touches
    the stream only here, inside the open container: PyAV's streams dangle after close."""
    stream = _video_stream(container, number)
    sampler.rate = _frame_rate(stream)
    for packets, packet in enumerate(container.demux(stream)):
        if packets >= _MAX_PACKETS:
            return
        # The demuxer ends with an empty packet, which flushes the decoder.
        for frame in stream.decode(packet):
            _check_pixels(frame.width, frame.height, number)
            t = sampler.time_of(frame)
            if t >= seconds or sampler.decoded >= _MAX_DECODED_FRAMES:
                return
            sampler.add(frame, t)


def _video_stream(container: InputContainer, number: int) -> av.VideoStream:
    """The first real video stream (not an embedded cover picture)."""
    streams = [
        s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic
    ]
    if not streams:
        raise ClipError(f"reference {number} has no video stream")
    stream = streams[0]
    # None when this FFmpeg has no decoder for the codec (PyAV's stub says it never is).
    context = getattr(stream, "codec_context", None)
    if context is None:
        raise ClipError(f"reference {number} could not be decoded")
    if context.name not in _VIDEO_CODECS:
        raise ClipError(f"reference {number} is not a camera or screen video "
                        f"({context.name}); use H.264, HEVC, VP9 or AV1")
    _check_pixels(context.width, context.height, number)
    stream.thread_type = "AUTO"  # frame threads: decoding is the costly part
    return stream


def _frame_rate(stream: av.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and 0 < rate <= 1000:
            return float(rate)
    return 25.0


def _check_pixels(width: int, height: int, number: int) -> None:
    if width * height > _MAX_SOURCE_PIXELS:
        raise ClipError(f"reference {number} is too large ({width}x{height}); use at most 4K")


def _cover(
    frame: av.VideoFrame, size: tuple[int, int], reformatter: VideoReformatter
) -> Image.Image:
    """`frame` upright, scaled to cover `size` and centre-cropped to it."""
    turns = round(frame.rotation / 90) % 4  # counter-clockwise quarter turns to show it
    src_w, src_h = (frame.height, frame.width) if turns % 2 else (frame.width, frame.height)
    scale = max(size[0] / src_w, size[1] / src_h)
    scaled_w, scaled_h = max(size[0], round(src_w * scale)), max(size[1], round(src_h * scale))
    if scaled_w * scaled_h <= 4 * size[0] * size[1]:
        # Usual case: let swscale shrink it, then crop the small image.
        enc_w, enc_h = (scaled_h, scaled_w) if turns % 2 else (scaled_w, scaled_h)
        small = reformatter.reformat(
            frame, width=enc_w, height=enc_h, format="rgb24", interpolation=Interpolation.AREA
        )
        image = _upright(_image_of(small), turns)
        left, top = (scaled_w - size[0]) // 2, (scaled_h - size[1]) // 2
        return image.crop((left, top, left + size[0], top + size[1]))
    # A very elongated frame: scaling it whole would be huge, so crop at full size first.
    image = _upright(_image_of(frame), turns)
    box_w, box_h = size[0] / scale, size[1] / scale
    x, y = (src_w - box_w) / 2, (src_h - box_h) / 2
    return image.resize(size, Image.Resampling.BOX, box=(x, y, x + box_w, y + box_h))


def _upright(image: Image.Image, turns: int) -> Image.Image:
    """`image` turned counter-clockwise by `turns` quarter turns (PyAV's rotation sense)."""
    if turns == 0:
        return image
    return image.transpose(_QUARTER_TURNS[turns - 1])


_QUARTER_TURNS = (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270)


def _image_of(frame: av.VideoFrame) -> Image.Image:
    """frame.to_image(), typed (PyAV's stub leaves it unannotated)."""
    to_image: Callable[[], Image.Image] = frame.to_image
    return to_image()


def _frame_of(image: Image.Image) -> av.VideoFrame:
    """av.VideoFrame.from_image(image), typed (PyAV's stub leaves it unannotated)."""
    from_image: Callable[[Image.Image], av.VideoFrame] = av.VideoFrame.from_image
    return from_image(image)


# --- composition --------------------------------------------------------------------------


def _composed_frames(
    sources: Sequence[_Reference], *, count: int, fps: int, size: tuple[int, int]
) -> Iterator[av.VideoFrame]:
    """Each output frame, blended at the working size and upscaled to `size`."""
    reformatter = VideoReformatter()
    for index in range(count):
        t = index / fps
        image = sources[0].at(t)
        if len(sources) == 2:
            mix = index / (count - 1) if count > 1 else 0.0
            image = Image.blend(image, sources[1].at(t), mix)
        yield _yuv(image, size, reformatter)


def _yuv(image: Image.Image, size: tuple[int, int], reformatter: VideoReformatter) -> av.VideoFrame:
    """`image` as a BT.709 yuv420p frame of `size`. swscale scales and converts in one pass,
    some 30x faster than a Pillow resize to 1080p plus the conversion."""
    return reformatter.reformat(
        _frame_of(image),
        width=size[0],
        height=size[1],
        format="yuv420p",
        dst_colorspace=Colorspace.ITU709,
        dst_color_range=ColorRange.MPEG,
        interpolation=Interpolation.BILINEAR,
    )


@dataclass(frozen=True)
class _PlanePatch:
    """One yuv420p plane's share of an overlay piece: its values there and their opacity
    (blending Y, U and V separately equals blending RGB: the conversion is affine)."""

    plane: int
    left: int
    top: int
    values: Image.Image  # "L"
    alpha: Image.Image  # "L", same size

    def apply(self, plane: VideoPlane) -> None:
        width, height = self.values.size
        rows = _rows(plane, self.left, self.top, width, height)
        view = memoryview(plane)
        region = Image.frombytes("L", (width, height), b"".join(view[r] for r in rows))
        region.paste(self.values, (0, 0), self.alpha)
        data = region.tobytes()
        for i, r in enumerate(rows):
            view[r] = data[i * width : (i + 1) * width]


def _rows(plane: VideoPlane, left: int, top: int, width: int, height: int) -> list[slice]:
    """Where each row of a rectangle lies in a plane's buffer (rows may be padded)."""
    stride = plane.line_size
    starts = ((top + row) * stride + left for row in range(height))
    return [slice(start, start + width) for start in starts]


@dataclass(frozen=True)
class _Overlay:
    """Caption band and banner badge, rendered once per clip and blended into every frame."""

    patches: tuple[_PlanePatch, ...]

    @classmethod
    def build(cls, width: int, height: int, *, caption: str, banner: str) -> _Overlay:
        # Proportional to the height, but narrow (portrait) frames still fit ~20+ characters.
        font_size = max(10, round(min(height / 22, width / 20)))
        pieces = [
            _caption_piece(caption, width, height, font_size),
            _badge_piece(banner, font_size),
        ]
        reformatter = VideoReformatter()
        patches: list[_PlanePatch] = []
        for piece in pieces:
            clipped = None if piece is None else _clip(*piece, (width, height))
            if clipped is not None:
                patches += _plane_patches(*clipped, reformatter)
        return cls(tuple(patches))

    def apply(self, frame: av.VideoFrame) -> av.VideoFrame:
        for patch in self.patches:
            patch.apply(frame.planes[patch.plane])
        return frame


def _clip(
    image: Image.Image, box: tuple[int, int], frame: tuple[int, int]
) -> tuple[Image.Image, tuple[int, int]] | None:
    """The part of an RGBA piece at `box` inside the frame, on even coordinates and sizes
    (yuv420p halves them for the chroma planes)."""
    x, y = box
    left, top = max(0, -x), max(0, -y)
    right = min(image.width, frame[0] - x) - left
    bottom = min(image.height, frame[1] - y) - top
    width, height = right & ~1, bottom & ~1
    x, y = (x + left) & ~1, (y + top) & ~1
    if width <= 0 or height <= 0:
        return None
    return image.crop((left, top, left + width, top + height)), (x, y)


def _plane_patches(
    image: Image.Image, box: tuple[int, int], reformatter: VideoReformatter
) -> list[_PlanePatch]:
    """An RGBA piece as Y, U and V patches, converted like the frames it goes on."""
    frame = _yuv(image.convert("RGB"), image.size, reformatter)
    alpha = image.getchannel("A")
    patches = []
    for index, plane in enumerate(frame.planes):
        shift = 0 if index == 0 else 1  # chroma planes are half size each way
        size = (image.width >> shift, image.height >> shift)
        data = b"".join(memoryview(plane)[r] for r in _rows(plane, 0, 0, *size))
        values = Image.frombytes("L", size, data)
        opacity = alpha if shift == 0 else alpha.resize(size, Image.Resampling.BOX)
        patches.append(_PlanePatch(index, box[0] >> shift, box[1] >> shift, values, opacity))
    return patches


def _font(size: int) -> _Font:
    return ImageFont.load_default(size=size)


def _caption_piece(
    caption: str, width: int, height: int, font_size: int
) -> tuple[Image.Image, tuple[int, int]] | None:
    text, cut = _clean(caption, _MAX_CAPTION_CHARS)
    if not text:
        return None
    font = _font(font_size)
    pad = max(4, font_size // 2)
    line_height = sum(_metrics(font)) + max(2, font_size // 5)
    room = max(1, (height // 2 - 2 * pad) // line_height)  # never more than half the frame
    max_width = max(1, width - 2 * font_size)
    lines = _wrap(text, font, max_width, max_lines=min(_MAX_CAPTION_LINES, room), cut=cut)
    band_h = len(lines) * line_height + 2 * pad
    band_h += band_h % 2  # even, so the band stays flush with the bottom in yuv420p
    band = Image.new("RGBA", (width, band_h), _CAPTION_BAND)
    draw = ImageDraw.Draw(band)
    for row, line in enumerate(lines):
        x = (width - font.getlength(line)) / 2
        draw.text((x, pad + row * line_height), line, font=font, fill=_WHITE)
    return band, (0, height - band_h)


def _badge_piece(banner: str, caption_size: int) -> tuple[Image.Image, tuple[int, int]] | None:
    text, cut = _clean(banner, _MAX_BANNER_CHARS)
    if not text:
        return None
    if cut:
        text += _ELLIPSIS
    font = _font(max(10, round(caption_size * 0.8)))
    ascent, descent = _metrics(font)
    pad_x, pad_y = max(4, ascent // 2), max(2, ascent // 4)
    size = (round(font.getlength(text)) + 2 * pad_x, ascent + descent + 2 * pad_y)
    badge = Image.new("RGBA", size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(badge)
    draw.rounded_rectangle((0, 0, size[0] - 1, size[1] - 1), radius=pad_y * 2, fill=_BADGE_FILL)
    draw.text((pad_x, pad_y), text, font=font, fill=_WHITE)
    margin = max(4, caption_size // 2) & ~1
    return badge, (margin, margin)


def _metrics(font: _Font) -> tuple[int, int]:
    if isinstance(font, ImageFont.FreeTypeFont):
        return font.getmetrics()
    bbox = font.getbbox("Ag")  # the bitmap fallback font (no FreeType) has no metrics
    return int(bbox[3]), 0


def _clean(text: str, limit: int) -> tuple[str, bool]:
    """`text` on one line, without control characters or lone surrogates (FreeType cannot
    take those), at most `limit` characters; and whether anything was cut off."""
    kept: list[str] = []
    for ch in text[: limit * 2]:
        category = unicodedata.category(ch)
        if category in ("Cc", "Zl", "Zp") or ch.isspace():
            kept.append(" ")  # line breaks, tabs, \u2028 ... become plain spaces
        elif category != "Cs":
            kept.append(ch)
    cleaned = " ".join("".join(kept).split())
    cut = len(text) > limit * 2 or len(cleaned) > limit
    return cleaned[:limit].rstrip(), cut


def _wrap(text: str, font: _Font, max_width: int, *, max_lines: int, cut: bool) -> list[str]:
    """Greedy word wrap; a word wider than a line is broken; the last line gets an ellipsis
    when the text does not fit (or was cut before)."""

    def fits(s: str) -> bool:
        return font.getlength(s) <= max_width

    lines: list[str] = []
    current = ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if fits(candidate):
            current = candidate
            continue
        if current:
            lines.append(current)
        current = word
        while not fits(current) and len(lines) <= max_lines:
            split = max(1, _longest_prefix(current, fits))
            lines.append(current[:split])
            current = current[split:]
        if len(lines) > max_lines:
            break
    if current:
        lines.append(current)
    if len(lines) <= max_lines and not cut:
        return lines
    kept = lines[:max_lines]
    last = kept[-1]
    keep = _longest_prefix(last, lambda s: fits(s.rstrip() + _ELLIPSIS))
    kept[-1] = last[:keep].rstrip() + _ELLIPSIS
    return kept


def _longest_prefix(text: str, fits: Callable[[str], bool]) -> int:
    """The largest n with fits(text[:n]), by bisection (width grows with length)."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(text[:middle]):
            low = middle
        else:
            high = middle - 1
    return low


# --- the sample reference -----------------------------------------------------------------


def _sample_frames(width: int, height: int, count: int) -> Iterator[Image.Image]:
    """A rainbow scrolling sideways, three circling discs and the word 'sample'."""
    rainbow = _rainbow(width * 2, height)
    font = _font(max(10, height // 5))
    label = "sample"
    label_w = font.getlength(label)
    radius = max(2, height // 8)
    for index in range(count):
        phase = index / count
        offset = round(phase * width) % width
        image = rainbow.crop((offset, 0, offset + width, height))
        draw = ImageDraw.Draw(image)
        for disc, colour in enumerate(((255, 255, 255), (20, 20, 20), (255, 220, 0))):
            angle = 2 * math.pi * (phase + disc / 3)
            cx = width / 2 + (width / 2 - radius) * math.cos(angle * (disc + 1))
            cy = height / 2 + (height / 2 - radius) * math.sin(angle)
            draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=colour)
        draw.text(
            ((width - label_w) / 2, height * 0.4),
            label,
            font=font,
            fill=(255, 255, 255),
            stroke_width=max(1, height // 120),
            stroke_fill=(0, 0, 0),
        )
        yield image


def _rainbow(width: int, height: int) -> Image.Image:
    """Hue across (repeating every half of `width`, so crops of half of it loop), darker
    towards the bottom."""
    half = max(1, width // 2)
    hue = Image.linear_gradient("L").rotate(90).resize((half, height))
    hue = hue.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    strip = Image.new("L", (width, height))
    strip.paste(hue, (0, 0))
    strip.paste(hue, (half, 0))
    saturation = Image.new("L", (width, height), 200)
    value = Image.linear_gradient("L").resize((width, height)).point(lambda v: 255 - v // 3)
    return Image.merge("HSV", (strip, saturation, value)).convert("RGB")


# --- encoding -----------------------------------------------------------------------------


def _encode(
    frames: Iterable[av.VideoFrame],
    *,
    width: int,
    height: int,
    fps: int,
    quality: tuple[str, int],
) -> bytes:
    """An MP4 of `frames` (yuv420p, width x height), its index (moov) before the media data
    so players start before the download ends. FFmpeg's faststart pass re-opens the output
    by file name, which a BytesIO has not ("No such file or directory: '<none>'"), hence
    the temporary file."""
    with tempfile.TemporaryDirectory(prefix="simulated-clip-") as directory:
        path = Path(directory) / "clip.mp4"
        options = {"movflags": "+faststart"}
        with av.open(str(path), mode="w", format="mp4", options=options) as container:
            stream = _video_output(container, width, height, fps, quality)
            for index, frame in enumerate(frames):
                frame.pts = index
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))  # flush the encoder's delayed frames
        return path.read_bytes()


def _video_output(
    container: OutputContainer, width: int, height: int, fps: int, quality: tuple[str, int]
) -> av.VideoStream:
    name = encoder_name()
    preset, crf = quality
    options = ({"preset": preset, "crf": str(crf), "maxrate": f"{_MAX_KBITS}k",
                "bufsize": f"{2 * _MAX_KBITS}k"} if name == "libx264" else {})
    stream = container.add_stream(name, rate=fps, options=options)
    assert isinstance(stream, av.VideoStream)  # a video codec name: always
    stream.width, stream.height = width, height
    stream.pix_fmt = "yuv420p"
    stream.time_base = Fraction(1, fps)
    stream.gop_size = 2 * fps  # a keyframe every 2 s, so players can seek
    if name != "libx264":
        stream.bit_rate = min(_MAX_KBITS * 1000, max(400_000, width * height * fps // 10))
        stream.max_b_frames = 0
    # Tagged BT.709, as the frames are converted: untagged, players guess differently.
    stream.colorspace = stream.color_primaries = stream.color_trc = 1  # AVCOL_*_BT709
    stream.color_range = 1  # AVCOL_RANGE_MPEG (limited)
    return stream
