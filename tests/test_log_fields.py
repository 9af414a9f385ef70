"""No log call names a field the logging module reserves: such a call raises
KeyError, at that log level only (a bulk create answered 500 at INFO)."""

from __future__ import annotations

import ast
import logging
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("shared", "api_service", "prober_service", "writer_service", "pingtrack")
RESERVED = set(vars(logging.LogRecord("x", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
}


def extra_keys(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        for keyword in node.keywords:
            if keyword.arg == "extra" and isinstance(keyword.value, ast.Dict):
                for key in keyword.value.keys:
                    if isinstance(key, ast.Constant) and isinstance(key.value, str):
                        found.append((node.lineno, key.value))
    return found


def test_no_log_call_uses_a_reserved_record_attribute() -> None:
    clashes = []
    checked = 0
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for line, key in extra_keys(ast.parse(path.read_text(), str(path))):
                checked += 1
                if key in RESERVED:
                    clashes.append(f"{path.relative_to(REPO)}:{line}: {key!r}")
    assert checked > 50  # the scan sees the project's log calls
    assert clashes == []


def test_the_scan_finds_a_clash() -> None:
    tree = ast.parse('log.info("x", extra={"created": 1, "fine": 2})')
    assert [key for _, key in extra_keys(tree) if key in RESERVED] == ["created"]
