"""Every test of the suite runs with recognisable fake secrets, and fails if one escapes
(issue 13, secrets; `tests/conftest.py` applies `secrets_stay_put` to every test).

Each Discord emulator a test starts gets a bot token `CANARY-DISCORD-<hex>` and each fake
WaveSpeed left at the default key gets `CANARY-WAVESPEED-<hex>`. After the test, every
secret a test's emulators and fakes held at the end (a test may set its own) is searched
for in:

- every log record of the test's process, DEBUG included (the root logger is at DEBUG for
  the test), message, arguments and traceback, before any redaction: the bot must not log
  a secret, not merely have it scrubbed;
- every request the emulator recorded (path, query, JSON, multipart form), every message
  it holds (content, embeds, components, edit history, attachment bytes); every submission
  and upload the fake WaveSpeed holds;
- every file under the test's `tmp_path`: the database and its WAL, the work directory,
  a `bot.py` child's log (written by the product's own logging, at DEBUG).

The Discord token belongs only in the Authorization header and IDENTIFY to Discord, the
WaveSpeed key only in the Authorization header to WaveSpeed; the emulator and the fake
record neither. A test writing a secret on purpose (a `.env` it hands a child) is the test
writing, not the bot: files named `.env` are not searched."""

from __future__ import annotations

import functools
import itertools
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from discord_emulator.emulator import DiscordEmulator
from simulator.wavespeed_api import SimulatedWaveSpeed

DEFAULT_WAVESPEED_KEY = "test-key"  # SimulatedWaveSpeed's default api_key
CHUNK = 1 << 20
_serial = itertools.count(1)


def canary(kind: str) -> str:
    return f"CANARY-{kind}-{next(_serial)}-{secrets.token_hex(10)}"


class _LogSearch(logging.Handler):
    """Looks at each record as it is emitted (keeping none: a long test logs a lot)."""

    def __init__(self, found: list[str], secrets_now: Any) -> None:
        super().__init__(logging.DEBUG)
        self.found = found
        self.secrets_now = secrets_now

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = f"{record.getMessage()} {record.args!r} {record.exc_text or ''}"
            if record.exc_info and not record.exc_text:
                text += logging.Formatter().formatException(record.exc_info)
        except Exception as exc:  # a record that cannot format is not a leak
            text = repr(exc)
        for secret in self.secrets_now():
            if secret in text:
                self.found.append(f"log record {record.name}:{record.levelname} "
                                  f"{record.getMessage()[:200]!r}")


@dataclass
class Watch:
    """What one test started that holds a secret, and what was found where."""
    emulators: list[DiscordEmulator] = field(default_factory=list)
    fakes: list[SimulatedWaveSpeed] = field(default_factory=list)
    leaks: list[str] = field(default_factory=list)

    def secrets(self) -> list[str]:
        held = [e.bot_token for e in self.emulators] + [f.api_key for f in self.fakes]
        # The default key is a constant that a test may print on purpose; only canaries
        # and a test's own long keys are looked for.
        return sorted({s for s in held if len(s) >= 16 and s != DEFAULT_WAVESPEED_KEY})


def _emulator_texts(emu: DiscordEmulator) -> Iterator[tuple[str, str | bytes]]:
    for r in emu.requests:
        yield f"Discord request {r.method} {r.path}", f"{r.path} {r.query} {r.json!r} {r.form!r}"
    for m in emu.messages:
        yield f"Discord message {m.id}", (
            f"{m.content} {m.embeds!r} {m.components!r} {m.history!r}")
        for a in m.attachments:
            yield f"attachment {a.filename} of message {m.id}", a.data
    for t in emu.threads:
        yield f"Discord thread {t.id}", t.name


def _fake_texts(fake: SimulatedWaveSpeed) -> Iterator[tuple[str, str | bytes]]:
    for s in fake.submissions:
        yield f"WaveSpeed submission {s.task_id}", repr(s.body)
    for token, data in fake.uploads.items():
        yield f"WaveSpeed upload {token}", data


def _file_holds(path: Path, needles: list[bytes]) -> bool:
    """Chunked, with an overlap: a file may be far larger than memory wants."""
    overlap = max(len(n) for n in needles) - 1
    tail = b""
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            window = tail + chunk
            if any(n in window for n in needles):
                return True
            tail = window[-overlap:]
    return False


def search(watch: Watch, tmp_path: Path | None) -> list[str]:
    found = list(watch.leaks)
    wanted = watch.secrets()
    if not wanted:
        return found
    needles = [s.encode() for s in wanted]
    places: list[tuple[str, str | bytes]] = []
    for emu in watch.emulators:
        places.extend(_emulator_texts(emu))
    for fake in watch.fakes:
        places.extend(_fake_texts(fake))
    for where, text in places:
        if any(n in text for n in needles) if isinstance(text, bytes) else any(
                s in text for s in wanted):
            found.append(where)
    if tmp_path is not None and tmp_path.exists():
        for path in tmp_path.rglob("*"):
            if path.name != ".env" and path.is_file() and not path.is_symlink():
                try:
                    if _file_holds(path, needles):
                        found.append(f"file {path.relative_to(tmp_path)}")
                except OSError:  # removed while we looked (a child still exiting)
                    continue
    return found


def keep_pytest_capture_at_warning(config: pytest.Config) -> None:
    """The root logger is at DEBUG for the canary search, but pytest's capture handlers
    (caplog and the report section) keep and format every record they get, for the whole
    test: at DEBUG, the simulation's 50 seeds kept 400 MB and its 3000-seed soak would not
    fit. They stay at WARNING, the root logger's default they saw before, unless a test
    asks for more with caplog.set_level (which restores this level afterwards)."""
    plugin = config.pluginmanager.get_plugin("logging-plugin")
    for name in ("caplog_handler", "report_handler"):
        handler = getattr(plugin, name)  # pytest >= 8 keeps one of each for the session
        assert isinstance(handler, logging.Handler), (name, handler)
        handler.setLevel(logging.WARNING)


@pytest.fixture(autouse=True)
def secrets_stay_put(request: pytest.FixtureRequest,
                     monkeypatch: pytest.MonkeyPatch) -> Iterator[Watch]:
    watch = Watch()

    original_emulator_init = DiscordEmulator.__init__
    original_fake_init = SimulatedWaveSpeed.__init__

    @functools.wraps(original_emulator_init)
    def emulator_init(self: DiscordEmulator, *args: Any, **kwargs: Any) -> None:
        original_emulator_init(self, *args, **kwargs)
        self.bot_token = canary("DISCORD")
        watch.emulators.append(self)

    @functools.wraps(original_fake_init)
    def fake_init(self: SimulatedWaveSpeed, *args: Any, **kwargs: Any) -> None:
        original_fake_init(self, *args, **kwargs)
        if self.api_key == DEFAULT_WAVESPEED_KEY:
            self.api_key = canary("WAVESPEED")
        watch.fakes.append(self)

    monkeypatch.setattr(DiscordEmulator, "__init__", emulator_init)
    monkeypatch.setattr(SimulatedWaveSpeed, "__init__", fake_init)

    root = logging.getLogger()
    handler = _LogSearch(watch.leaks, watch.secrets)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield watch
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    tmp_path = request.node.funcargs.get("tmp_path")
    leaks = search(watch, tmp_path if isinstance(tmp_path, Path) else None)
    if leaks:
        shown = "\n  ".join(dict.fromkeys(leaks))
        pytest.fail(f"a secret (a CANARY- token or key) escaped to:\n  {shown}",
                    pytrace=False)
