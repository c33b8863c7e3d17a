"""Coverage-guided fuzzing (PyPI atheris, libFuzzer) of the parsers that read what the link sends.

    python -m tests.fuzz --seconds 20          # the CI budget: every target, fails on crash, hang, C/Python diff
    make fuzz FUZZ_SECONDS=600                 # a longer local run
    python -m tests.fuzz --target v2gtp --seconds 60

Targets (tests/fuzz/targets.py): `exi` (the EXI decoder, C accelerator against the Python reference: the same
result or the same error class), `v2gtp` (stream reassembly), `sdp` (request/response parsing and the server
core) and `slac` (HomePlug frame and SLAC message parsing). Seeds come from tests/vectors/*.jsonl and from
frames built by the code under test; every target also runs over its seeds as a plain pytest test.
"""
