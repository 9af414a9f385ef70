# pingtrack on one Debian 12 machine. Run as root (or with sudo): the set-up
# installs Debian packages and starts PostgreSQL and RabbitMQ when they are
# missing, and the tests need raw ICMP sockets and network namespaces.
#
#   make up      install what is missing, migrate, run api + prober + writer (Ctrl-C stops)
#   make test    install what is missing, run the whole test suite
#   make lint    ruff check, ruff format --check, mypy --strict on every package
#   make bench   run every benchmark script under bench/ (each under the egress guard)
#   make lock    re-pin requirements*.txt from pyproject.toml, with hashes (UPGRADE=1: newest)
#   make docker-up / docker-down   the same stack in containers (see deploy/README.md)

SHELL := /bin/bash
BIN := .venv/bin
PYTEST_ARGS ?=
PACKAGES := shared api_service prober_service writer_service pingtrack
COMPOSE ?= docker compose

.DEFAULT_GOAL := help
.PHONY: help setup up test lint bench lock docker-up docker-down

help:
	@sed -n 's/^#   //p' $(MAKEFILE_LIST)

setup:
	@bash deploy/setup.sh

up: setup
	exec $(BIN)/pingtrack up

# Tests also need Chromium and the browser test's node packages.
test:
	@bash deploy/setup.sh --with-browser
	$(BIN)/pytest $(PYTEST_ARGS)

# Needs only the venv, not the services. Runs all three checks, then fails if any did.
lint:
	@bash deploy/setup.sh --python-only
	@failed=0; \
	for check in "ruff check ." "ruff format --check ." "mypy $(PACKAGES)"; do \
		echo "==> $$check"; $(BIN)/$$check || failed=1; \
	done; \
	exit $$failed

bench: setup
	@set -e; for script in bench/*.py; do \
		[ -e "$$script" ] || continue; \
		case "$$(basename "$$script")" in _*) continue ;; esac; \
		echo "==> $$script"; $(BIN)/python "$$script"; \
	done

# The locks, exact versions with hashes: requirements-test.txt (the project and its
# test extras, for .venv/) and requirements.txt (the services alone, for the image),
# each with setuptools, which builds the editable install. requirements.txt is
# constrained by requirements-test.txt, so both pin the same versions. pip-tools
# runs from a throwaway venv (Debian: needs python3-venv); without UPGRADE=1 the
# current pins stay where pyproject.toml still allows them.
LOCK_PYTHON ?= python3.11
PIP_TOOLS ?= pip-tools==7.6.2
COMPILE := pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
	--no-emit-index-url --no-emit-find-links --build-deps-for editable

lock:
	@set -e; tools=$$(mktemp -d); trap 'rm -rf "$$tools"' EXIT; \
	$(LOCK_PYTHON) -m venv "$$tools"; \
	"$$tools/bin/pip" install -q --disable-pip-version-check '$(PIP_TOOLS)'; \
	export PATH="$$tools/bin:$$PATH" CUSTOM_COMPILE_COMMAND='make lock'; \
	$(COMPILE) $(if $(UPGRADE),--upgrade) --extra test -o requirements-test.txt pyproject.toml; \
	$(COMPILE) --upgrade -c requirements-test.txt -o requirements.txt pyproject.toml

docker-up:
	$(COMPOSE) up --build --detach
	$(COMPOSE) ps

docker-down:
	$(COMPOSE) down
