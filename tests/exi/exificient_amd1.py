"""EXIficient with the Amendment 1 XSDs: an independent encoder for the AC_DER_IEC / AC_DER_SAE messages.

Josev's JSON layer has no Amendment 1 binding, but its EXICodec.jar carries all of EXIficient (GrammarFactory,
Xerces), so `ExificientAmd1.java` (next to this file) builds the grammars from the XSDs themselves and encodes
XML with the -20 profile's options. It is compiled into .peers/exificient-amd1/ on first use (javac).

The XSDs are ISO's and are not in the repository: they are read from $SECC_SCHEMAS, which `make test` sets from
its SCHEMAS= argument (as `make grammars` uses it); without it the test is skipped with that reason. They are
copied into one folder per run because the Amendment 1 files import V2G_CI_AC.xsd and V2G_CI_CommonTypes.xsd
from their own folder.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

from tests.peers import josev

REPO = Path(__file__).resolve().parents[2]
SOURCE = Path(__file__).with_name("ExificientAmd1.java")
BUILD = REPO / ".peers" / "exificient-amd1"
JAR = josev.VENV / "lib" / "python3.11" / "site-packages" / "iso15118" / "shared" / "EXICodec.jar"
XSD = {"ac-der-iec": "V2G_CI_AC_DER_IEC.xsd", "ac-der-sae": "V2G_CI_AC_DER_SAE.xsd"}


def schemas_dir() -> Path | None:
    folder = os.environ.get("SECC_SCHEMAS")
    return Path(folder).resolve() if folder else None


def available() -> tuple[bool, str]:
    if shutil.which("java") is None or shutil.which("javac") is None:
        return False, "java/javac not found (apt-get install openjdk-17-jdk-headless)"
    if not JAR.exists():
        return False, "Josev's EXICodec.jar (EXIficient) not installed: run `make peers`"
    folder = schemas_dir()
    if folder is None:
        return False, "no XSDs: run `make test SCHEMAS=DIR` (or set SECC_SCHEMAS)"
    if not (folder / "iso15118-20-amd1" / XSD["ac-der-iec"]).exists():
        return False, f"the Amendment 1 XSDs are not in {folder} (set SECC_SCHEMAS)"
    return True, "ok"


def _compiled() -> Path:
    stamp = BUILD / "ExificientAmd1.class"
    if not stamp.exists() or stamp.stat().st_mtime < SOURCE.stat().st_mtime:
        BUILD.mkdir(parents=True, exist_ok=True)
        subprocess.run(["javac", "-cp", str(JAR), "-d", str(BUILD), str(SOURCE)], check=True, timeout=300,
                       capture_output=True)
    return BUILD


def encode_all(items: list[tuple[str, str]], workdir: Path) -> list[str]:
    """(schema set, XML) -> EXIficient's bytes in hex, or "ERR <why>", in one JVM."""
    folder = schemas_dir()
    assert folder is not None, "available() says why there are no XSDs"
    for sub in ("iso15118-20", "iso15118-20-amd1"):
        for xsd in (folder / sub).glob("*.xsd"):
            shutil.copy(xsd, workdir / xsd.name)
    lines = [f"{workdir / XSD[schema]}\t{base64.b64encode(xml.encode()).decode()}" for schema, xml in items]
    out = subprocess.run(["java", "-Xmx512m", "-cp", f"{JAR}:{_compiled()}", "ExificientAmd1"],
                         input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=600, check=True)
    answers = out.stdout.splitlines()
    if len(answers) != len(items):
        raise RuntimeError(f"EXIficient answered {len(answers)} of {len(items)}: {out.stderr[-500:]}")
    return answers
