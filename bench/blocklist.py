"""How long one prompt's blocklist check takes, whatever a moderator entered.

    .venv/bin/python -m bench.blocklist [--rounds 20]

Prints milliseconds per 1,500-character prompt (median and worst of `rounds`) for: 20
hostile regexes RE2 accepts, a server filled to its regex size limit, 200 word entries,
and the same prompts against Python's backtracking `re` with one hostile entry, on shorter
texts, for the comparison that made the bot switch (it grows with the cube of the length).
"""

from __future__ import annotations

import argparse
import functools
import re
import statistics
import time
from collections.abc import Callable

from admission.blocklist import check_blocklist
from storage.guild_settings import MAX_REGEX_PROGRAM, BlocklistEntry, compile_entry

HOSTILE = [r"(a|aa)*b", r"(a+)+b", r"(.*a){25}", r"(x+x+)+y", r"(a|a)*c", r"(\w+\s?)*$z",
           r"(.*){1,100}q", r"((a*)*)*b", r"(a|b|ab)*c", r"(.*)*d", r"(aa|a)+e", r"(a*)+f",
           r"([a-z]+)*g", r"(.+.+)+h", r"(\pL+)+i", r"(.*?,){20}j", r"(a?){100}a{100}k",
           r"(ab|a)*l", r"(a+?)+m", r"(.*\s*)*n"]
PROMPTS = {
    "ascii 'a' x1500": "a" * 1500,
    "emoji x1500": "\U0001f600" * 1500,
    "mixed words": ("lorem ipsum dolor sit amet " * 60)[:1500],
    "U+FDFA x1500 (NFKC x18)": "\ufdfa" * 1500,
}


def entries(patterns: list[str], kind: str = "regex") -> list[BlocklistEntry]:
    return [BlocklistEntry(p, kind, None, 0.0) for p in patterns]  # type: ignore[arg-type]


def at_the_limit() -> list[str]:
    """Regex entries adding up to (almost) MAX_REGEX_PROGRAM instructions."""
    chosen: list[str] = []
    total = 0
    n = 0
    while True:
        pattern = rf"[a-z0-9]{{1,500}}q{n}"
        size = compile_entry(pattern, "regex").size
        if total + size > MAX_REGEX_PROGRAM:
            return chosen
        chosen.append(pattern)
        total += size
        n += 1


def timed(fn: Callable[[], object], rounds: int) -> tuple[float, float]:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    lists = {
        "20 hostile regexes": entries([p for p in HOSTILE if _accepted(p)]),
        f"regexes at the {MAX_REGEX_PROGRAM:,}-instruction limit": entries(at_the_limit()),
        "200 word entries": entries([f"word{i} phrase{i}" for i in range(200)], "word"),
    }
    print(f"{'blocklist':<42} {'prompt':<26} {'median ms':>10} {'max ms':>8}")
    for name, stored in lists.items():
        check_blocklist(stored, "warm up")  # compiling is cached per blocklist
        for label, prompt in PROMPTS.items():
            median, worst = timed(functools.partial(check_blocklist, stored, prompt, prompt),
                                  rounds)
            print(f"{name:<42} {label:<26} {median:>10.2f} {worst:>8.2f}")
    print("\nPython's backtracking re, one entry (.+)\\1b, text 'a' * n (what RE2 replaced):")
    backref = re.compile(r"(.+)\1b", re.IGNORECASE)
    for n in (100, 200, 400):
        median, _ = timed(functools.partial(backref.search, "a" * n), 3)
        print(f"  n = {n:<5} {median:>10.1f} ms   (x{n / 100:.0f} length)")


def _accepted(pattern: str) -> bool:
    try:
        compile_entry(pattern, "regex")
    except ValueError:
        return False
    return True


if __name__ == "__main__":
    main()
