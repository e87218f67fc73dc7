"""Members' uploads (reference videos, audio) kept in the emulator for the bot to download,
within a byte budget: beyond it the oldest are forgotten. A job that still needed one (a
re-roll of an old clip, say) then fails to download it and is refunded, as a job whose
Discord attachment expired would be."""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from discord_emulator.emulator import DiscordEmulator
from playground.commands import Upload

log = logging.getLogger(__name__)

GiB = 1024 * 1024 * 1024
UPLOAD_BUDGET = 1 * GiB  # all members' uploads the playground keeps at once


class Uploads:
    def __init__(self, emulator: DiscordEmulator, budget: int = UPLOAD_BUDGET) -> None:
        self.emulator = emulator
        self.budget = budget
        self._kept: OrderedDict[int, int] = OrderedDict()  # attachment id -> bytes, oldest first
        self.total = 0

    @property
    def kept(self) -> list[int]:
        """The ids of the uploads kept, oldest first."""
        return list(self._kept)

    def store(self, upload: Upload) -> dict[str, Any]:
        """Keep `upload` in the emulator (forgetting the oldest others beyond the budget);
        its attachment payload, for a command's options."""
        payload = self.emulator.add_attachment(upload.filename, upload.data,
                                               upload.content_type)
        aid = int(payload["id"])
        self._kept[aid] = len(upload.data)
        self.total += len(upload.data)
        while self.total > self.budget and len(self._kept) > 1:
            oldest = next(iter(self._kept))
            log.info("forgetting upload %d: the playground keeps at most %d MiB of uploads",
                     oldest, self.budget // (1024 * 1024))
            self.forget([oldest])
        return payload

    def forget(self, ids: Iterable[int]) -> None:
        """Drop these uploads (e.g. those of a command the emulator refused)."""
        for aid in ids:
            size = self._kept.pop(aid, None)
            if size is not None:
                self.total -= size
            self.emulator.forget_attachment(aid)
