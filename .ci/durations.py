"""Write tests/durations.json (seconds per xdist group, for ``tests/conftest.py`` to start the
longest groups first) from the output of a parallel run with ``--durations=0``:

    python3 -m pytest -n 3 --dist loadgroup --durations=0 -m "not alone" | tee run.log
    python3 .ci/durations.py run.log
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from pathlib import Path

LINE = re.compile(r"^\s*([\d.]+)s (?:setup|call|teardown)\s+(\S+)$")
OUT = Path(__file__).resolve().parent.parent / "tests" / "durations.json"


def main(log: str) -> int:
    seconds: Counter[str] = Counter()
    for line in Path(log).read_text().splitlines():
        match = LINE.match(line)
        if match:
            nodeid = match.group(2)
            group = nodeid.rsplit("@", 1)[1] if "@" in nodeid else nodeid.split("::")[0]
            seconds[group] += float(match.group(1))
    if not seconds:
        print(f"no durations in {log} (run pytest with --durations=0)", file=sys.stderr)
        return 1
    rounded = {group: round(total, 1) for group, total in sorted(seconds.items())}
    OUT.write_text(json.dumps(rounded, indent=0) + "\n")
    print(f"{len(rounded)} groups, {sum(rounded.values()):.0f}s in all -> {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
