"""A simulated WaveSpeed built into the product (WAVESPEED_MODE=simulate)."""
