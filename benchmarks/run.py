"""`make bench`: every benchmark in one run. Prints ratios measured side by side."""

from __future__ import annotations

import sys

from benchmarks import operator_speed


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    operator_speed.main(argv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
