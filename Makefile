# One entry point for set-up, tests, benchmarks and code generation.
# Everything installs into .venv (project) and .peers/ (independent peers), so a fresh clone needs only python3.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
SCHEMAS ?= ../shared/schemas

.PHONY: all install run run-netns test lint typecheck bench grammars grammars-check peers certs clean

all: test

$(STAMP): pyproject.toml setup.py exi/_speedups.c
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' --config-settings editable_mode=compat
	touch $(STAMP)

install: $(STAMP)

# The daemon on the simulated board while the EV emulator does a full DC_BPT session (charge, then discharge
# on the setpoint schedule) over loopback: live status line, trace in build/traces (capturing needs root).
run: $(STAMP)
	$(VENV)/bin/secc demo --once --scenario bpt-discharge

# The full raw-socket path as root: SLAC (open-plc-utils pev over the project's fake modem) and SDP on a veth
# pair between network namespaces, `secc run --config` and the EV emulator as separate processes.
run-netns: $(STAMP)
	$(PY) -m tests.secc.test_daemon_netns

# The ISO 15118-20 test PKI (secp521r1 chains, keys 0600); see certs/README.md.
CERTS_OUT ?= build/pki
certs: $(STAMP)
	$(PY) -m certs --out $(CERTS_OUT)

# Independent peers for the interop/differential tests (Josev's EXIficient codec in its own venv).
peers: $(STAMP)
	$(PY) -m tests.peers.setup

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy exi secc hal slac certs hil

# `soak` tests (the 8 x 200 fleet runs, the attacks on the wire) belong to `make soak`, not to `make test`.
test: $(STAMP) peers lint typecheck
	SECC_SCHEMAS="$(SCHEMAS)" $(PY) -m pytest -q -m "not soak" --durations=15 $(PYTEST_ARGS)

bench: $(STAMP) peers
	$(PY) -m tests.bench $(SECTIONS)

# Coverage-guided fuzzing (PyPI atheris) of the EXI decoder (C against Python), V2GTP, SDP and SLAC parsers,
# FUZZ_SECONDS in all, divided among the targets; fails on a crash, a hang or a C/Python difference.
# CI runs the default 20 s budget; failing inputs are saved in build/fuzz/artifacts.
FUZZ_SECONDS ?= 20
.PHONY: fuzz soak
fuzz: $(STAMP)
	$(PY) -m tests.fuzz --seconds $(FUZZ_SECONDS)

# The long runs: the multi-connector demo (8 connectors, SOAK_SESSIONS sessions, one JSON summary, exit 1 on any
# failed session), then SOAK_KILLS rounds of kill -9 at a random moment of a session + restart + a full session
# (tests/scale/crash_loop.py, some 20 minutes for 100), then the hostile-wire test against Josev (root, peers).
SOAK_SESSIONS ?= 1000
SOAK_KILLS ?= 100
soak: $(STAMP)
	$(VENV)/bin/secc demo --connectors 8 --sessions $(SOAK_SESSIONS) --json
	$(PY) -m tests.scale.crash_loop --kills $(SOAK_KILLS) --seed 15
	$(PY) -m pytest -q -m soak tests/scale

# Run by .ci/run (about a minute): exi/_speedups.c cross-built for aarch64 and armhf (Debian cross gcc) against
# Debian bookworm's own python3.11:arm64/armhf (apt-get download + dpkg -x into build/arm, nothing installed),
# then under qemu-user on that python: all 415 EXI vectors through C and Python (tests/arm/run_vectors.py) and
# pytest tests/exi/test_vectors.py + test_everest_ac_der.py. The script's header says what it does not cover.
.PHONY: arm
arm: $(STAMP)
	sh tests/arm/cross_build.sh build/arm

# Regenerate the EXI grammar tables and message classes from the ISO XSDs (never committed).
grammars: $(STAMP)
	$(PY) -m exi.compiler --schemas $(SCHEMAS) --out exi/generated

# Fails when the committed generated code differs from what the XSDs give.
grammars-check: $(STAMP)
	$(PY) -m exi.compiler --schemas $(SCHEMAS) --out exi/generated --check

clean:
	rm -rf $(VENV) .peers build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
