"""`python -m exi.compiler --schemas DIR --out exi/generated [--check]` (what `make grammars` runs)."""

from __future__ import annotations

import argparse
import filecmp
import os
import sys
import tempfile

from .emit import HEADER, Emitter
from .model import ModelBuilder, load_schema
from .sets import NAMESPACE_MODULES, SCHEMA_SETS


def generate(schemas: str, out: str) -> list[str]:
    models = []
    for sset in SCHEMA_SETS:
        schema = load_schema(schemas, sset.xsd)
        models.append((sset, ModelBuilder(schema).build()))
    em = Emitter(models)
    em.plan()
    em.annotate()
    os.makedirs(out, exist_ok=True)
    written = []
    used_modules = {c.module for c in em.classes.values()} | {e.module for e in em.enums.values()}
    for mod, _prefix in NAMESPACE_MODULES.values():
        if mod in used_modules:
            written.append(write(out, f"{mod}.py", em.class_module(mod)))
    for sset, model in models:
        written.append(write(out, f"set_{sset.name.replace('-', '_')}.py", em.set_module(sset, model)))
    index = [HEADER, '"""Generated EXI grammars and message classes; see exi/compiler/sets.py."""\n',
             "# schema set name -> (table module, namespace, aliases)", "SCHEMA_SETS = {"]
    for sset in SCHEMA_SETS:
        index.append(f"    {sset.name!r}: ({'set_' + sset.name.replace('-', '_')!r}, {sset.namespace!r}, "
                     f"{sset.aliases!r}),")
    index.append("}\n")
    index.append("# namespace -> (module, XML prefix)")
    index.append("NAMESPACES = {")
    for ns, (mod, prefix) in NAMESPACE_MODULES.items():
        index.append(f"    {ns!r}: ({mod!r}, {prefix!r}),")
    index.append("}")
    written.append(write(out, "__init__.py", "\n".join(index) + "\n"))
    return written


def write(out: str, name: str, text: str) -> str:
    path = os.path.join(out, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return name


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m exi.compiler", description=__doc__)
    ap.add_argument("--schemas", required=True, help="folder with the XSDs (iso15118-20/, iso15118-20-amd1/)")
    ap.add_argument("--out", required=True, help="output package folder (exi/generated)")
    ap.add_argument("--check", action="store_true", help="compare with --out instead of writing")
    args = ap.parse_args()
    if not os.path.isdir(args.schemas):
        print(f"exi.compiler: schemas folder {args.schemas!r} not found", file=sys.stderr)
        return 2
    if not args.check:
        names = generate(args.schemas, args.out)
        print(f"exi.compiler: wrote {len(names)} modules to {args.out}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        names = generate(args.schemas, tmp)
        stale = [n for n in names if not os.path.exists(os.path.join(args.out, n))
                 or not filecmp.cmp(os.path.join(tmp, n), os.path.join(args.out, n), shallow=False)]
        extra = sorted(set(n for n in os.listdir(args.out) if n.endswith(".py")) - set(names))
    if stale or extra:
        print(f"exi.compiler: {args.out} is not what the XSDs give: stale {stale}, extra {extra}; "
              "run `make grammars`", file=sys.stderr)
        return 1
    print(f"exi.compiler: {args.out} is current ({len(names)} modules)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
