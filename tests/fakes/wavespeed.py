"""The fake WaveSpeed the tests use: the product's simulated WaveSpeed (simulator/), with
the tests' fast timing and a tiny real MP4 as every output."""

from __future__ import annotations

from typing import Any

from simulator.wavespeed_api import *  # noqa: F403
from simulator.wavespeed_api import SimulatedWaveSpeed
from tests.media import make_mp4


class FakeWaveSpeed(SimulatedWaveSpeed):
    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.static_output = make_mp4()
