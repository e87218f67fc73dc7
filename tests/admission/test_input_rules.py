"""The rules a request must pass before anything is charged."""

from __future__ import annotations

import pytest

from admission.input_rules import InputError, check_media, check_text

MB = 1024 * 1024


@pytest.mark.parametrize(("filename", "content_type"), [
    ("clip.mp4", "video/mp4"), ("CLIP.MOV", "video/quicktime"), ("a.m4v", "video/x-m4v"),
])
def test_videos_pass(filename: str, content_type: str) -> None:
    check_media("video", "video", filename, content_type, 5 * MB, 100 * MB)


@pytest.mark.parametrize(("filename", "content_type", "words"), [
    ("cat.png", "image/png", "`video` must be a video"),
    ("cat.mp4", "image/png", "image/png"),            # the name alone does not make it video
    ("movie.png", "video/mp4", "`movie.png`"),        # nor does the type alone
    ("clip.mp4", None, "of unknown type"),
    ("a.webm", "video/webm", "(m4v, mov, mp4)"),      # the model takes MP4 or MOV only
    ("a.mkv", "video/x-matroska", "(m4v, mov, mp4)"),
])
def test_non_videos_are_refused_with_the_fix(filename: str, content_type: str | None,
                                             words: str) -> None:
    with pytest.raises(InputError, match="Attach a video file instead") as err:
        check_media("video", "video", filename, content_type, MB, 100 * MB)
    assert words in str(err.value)


def test_oversize_is_refused_with_both_sizes() -> None:
    with pytest.raises(InputError) as err:
        check_media("video2", "video", "big.mp4", "video/mp4", 150 * MB, 100 * MB)
    assert "`video2` is 150.0 MB; the limit is 100.0 MB" in str(err.value)


def test_audio_rules() -> None:
    check_media("audio", "audio", "song.mp3", "audio/mpeg", MB, 20 * MB)
    with pytest.raises(InputError, match="an audio file"):
        check_media("audio", "audio", "song.mp4", "video/mp4", MB, 20 * MB)


def test_file_names_cannot_break_the_message() -> None:
    with pytest.raises(InputError) as err:
        check_media("video", "video", "a`b\n@everyone.png", "image/png", MB, 100 * MB)
    assert "`ab@everyone.png`" in str(err.value)  # no stray backtick closes the code span
    assert "\n" not in str(err.value)


def test_prompt_rules() -> None:
    check_text("prompt", "a cat", 10, required=True)
    check_text("negative_prompt", None, 10, required=False)
    with pytest.raises(InputError, match="`prompt` is empty"):
        check_text("prompt", "   ", 10, required=True)
    with pytest.raises(InputError, match="`prompt` is 11 characters; the limit is 10"):
        check_text("prompt", "x" * 11, 10, required=True)
