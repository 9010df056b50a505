# Everything runs from a fresh clone: `make demo` and `make test` set up what they need.
# Caches (Go modules and build, kube-apiserver/etcd/kubectl/helm, kube-score) live in ~/.cache/rds-export-operator.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/dev:$(CURDIR)/operator

.PHONY: demo demo-schedule test unit lint binaries bench-control-plane bench-scale bench-backfill clean

$(VENV)/.installed: requirements-dev.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-dev.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

binaries:
	@bash dev/build-control-plane.sh
	@bash dev/build-kube-score.sh

demo: $(VENV)/.installed binaries
	$(PY) -m localdev.demo

demo-schedule: $(VENV)/.installed binaries
	$(PY) -m localdev.demo_schedule

test: $(VENV)/.installed binaries
	$(PY) -m pytest

# Seconds, no control plane: tests/unit and tests/static (tests/cluster and tests/e2e are marked `cluster`).
unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit tests/static -m "not cluster"

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache  # the layers in .importlinter

bench-control-plane: $(VENV)/.installed binaries
	$(PY) bench/control_plane_start.py

bench-scale: $(VENV)/.installed binaries  # issue 27's peaks and their targets (about 20 minutes)
	$(PY) bench/scale.py --scenario all

bench-backfill: $(VENV)/.installed binaries  # the scaled-down backfill of bench/README.md (about 12 minutes)
	$(PY) bench/scale.py --scenario backfill --exports 40 --durations 20,60 --interval 3

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
