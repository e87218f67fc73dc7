"""Which codecs users' references may use."""

from __future__ import annotations

from typing import Final

# Camera and screen video codecs only (FFmpeg codec names; its decoders' names are mostly
# the same). Image codecs (png, mjpeg, tiff...) inside a video container make the decoder
# allocate whatever each picture declares, however small the file or the container's own
# width and height.
VIDEO_CODECS: Final = frozenset({"h264", "hevc", "vp8", "vp9", "av1", "mpeg4", "prores"})

# Sound codecs a reference audio file may use (FFmpeg codec names, not decoder names:
# "mp3", not "mp3float").
AUDIO_CODECS: Final = frozenset({"aac", "mp3", "flac", "alac", "opus", "vorbis"})
AUDIO_CODEC_PREFIXES: Final = ("pcm_",)  # WAV's many PCM sample formats


def is_audio_codec(name: str) -> bool:
    return name in AUDIO_CODECS or name.startswith(AUDIO_CODEC_PREFIXES)
