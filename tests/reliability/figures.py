"""Print the rows tests/reliability/scale.record wrote as a Markdown table:
`python -m tests.reliability.figures figures.jsonl`."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def table(lines: list[str]) -> str:
    rows = [json.loads(line) for line in lines if line.strip()]
    out = ["| Suite | What was done | Times | Lost | Reproduce |", "|---|---|---:|---:|---|"]
    for r in rows:
        what = r["what"] + (f" ({r['detail']})" if r.get("detail") else "")
        out.append(f"| {r['suite']} | {what} | {r['times']} | {r['lost']} | "
                   f"`{r['command']}` |")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python -m tests.reliability.figures FIGURES.jsonl", file=sys.stderr)
        return 2
    print(table(Path(argv[1]).read_text(encoding="utf-8").splitlines()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
