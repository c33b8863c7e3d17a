"""`make bench`: run every benchmark section and print medians and ratios against the peers.

Each section is a module `tests.bench.bench_<area>` with `main() -> None` that prints its own table.
Pass section names to run only those: `python -m tests.bench exi slac`.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import traceback

import tests.bench as pkg


def main(argv: list[str]) -> int:
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(pkg.__path__) if m.name.startswith("bench_"))
    wanted = argv or names
    status = 0
    for name in wanted:
        if name not in names:
            print(f"bench: no section {name!r} (have: {', '.join(names)})", file=sys.stderr)
            return 2
        print(f"\n=== bench: {name} ===", flush=True)
        try:
            importlib.import_module(f"tests.bench.bench_{name}").main()
        except Exception:  # one broken section must not hide the others' numbers
            traceback.print_exc()
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
