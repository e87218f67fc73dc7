"""Checks on users' media files, run in capped child processes."""
