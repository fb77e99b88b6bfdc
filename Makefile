# Quick start:  make render   (renders configs/portrait.yaml into out/portrait)
#               make test     (runs the test suite)
# Both create .venv with Python 3.11 and install synthgen with its dependencies on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
STAMP  := $(VENV)/.synthgen-installed

.PHONY: install render smoke test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "synthgen needs Python 3.11 (bpy 4.5 wheels); set PYTHON=/path/to/python3.11"'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

render: $(STAMP)
	$(VENV)/bin/synthgen render --config configs/portrait.yaml

smoke: $(STAMP)
	$(VENV)/bin/synthgen render --config configs/smoke.yaml

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests

bench: $(STAMP)
	$(VENV)/bin/python benchmarks/render_throughput.py

clean:
	rm -rf out .pytest_cache

# Cluster launchers (configs/cluster/, docs/cluster.md). slurm-up/down: a single-node SLURM cluster
# on this machine (root; installs slurm-wlm and munge with apt-get when missing).
# slurm-test: submits configs/cluster/slurm_render.sbatch to it for real (started and stopped by the
# tests when not running). cluster-test: that, `ray job submit` on a local head, the RayJob checks.
.PHONY: slurm-up slurm-down slurm-test cluster-test

slurm-up:
	bash configs/cluster/slurm_local.sh up

slurm-down:
	bash configs/cluster/slurm_local.sh down

slurm-test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests/test_cluster.py -k slurm

cluster-test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests/test_cluster.py
