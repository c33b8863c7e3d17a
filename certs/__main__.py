"""`python -m certs [--out DIR]`: write the ISO 15118-20 test PKI (see certs/README.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from certs.pki import SECC_CHAIN, SECC_LEAF, V2G_ROOT, PkiOptions, generate

DEFAULT_OUT = Path("build/pki")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m certs", description=__doc__)
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})"
    )
    parser.add_argument("--organization", default=PkiOptions().organization, help="O= of every certificate")
    parser.add_argument("--country", default=PkiOptions().country, help="C= of every certificate")
    parser.add_argument("--secc-cn", default=PkiOptions().secc_common_name, help="CN= of the SECC leaf")
    args = parser.parse_args(argv)
    options = PkiOptions(organization=args.organization, country=args.country, secc_common_name=args.secc_cn)
    try:
        written = generate(args.out, options)
    except OSError as exc:
        print(f"certs: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    print(f"certs: wrote {len(written)} files to {args.out}")
    print(f"  TLS server chain: {args.out}/certs/{SECC_CHAIN}.pem  key: {args.out}/private/{SECC_LEAF}.key")
    print(f"  EV trust anchor:  {args.out}/certs/{V2G_ROOT}.pem")
    return 0


if __name__ == "__main__":
    sys.exit(main())
