"""`python -m tests.fuzz [--seconds N] [--target NAME ...]`: run the fuzz targets with atheris (libFuzzer).

Each target runs in its own process (libFuzzer owns the process and exits at the end), one after the
other, for `--seconds` divided among the targets. Its corpus starts from the seeds (tests/vectors and
frames built by the code under test) in `--corpus-dir/<target>`, which later runs keep growing; a failing
input is saved as `--artifacts/<target>-crash-...` (or `-timeout-...`) and the run exits 1. A crash is an
undocumented exception or a broken invariant, a hang is one input running longer than `--input-timeout`
seconds (or the whole process overrunning its budget by a minute), a difference is the EXI C accelerator
and the Python reference disagreeing (`Difference` in the crash report).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
INSTRUMENTED_PACKAGES = ["exi", "secc", "slac"]


@dataclass
class Result:
    target: str
    inputs: int
    seconds: float
    returncode: int
    verdict: str  # ok, crash, hang, difference
    detail: str


def child(name: str, seconds: int, corpus: Path, artifacts: Path, input_timeout: int) -> None:
    """In the fuzzing process: instrument the parsers, then hand control to libFuzzer (never returns)."""
    import atheris

    from tests.fuzz.targets import CANARY, TARGETS

    target = CANARY if name == CANARY.name else TARGETS[name]
    with atheris.instrument_imports(include=INSTRUMENTED_PACKAGES):
        for module in target.modules:
            __import__(module)
    argv = [sys.argv[0], f"-max_total_time={seconds}", f"-timeout={input_timeout}", "-rss_limit_mb=2048",
            f"-artifact_prefix={artifacts}/{name}-", "-print_final_stats=1", str(corpus)]
    atheris.Setup(argv, target.run)
    atheris.Fuzz()


def write_seeds(name: str, corpus: Path) -> int:
    from tests.fuzz.targets import CANARY, TARGETS

    corpus.mkdir(parents=True, exist_ok=True)
    seeds = (CANARY if name == CANARY.name else TARGETS[name]).seeds()
    for seed in seeds:
        (corpus / f"seed-{hashlib.sha1(seed).hexdigest()}").write_bytes(seed)
    return len(seeds)


def run_target(name: str, seconds: int, corpus_root: Path, artifacts: Path, input_timeout: int) -> Result:
    corpus = corpus_root / name
    write_seeds(name, corpus)
    artifacts.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "tests.fuzz", "--child", name, "--seconds", str(seconds),
           "--corpus-dir", str(corpus_root), "--artifacts", str(artifacts), "--input-timeout", str(input_timeout)]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=seconds + 60)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        return Result(name, _inputs(stderr), time.monotonic() - started, -1, "hang",
                      f"the fuzzer overran its {seconds} s budget by a minute")
    elapsed = time.monotonic() - started
    stderr = proc.stderr
    inputs = _inputs(stderr)
    if proc.returncode == 0:
        return Result(name, inputs, elapsed, 0, "ok", "")
    if "Difference" in stderr:
        verdict = "difference"
    elif "ALARM: working on the last Unit" in stderr or "-timeout-" in stderr:
        verdict = "hang"
    else:
        verdict = "crash"
    artifact = re.findall(r"Test unit written to (\S+)", stderr)
    report = _python_report(stderr)
    detail = (f"input saved as {artifact[-1]}\n" if artifact else "") + report
    return Result(name, inputs, elapsed, proc.returncode, verdict, detail)


def _inputs(stderr: str) -> int:
    found = re.findall(r"stat::number_of_executed_units:\s*(\d+)", stderr)
    if found:
        return int(found[-1])
    done = re.findall(r"Done (\d+) runs", stderr) or re.findall(r"#(\d+)\s", stderr)
    return int(done[-1]) if done else 0


def _python_report(stderr: str) -> str:
    """The uncaught Python exception atheris printed (the traceback), or the tail of the output."""
    start = stderr.find("=== Uncaught Python exception: ===")
    text = stderr[start:] if start >= 0 else stderr[-3000:]
    return "\n".join(text.splitlines()[:40])


def main(argv: list[str] | None = None) -> int:
    from tests.fuzz.targets import CANARY, TARGETS

    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20, help="total budget, divided among the targets")
    parser.add_argument("--target", action="append", choices=[*sorted(TARGETS), CANARY.name],
                        help="run only this one (repeatable)")
    parser.add_argument("--corpus-dir", type=Path, default=REPO / "build" / "fuzz" / "corpus")
    parser.add_argument("--artifacts", type=Path, default=REPO / "build" / "fuzz" / "artifacts")
    parser.add_argument("--input-timeout", type=int, default=10, help="seconds one input may take (a hang)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.seconds, args.corpus_dir / args.child, args.artifacts, args.input_timeout)
        return 0  # not reached: libFuzzer exits the process
    try:
        import atheris  # noqa: F401
    except ImportError:
        print("tests.fuzz: PyPI atheris is not installed (.venv/bin/pip install atheris)", file=sys.stderr)
        return 2
    names = args.target or list(TARGETS)
    per_target = max(1, args.seconds // len(names))
    results = []
    for name in names:
        result = run_target(name, per_target, args.corpus_dir, args.artifacts, args.input_timeout)
        results.append(result)
        print(f"fuzz {name}: {result.inputs} inputs in {result.seconds:.0f} s: {result.verdict}", flush=True)
        if result.detail:
            print(result.detail, flush=True)
    total = sum(r.inputs for r in results)
    counts = {v: sum(r.verdict == v for r in results) for v in ("crash", "hang", "difference")}
    print(f"fuzz: {total} inputs, {counts['crash']} crashes, {counts['hang']} hangs, "
          f"{counts['difference']} C/Python differences")
    return 0 if all(r.verdict == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
