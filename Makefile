# RadTrust: `make demo` and `make test` are the two set-up commands; both build .venv first.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_WORKERS ?= 2
SYSTEM_PACKAGES := libharfbuzz-subset0 poppler-utils orthanc orthanc-dicomweb
export MLFLOW_DISABLE_TELEMETRY := true

.PHONY: install system-packages demo demo-pacs test serve worker beat clean

install: $(STAMP)

# Debian packages WeasyPrint and the PDF tests need, Orthanc with its DICOMweb plugin for the PACS tests, and the Chromium the browser tests
# drive (Playwright's own browser download needs a CDN); installed only when missing.
system-packages:
	@missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "Installing system packages: $$missing"; \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml agent/pyproject.toml
	$(MAKE) system-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e './agent[saliency,pacs]'
	$(BIN)/pip install -q -e '.[dev,demo]'
	touch $(STAMP)

demo: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo

# The demo's validation again, read from a throw-away Orthanc over DICOMweb (after make demo): docs/operating.md, "Datasets in a PACS".
demo-pacs: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py demo_pacs

# The whole suite: everything but the integration tests two processes wide (pytest-xdist),
# then the integration tests one at a time (each starts real workers, agents and servers, which
# a loaded two-core machine should not run two sets of at once). The quick loop while developing:
#   .venv/bin/pytest -n 2 -m "not slow and not integration and not browser"
test: install
	$(BIN)/pytest -n $(TEST_WORKERS) -m "not integration"
	$(BIN)/pytest -m integration

serve: install
	$(BIN)/python manage.py runserver 127.0.0.1:8000

worker: install
	$(BIN)/celery -A radtrust worker -Q default,gpu -l info

beat: install
	$(BIN)/celery -A radtrust beat -l info

clean:
	rm -rf var .pytest_cache
