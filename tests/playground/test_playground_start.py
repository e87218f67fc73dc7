"""Starting and stopping the playground: a taken port fails at once and writes nothing, one
data directory serves one playground at a time, refusals are reported in a line (exit 1,
no traceback), and SIGTERM stops the playground and its bot (exit 0, no bot left)."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from playground.app import LOCK_FILE, DataLock, Playground, PlaygroundConfig, StartRefused
from playground.bot_process import BotOptions
from playground.server import SECURITY_HEADERS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield int(taken.getsockname()[1])


def playground_data(path: Path) -> Path:
    """A data directory as a playground leaves it."""
    (path / "work").mkdir(parents=True)
    (path / "world.json").write_text("{}")
    (path / "bot.log").write_text("a log")
    return path


def run_playground(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "playground", *args], cwd=ROOT, capture_output=True,
        text=True, timeout=timeout, check=False)


async def test_a_taken_port_fails_at_once_and_writes_nothing(tmp_path: Path,
                                                             taken_port: int) -> None:
    data = tmp_path / "data"
    pg = Playground(PlaygroundConfig(data_dir=data, port=taken_port, fresh=True))
    started = time.monotonic()
    with pytest.raises(StartRefused, match=rf"cannot serve on 127\.0\.0\.1:{taken_port}: "
                                           rf".*\(try --port\)"):
        await pg.start()
    assert time.monotonic() - started < 0.5
    assert not data.exists() and pg.bot is None


async def test_a_second_playground_on_one_data_directory_is_refused(tmp_path: Path) -> None:
    data = playground_data(tmp_path / "data").resolve()
    first = DataLock(data)
    first.acquire()
    try:
        second = Playground(PlaygroundConfig(data_dir=data, port=0, fresh=True))
        with pytest.raises(StartRefused, match=rf"another playground is using "
                                               rf"{re.escape(str(data))} \(pid {os.getpid()}\)"):
            await second.start()
        assert second.bot is None
        assert sorted(p.name for p in data.iterdir()) == [LOCK_FILE, "bot.log", "work",
                                                           "world.json"]  # not wiped
    finally:
        first.release()
    again = DataLock(data)  # released: free for the next one
    again.acquire()
    again.release()


async def test_an_unusable_data_directory_is_not_called_a_port_problem(tmp_path: Path
                                                                       ) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    pg = Playground(PlaygroundConfig(data_dir=not_a_dir, port=0))
    with pytest.raises(StartRefused, match="cannot use") as refused:
        await pg.start()
    assert "port" not in str(refused.value)


def test_refusals_at_start_are_one_line_and_exit_1(tmp_path: Path, taken_port: int) -> None:
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "thesis.tex").write_text("years of work")
    busy = playground_data(tmp_path / "busy").resolve()
    lock = DataLock(busy)
    lock.acquire()
    try:
        cases = [
            (["--fresh", "--data", str(theirs)], "--fresh: not deleting anything in"),
            (["--fresh", "--data", str(busy)], f"another playground is using {busy} "
                                               f"(pid {os.getpid()})"),
            (["--port", str(taken_port), "--data", str(tmp_path / "new")],
             f"cannot serve on 127.0.0.1:{taken_port}"),
        ]
        for args, message in cases:
            result = run_playground("--port", "0", *args)
            assert result.returncode == 1, (args, result.stderr)
            assert f"playground: {message}" in result.stderr, (args, result.stderr)
            assert "Traceback" not in result.stderr and "Task exception" not in result.stderr
    finally:
        lock.release()
    assert (theirs / "thesis.tex").exists() and (busy / "world.json").exists()
    assert not (tmp_path / "new").exists()


# -- a whole run, stopped by SIGTERM -----------------------------------------------------


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their command lines."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # gone meanwhile
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found[int(entry.name)] = cmdline
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def read_line(proc: subprocess.Popen[str], prefix: str, within: float) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line.startswith(prefix):
                return line
            if line == "" and proc.poll() is not None:
                break
    raise AssertionError(f"no line starting {prefix!r} within {within} s "
                         f"(exit code {proc.poll()})")


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux's /proc")
def test_sigterm_stops_the_playground_and_its_bot(tmp_path: Path) -> None:
    started = time.monotonic()
    log = (tmp_path / "stderr.txt").open("w")
    speedup = f"{BotOptions().speedup:g}"
    proc = subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "playground", "--port", "0", "--data", str(tmp_path / "data"),
         "--speedup", speedup], cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    bots: dict[int, str] = {}
    try:
        line = read_line(proc, "playground: open ", within=30.0)
        url = line.split()[2]
        with urllib.request.urlopen(url, timeout=5) as page:  # noqa: S310 - its http URL
            assert page.status == 200
            assert page.headers["X-Frame-Options"] == SECURITY_HEADERS["X-Frame-Options"]
        bots = {pid: cmd for pid, cmd in children(proc.pid).items() if "bot.py" in cmd}
        assert len(bots) == 1, children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0, (tmp_path / "stderr.txt").read_text()
        assert not any(alive(pid) for pid in bots), "the bot outlived the playground"
        assert children(proc.pid) == {}
        stderr = (tmp_path / "stderr.txt").read_text()
        assert "the bot stopped (exit code 0)" in stderr and "Traceback" not in stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in bots:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        log.close()
    assert time.monotonic() - started < 20.0
