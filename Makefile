# pingtrack on one Debian 12 machine. Run as root (or with sudo): the set-up
# installs Debian packages and starts PostgreSQL and RabbitMQ when they are
# missing, and the tests need raw ICMP sockets and network namespaces.
#
#   make up      install what is missing, migrate, run api + prober + writer (Ctrl-C stops)
#   make test    install what is missing, run the whole test suite
#   make lint    ruff check, ruff format --check, mypy --strict on shared/
#   make bench   run every benchmark script under bench/ (each under the egress guard)
#   make docker-up / docker-down   the same stack in containers (see deploy/README.md)

SHELL := /bin/bash
BIN := .venv/bin
PYTEST_ARGS ?=
COMPOSE ?= docker compose

.DEFAULT_GOAL := help
.PHONY: help setup up test lint bench docker-up docker-down

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
	for check in "ruff check ." "ruff format --check ." "mypy shared/"; do \
		echo "==> $$check"; $(BIN)/$$check || failed=1; \
	done; \
	exit $$failed

bench: setup
	@set -e; for script in bench/*.py; do \
		[ -e "$$script" ] || continue; \
		case "$$(basename "$$script")" in _*) continue ;; esac; \
		echo "==> $$script"; $(BIN)/python "$$script"; \
	done

docker-up:
	$(COMPOSE) up --build --detach
	$(COMPOSE) ps

docker-down:
	$(COMPOSE) down
