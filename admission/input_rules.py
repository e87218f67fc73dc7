"""What a generation request may contain, checked before anything is charged.

Pure functions over plain values (file name, declared content type, size, text), so the
Discord layer and the tests share one set of rules and one set of messages. Every message
names the problem and the fix.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from pathlib import PurePosixPath

# The model takes MP4 or MOV references (m4v is MP4 by another name); the probe checks the
# container itself (media/probe.py).
VIDEO_EXTENSIONS = frozenset({".mp4", ".mov", ".m4v"})
AUDIO_EXTENSIONS = frozenset({".mp3", ".wav", ".m4a", ".aac", ".ogg", ".flac"})


class InputError(ValueError):
    """A request that must not be submitted; the message is shown to the user as is."""


@dataclass(frozen=True)
class InputLimits:
    max_video_bytes: int
    max_audio_bytes: int
    max_prompt_chars: int


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB"


def _size(size: int, other: int) -> str:
    """`size` in MB, or in bytes when MB would show it equal to `other` ("1.0 MB; the
    limit is 1.0 MB" names no problem)."""
    return _mib(size) if _mib(size) != _mib(other) else f"{size:,} bytes"


def check_media(
    option: str, kind: str, filename: str, content_type: str | None, size: int, limit: int
) -> None:
    """`kind` is 'video' or 'audio'. Both the content type Discord reports and the file
    extension must say so: either alone is easy to get wrong by accident."""
    extensions = VIDEO_EXTENSIONS if kind == "video" else AUDIO_EXTENSIONS
    suffix = PurePosixPath(filename.lower()).suffix
    declared = (content_type or "").split(";")[0].strip().lower()
    if not declared.startswith(f"{kind}/") or suffix not in extensions:
        allowed = ", ".join(sorted(e.lstrip(".") for e in extensions))
        article = "a video" if kind == "video" else "an audio"
        raise InputError(
            f"`{option}` must be {'a video' if kind == 'video' else 'an audio file'} "
            f"({allowed}), but `{_safe_name(filename)}` is "
            f"{declared or 'of unknown type'}. Attach {article} file instead. Nothing was "
            "charged."
        )
    if size > limit:
        raise InputError(
            f"`{option}` is {_size(size, limit)}; the limit is {_size(limit, size)}. "
            f"Trim or compress `{_safe_name(filename)}` and try again. Nothing was charged."
        )
    if size <= 0:
        raise InputError(f"`{option}` (`{_safe_name(filename)}`) is empty. Attach the file "
                         "again. Nothing was charged.")


# Control characters a prompt may hold: the tab and those str.splitlines() breaks lines at
# (\n, \r, \v, \f, \x1c-\x1e, \x85), which the bot shows as line breaks.
_LINE_CONTROLS = frozenset("\t\n\r\x0b\x0c\x1c\x1d\x1e\x85")


def _visible(text: str) -> bool:
    """Whether any character would show: not only whitespace and invisible format
    characters (zero-width spaces and joiners, U+FEFF, direction marks)."""
    return any(not ch.isspace() and unicodedata.category(ch) != "Cf" for ch in text)


def check_text(option: str, text: str | None, limit: int, *, required: bool) -> None:
    # Invisible-only text is empty: WaveSpeed would be paid to render a prompt nobody wrote.
    if text is None or not _visible(text):
        if required:
            raise InputError(f"`{option}` is empty. Describe the clip you want.")
        return
    if len(text) > limit:
        raise InputError(
            f"`{option}` is {len(text)} characters; the limit is {limit}. Shorten it and "
            "try again."
        )
    # NUL, ESC, BEL...: nothing a member means to send, and not text Discord or WaveSpeed
    # show; lone surrogates cannot be encoded for the database or the API at all.
    bad = next((ch for ch in text if (unicodedata.category(ch) == "Cc"
                                      and ch not in _LINE_CONTROLS)
                or unicodedata.category(ch) == "Cs"), None)
    if bad is not None:
        what = ("invisible control character" if unicodedata.category(bad) == "Cc"
                else "broken character (half of a surrogate pair)")
        raise InputError(
            f"`{option}` contains the {what} U+{ord(bad):04X}, which cannot be sent. "
            "Remove it (retype the text rather than pasting it) and try again."
        )


def _safe_name(filename: str) -> str:
    """A file name fit to show inside `code`: no backticks, no line breaks, not too long."""
    cleaned = "".join(ch for ch in filename if ch.isprintable() and ch != "`")
    return cleaned[:80] or "the file"
