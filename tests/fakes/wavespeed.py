"""The fake WaveSpeed the tests use: the product's simulated WaveSpeed (simulator/), with
the tests' fast timing and tiny outputs."""

from __future__ import annotations

from simulator.wavespeed_api import *  # noqa: F403
