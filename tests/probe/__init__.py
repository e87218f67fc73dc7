"""Tests of media/probe.py: checking users' reference files in a child process."""
