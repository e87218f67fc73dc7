"""simulator.clip renders real MP4s: every check decodes the output with PyAV.

The references are made here with PyAV too (solid colours, colour timelines, a rotated one,
an audio-only file), small, so the whole module runs in seconds.
"""

from __future__ import annotations

import functools
import io
import itertools
import random
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import pytest
from PIL import Image, ImageChops, ImageFont, ImageStat

from simulator import clip
from simulator.clip import ClipError, encoder_name, render_clip, sample_reference
from tests.media import make_mp4

RED = (255, 0, 0)
GREEN = (0, 255, 0)
BLUE = (0, 0, 255)
GREY = (128, 128, 128)
Colour = tuple[int, int, int]


# --- making references ---------------------------------------------------------------------


def _encode(images: Sequence[Image.Image], *, fps: int = 10, rotation: int = 0) -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(encoder_name(), rate=fps)
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = images[0].size
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        if rotation:
            stream.set_display_rotation(rotation)
        for index, image in enumerate(images):
            frame = clip._frame_of(image).reformat(format="yuv420p")  # typed from_image
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


@functools.cache
def _timeline(
    colours: tuple[Colour, ...], *, frames_each: int = 5, size: tuple[int, int] = (64, 48)
) -> bytes:
    """`frames_each` frames (at 10 fps) of each colour in turn."""
    images = [Image.new("RGB", size, c) for c in colours for _ in range(frames_each)]
    return _encode(images)


def _solid(colour: Colour, *, frames: int = 10, size: tuple[int, int] = (64, 48)) -> bytes:
    return _timeline((colour,), frames_each=frames, size=size)


def _audio_only() -> bytes:
    """An .m4a: a real MP4 container with one audio stream and no video."""
    name = next(n for n in ("aac", "mp2", "libmp3lame") if clip._can_encode(n))
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream(name, rate=44100)
        assert isinstance(stream, av.AudioStream)
        stream.layout = "mono"
        samples = stream.codec_context.frame_size or 1152
        for index in range(10):
            frame = av.AudioFrame(format=stream.format.name, layout="mono", samples=samples)
            frame.sample_rate = 44100
            for plane in frame.planes:
                plane.update(bytes(plane.buffer_size))
            frame.pts = index * samples
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return buffer.getvalue()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), RED).save(buffer, format="PNG")
    return buffer.getvalue()


# --- reading the output --------------------------------------------------------------------


@dataclass(frozen=True)
class Decoded:
    width: int
    height: int
    codec: str
    pix_fmt: str
    stream_frames: int  # as the container says
    stream_seconds: float
    container_seconds: float
    images: list[Image.Image]


def _decode(data: bytes) -> Decoded:
    with av.open(io.BytesIO(data), mode="r") as container:
        stream = container.streams.video[0]
        images = [clip._image_of(frame) for frame in container.decode(stream)]  # to_image
        assert stream.duration is not None and stream.time_base is not None
        assert container.duration is not None
        return Decoded(
            width=stream.codec_context.width,
            height=stream.codec_context.height,
            codec=stream.codec_context.name,
            pix_fmt=stream.codec_context.pix_fmt or "",
            stream_frames=stream.frames,
            stream_seconds=float(stream.duration * stream.time_base),
            container_seconds=container.duration / av.time_base,
            images=images,
        )


def _centre(image: Image.Image) -> tuple[float, ...]:
    """Mean colour of the middle of the frame: away from the badge and the caption band."""
    w, h = image.size
    return tuple(ImageStat.Stat(image.crop((w * 3 // 10, h * 3 // 10, w * 7 // 10, h // 2))).mean)


def _bottom(image: Image.Image) -> Image.Image:
    w, h = image.size
    return image.crop((0, h * 3 // 4, w, h))


def _mostly(colour: tuple[float, ...], channel: int) -> bool:
    return colour[channel] > 180 and all(v < 60 for i, v in enumerate(colour) if i != channel)


def _top_level_boxes(data: bytes) -> list[str]:
    names, pos = [], 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if size == 1:
            size = struct.unpack(">Q", data[pos + 8 : pos + 16])[0]
        names.append(kind.decode("latin-1"))
        pos += size if size else len(data)
    return names


def _render(refs: Sequence[bytes], **kwargs: object) -> bytes:
    args: dict[str, object] = {"width": 160, "height": 96, "seconds": 1.0, "fps": 12}
    args["caption"] = "a cat surfs"
    args.update(kwargs)
    return render_clip(refs, **args)  # type: ignore[arg-type]


# --- shape and timing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "seconds", "fps"),
    [(1280, 720, 2.0, 12), (720, 1280, 1.5, 12), (1920, 1080, 1.0, 12), (160, 96, 1.3, 7)],
)
def test_the_clip_has_the_asked_size_frame_count_and_duration(
    width: int, height: int, seconds: float, fps: int
) -> None:
    reference = make_mp4(seconds=0.5, width=64, height=64)
    out = render_clip(
        [reference], width=width, height=height, seconds=seconds, caption="a cat", fps=fps
    )
    video = _decode(out)
    frames = round(seconds * fps)
    assert (video.width, video.height) == (width, height)
    assert all(image.size == (width, height) for image in video.images)
    assert len(video.images) == frames == video.stream_frames
    assert video.stream_seconds == pytest.approx(seconds, abs=1 / fps)
    assert video.container_seconds == pytest.approx(seconds, abs=1 / fps)
    assert video.pix_fmt == "yuv420p"
    assert video.codec == ("h264" if encoder_name() in ("libx264", "h264") else "mpeg4")


def test_the_index_comes_before_the_media_so_browsers_can_start_playing() -> None:
    boxes = _top_level_boxes(_render([_solid(GREY)]))
    assert "moov" in boxes and "mdat" in boxes
    assert boxes.index("moov") < boxes.index("mdat")


def test_the_encoder_is_x264_when_this_ffmpeg_has_it() -> None:
    if clip._can_encode("libx264"):
        assert encoder_name() == "libx264"
    else:
        assert encoder_name() in ("h264", "mpeg4")


# --- what is in the frames -----------------------------------------------------------------


def test_two_references_cross_fade_from_the_first_to_the_second() -> None:
    video = _decode(_render([_solid(RED), _solid(BLUE)], seconds=2.0))
    first, middle, last = (_centre(video.images[i]) for i in (0, len(video.images) // 2, -1))
    assert _mostly(first, 0), first
    assert _mostly(last, 2), last
    assert 70 < middle[0] < 190 and 70 < middle[2] < 190, middle
    reds = [_centre(image)[0] for image in video.images]
    # Fades steadily (a little codec noise allowed).
    assert all(b < a + 5 for a, b in itertools.pairwise(reds)), reds


def test_one_reference_is_not_faded_into_anything() -> None:
    video = _decode(_render([_solid(RED)], seconds=2.0))
    assert len(video.images) == 24
    assert all(_mostly(_centre(image), 0) for image in video.images)


def test_a_short_reference_is_looped_at_its_own_speed() -> None:
    # 0.5 s red then 0.5 s green, in a 2.5 s clip at 10 fps: red, green, red, green, red.
    video = _decode(_render([_timeline((RED, GREEN))], seconds=2.5, fps=10))
    assert len(video.images) == 25
    for index, channel in ((2, 0), (7, 1), (12, 0), (17, 1), (22, 0)):
        assert _mostly(_centre(video.images[index]), channel), (index, channel)


def test_a_long_reference_plays_at_its_own_speed_not_squeezed_into_the_clip() -> None:
    # 1 s each of red, green, blue; a 1 s clip shows only the red second.
    video = _decode(_render([_timeline((RED, GREEN, BLUE), frames_each=10)], seconds=1.0))
    assert all(_mostly(_centre(image), 0) for image in video.images)


def test_the_reference_covers_the_frame_whatever_its_shape() -> None:
    # Portrait, landscape and a sliver: always the whole frame filled with the colour.
    for size in ((48, 64), (64, 48), (256, 8)):
        video = _decode(_render([_solid(GREEN, frames=3, size=size)], caption="", banner=""))
        for image in (video.images[0], video.images[-1]):
            corners = (image.crop((0, 0, 8, 8)), image.crop((152, 88, 160, 96)))
            assert all(_mostly(tuple(ImageStat.Stat(c).mean), 1) for c in corners), size


def test_a_rotated_reference_is_shown_upright() -> None:
    # Landscape, left half red and right half blue, flagged to show turned 90 degrees
    # counter-clockwise: upright, the blue half is on top.
    image = Image.new("RGB", (64, 32), RED)
    image.paste(BLUE, (32, 0, 64, 32))
    rotated = _encode([image] * 3, rotation=90)
    frame = _decode(_render([rotated], width=96, height=160, caption="", banner="")).images[0]
    assert _mostly(tuple(ImageStat.Stat(frame.crop((0, 10, 96, 60))).mean), 2)
    assert _mostly(tuple(ImageStat.Stat(frame.crop((0, 100, 96, 150))).mean), 0)


def test_the_caption_is_drawn_on_the_bottom_band_and_the_banner_top_left() -> None:
    plain = _decode(_render([_solid(GREY)], caption="", banner="")).images[0]
    captioned = _decode(_render([_solid(GREY)], caption="hello world", banner="")).images[0]
    badged = _decode(_render([_solid(GREY)], caption="", banner="SIMULATED")).images[0]
    assert ImageStat.Stat(ImageChops.difference(_bottom(plain), _bottom(captioned))).mean[0] > 10
    assert _centre(captioned) == pytest.approx(_centre(plain), abs=3)
    corner = (0, 0, 60, 24)
    diff = ImageChops.difference(plain.crop(corner), badged.crop(corner))
    assert ImageStat.Stat(diff).mean[0] > 10
    assert _bottom(badged).tobytes() == _bottom(plain).tobytes()


@pytest.mark.parametrize(
    "caption",
    [
        "a very long prompt " * 2000,
        "x" * 5000,  # one "word" far wider than the frame
        "🐱🏄‍♀️🌊 surf's up 👍🏽🇯🇵",
        "שלום עולם مرحبا بالعالم \u202eevil\u202c",
        "line one\nline two\r\n\tline three\u2028four\u2029five\x00six\x1b[31m\x7f",
        "lone surrogate \ud800 and \udfff",
        "Z" + "".join(chr(0x300 + i % 0x70) for i in range(300)),  # stacked combining marks
        "\ufeff\u200b\u200d",
        "",
        " \n\u2028 ",
    ],
)
def test_any_caption_renders(caption: str) -> None:
    out = _render([_solid(GREY)], caption=caption, banner=caption, seconds=0.5, fps=4)
    assert len(_decode(out).images) == 2


def test_a_long_caption_is_wrapped_into_three_lines_ending_in_an_ellipsis() -> None:
    font = ImageFont.load_default(size=20)
    text, cut = clip._clean("the quick brown fox jumps over the lazy dog " * 40, 400)
    assert cut
    lines = clip._wrap(text, font, 300, max_lines=3, cut=cut)
    assert len(lines) == 3
    assert lines[-1].endswith("…")
    assert all(font.getlength(line) <= 300 for line in lines)
    assert clip._wrap("short words", font, 300, max_lines=3, cut=False) == ["short words"]


def test_captions_are_cleaned_of_line_breaks_and_control_characters() -> None:
    # A lone surrogate goes (FreeType cannot take it); breaks and controls become spaces.
    assert clip._clean("a\u2028b\nc\x00d\ud800e\t f", 100) == ("a b c de f", False)
    assert clip._clean("x" * 10, 4) == ("xxxx", True)


# --- unusable references and bad arguments -------------------------------------------------


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (random.Random(7).randbytes(20_000), "is not a video file"),
        (b"", "is empty"),
        (_png(), "is not a video file"),
        (make_mp4(seconds=1.0)[: len(make_mp4(seconds=1.0)) // 2], "is not a video file"),
        (_audio_only(), "has no video stream"),
    ],
    ids=["random bytes", "empty", "png", "truncated mp4", "audio only"],
)
def test_an_unusable_reference_gives_a_readable_clip_error(data: bytes, message: str) -> None:
    with pytest.raises(ClipError) as raised:
        _render([data])
    text = str(raised.value)
    assert text.startswith("reference 1 ") and message in text
    assert len(text) < 80 and text.isprintable()  # fit to show a user as is
    with pytest.raises(ClipError, match=r"^reference 2 "):
        _render([_solid(RED), data])


def test_a_reference_too_large_to_decode_safely_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(clip, "_MAX_SOURCE_PIXELS", 64 * 48 - 1)
    with pytest.raises(ClipError, match=r"^reference 1 is too large \(64x48\)"):
        _render([_solid(RED)])


def test_damaged_references_give_a_clip_or_a_clip_error_never_a_crash() -> None:
    good = make_mp4(seconds=0.5)
    rng = random.Random(11)
    for _ in range(24):
        damaged = bytearray(good)
        for _ in range(rng.randint(1, 40)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            out = _render([bytes(damaged[: rng.randint(len(good) // 2, len(good))])], fps=4)
        except ClipError as exc:
            assert str(exc).startswith("reference 1 ")
        else:
            assert len(_decode(out).images) == 4


@pytest.mark.parametrize(
    ("refs", "kwargs"),
    [
        (0, {}),
        (3, {}),
        (1, {"width": 161}),
        (1, {"height": 0}),
        (1, {"width": -2}),
        (1, {"seconds": 0}),
        (1, {"seconds": -1.0}),
        (1, {"seconds": float("nan")}),
        (1, {"fps": 0}),
        (1, {"seconds": 0.01}),  # not even one frame
    ],
)
def test_bad_arguments_are_value_errors(refs: int, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=r"\w"):
        _render([_solid(RED)] * refs, **kwargs)


# --- what is kept of a reference -----------------------------------------------------------


def test_a_long_reference_keeps_a_bounded_evenly_spaced_sample() -> None:
    source = clip._load_reference(make_mp4(seconds=8.0), number=1, size=(32, 32), seconds=8.0)
    assert clip._MAX_SAMPLES // 2 <= len(source.images) <= clip._MAX_SAMPLES
    assert all(image.size == (32, 32) for image in source.images)
    steps = {round(b - a, 3) for a, b in itertools.pairwise(source.times)}
    assert len(steps) == 1
    assert source.period == pytest.approx(8.0)
    cut = clip._load_reference(make_mp4(seconds=8.0), number=1, size=(32, 32), seconds=3.0)
    assert cut.period == pytest.approx(3.0)


# --- the sample reference ------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(640, 360), (320, 240)])
def test_the_sample_reference_is_a_small_lively_video(width: int, height: int) -> None:
    data = sample_reference(width=width, height=height)
    assert len(data) < 500_000
    video = _decode(data)
    assert (video.width, video.height) == (width, height)
    assert video.container_seconds >= 2.0
    first, later = video.images[0], video.images[len(video.images) // 2]
    assert ImageStat.Stat(ImageChops.difference(first, later)).mean[0] > 5  # it moves
    assert len(first.resize((8, 8)).getcolors(64) or []) > 8  # and is colourful


def test_a_render_from_the_sample_reference_works() -> None:
    video = _decode(_render([sample_reference(seconds=2.0)], seconds=1.0))
    assert len(video.images) == 12
