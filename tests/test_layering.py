"""The core stays free of discord.py, so it can be tested and reasoned about alone."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ("storage", "engine", "wavespeed", "config", "ops")


def core_modules() -> list[str]:
    modules = []
    for package in CORE:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            modules.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return modules


def test_core_modules_do_not_import_discord() -> None:
    modules = core_modules()
    assert "engine.engine" in modules and "storage.credits" in modules
    script = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "leaked = sorted(m for m in sys.modules if m == 'discord' or m.startswith('discord.'))\n"
        "print(','.join(leaked))\n"
    )
    result = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "", f"the core imported {result.stdout.strip()}"
