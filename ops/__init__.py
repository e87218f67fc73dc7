"""Operator commands that work on the database directly (no Discord needed)."""
