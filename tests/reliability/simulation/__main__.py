"""Replay seeds: `python -m tests.reliability.simulation --seed N [--trace]`, or a range
with `--seeds A-B`. Exit status 1 if any seed broke a promise."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections import Counter

from tests.reliability.simulation.workload import run_seed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability.simulation")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--seed", type=int)
    group.add_argument("--seeds", help="a range, e.g. 1-3000")
    parser.add_argument("--trace", action="store_true", help="print the event trace")
    parser.add_argument("--log", action="store_true", help="show the bot's warnings")
    args = parser.parse_args(argv)
    # The engine logs every injected fault; only wanted when digging into one seed.
    logging.basicConfig(level=logging.WARNING if args.log else logging.CRITICAL + 1)
    if args.seed is not None:
        seeds = [args.seed]
    else:
        first, _, last = args.seeds.partition("-")
        seeds = list(range(int(first), int(last or first) + 1))
    failed = 0
    endings: Counter[str] = Counter()
    faults: Counter[str] = Counter()
    began = time.perf_counter()
    for seed in seeds:
        started = time.perf_counter()
        outcome = run_seed(seed)
        if args.trace:
            print("\n".join(outcome.trace))
        print(f"seed {seed}: {'ok' if outcome.ok else 'FAILED'} digest {outcome.digest[:16]} "
              f"jobs {outcome.jobs} faults {sum(outcome.faults.values())} restarts "
              f"{outcome.restarts} virtual {outcome.virtual_seconds:.0f}s real "
              f"{time.perf_counter() - started:.2f}s")
        endings.update(outcome.endings)
        faults.update(outcome.faults)
        if not outcome.ok:
            failed += 1
            print(outcome.report(), file=sys.stderr)
    if len(seeds) > 1:
        print("endings:", dict(sorted(endings.items())))
        print("faults:", dict(sorted(faults.items())))
        print(f"{len(seeds)} seeds, {failed} failed, {time.perf_counter() - began:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
