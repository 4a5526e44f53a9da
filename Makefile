# Two commands do all set-up on a fresh Debian machine (root, Python 3.11):
#   make demo   builds the bundled demo dataset offline
#   make test   runs the test suite
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
DEB_PACKAGES := ffmpeg libsndfile1 espeak-ng sox

.PHONY: setup demo test test-all lint bench clean system-deps audit

setup: $(STAMP)

system-deps:
	@missing=""; \
	for bin in ffmpeg ffprobe espeak-ng sox; do command -v $$bin >/dev/null 2>&1 || missing="yes"; done; \
	if [ -n "$$missing" ]; then \
	  echo ">> installing Debian packages: $(DEB_PACKAGES)"; \
	  if [ "$$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEB_PACKAGES) >/dev/null; \
	fi

$(STAMP): pyproject.toml | system-deps
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check torch==2.9.1 'torchaudio==2.9.*'
	$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/voicetone demo

test: setup
	$(VENV)/bin/python -m pytest -m "not slow" -q

test-all: setup
	$(VENV)/bin/python -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

# Audit the installed (locked) dependencies against the PyPI advisory database, with pip-audit in
# its own venv. --strict fails when a package could not be checked (e.g. no access to PyPI's JSON
# API), so "no known vulnerabilities" is never reported for an audit that did not happen.
audit: setup
	@test -x .venv-audit/bin/pip-audit || ($(PYTHON) -m venv .venv-audit && .venv-audit/bin/pip install -q pip-audit)
	$(VENV)/bin/pip freeze --exclude-editable > .venv-audit/requirements.txt
	.venv-audit/bin/pip-audit --strict --no-deps --disable-pip --progress-spinner off -r .venv-audit/requirements.txt

clean:
	rm -rf out .pytest_cache .ruff_cache
