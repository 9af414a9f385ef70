"""The API answers exactly as recorded in tests/api_answers.json (tests/api_answers.py).

The file is the public contract, the OpenAPI document included: a refactoring
leaves it alone. When an answer changes on purpose, the run writes what it
got beside pytest's temporary files and says where: review the difference and
copy that file over tests/api_answers.json.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.api_answers import record

RECORDED = Path(__file__).with_name("api_answers.json")


@pytest.fixture
def database_url(own_database_url: str) -> str:
    """A database of its own: target ids are part of the answers."""
    return own_database_url


def _lines(answers: Sequence[object]) -> list[str]:
    text = json.dumps(answers, indent=1, ensure_ascii=False)
    return text.splitlines(keepends=True)


async def test_the_api_answers_as_recorded(settings: Settings, tmp_path: Path) -> None:
    got = await record(settings)
    recorded = json.loads(RECORDED.read_text()) if RECORDED.exists() else []
    if got == recorded:
        return
    actual = tmp_path / RECORDED.name
    actual.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    diff = "".join(
        difflib.unified_diff(_lines(recorded), _lines(got), str(RECORDED), str(actual), n=2)
    )
    pytest.fail(f"answers changed (all of them in {actual}):\n{diff[:20_000]}")
