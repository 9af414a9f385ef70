"""The dashboard page and its files: served on the browser-safe port, local only,
and the admin calls it makes work with the token and are refused without."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import httpx
import pytest

from api_service.main import run
from api_service.web import STATIC_DIR
from shared.settings import Settings
from tests.api_client import ADMIN, api_client, unique_address
from tests.stack import free_port

ROOT = Path(__file__).resolve().parents[1]
IMPORT = re.compile(r"""^\s*(?:import|export)\b[^'"]*?from\s*["']([^"']+)["']""", re.M)


class _Refs(HTMLParser):
    """Every URL the page asks the browser to load."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value is not None and (
                name == "src" or (name == "href" and tag in ("link", "script"))
            ):
                self.urls.append(value)


def page_refs() -> list[str]:
    parser = _Refs()
    parser.feed((STATIC_DIR / "index.html").read_text())
    return parser.urls


def module_graph(entry: str) -> set[str]:
    """URL paths of every ES module reachable from `entry`, following relative imports."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        url = todo.pop()
        if url in seen:
            continue
        seen.add(url)
        source = (STATIC_DIR / url.removeprefix("/static/")).read_text()
        for spec in IMPORT.findall(source):
            assert spec.startswith("./"), f"{url} imports {spec!r}: only local modules"
            todo.append(url.rsplit("/", 1)[0] + "/" + spec.removeprefix("./"))
    return seen


def test_the_page_references_only_files_of_its_own_origin() -> None:
    refs = page_refs()
    assert "/static/app.js" in refs
    assert "/static/vendor/uplot/uPlot.iife.min.js" in refs
    assert all(url.startswith("/static/") for url in refs), refs
    modules = module_graph("/static/app.js")
    assert {"/static/api.js", "/static/chart.js", "/static/timeseries.js"} <= modules
    for path in STATIC_DIR.glob("*.*"):
        if path.suffix in (".js", ".css", ".html"):
            assert not re.search(r"https?://|//cdn", path.read_text()), path.name


async def test_page_and_static_files_are_served_on_the_browser_safe_port(
    settings: Settings,
) -> None:
    web_port = free_port()
    update = {"api_host": "127.0.0.1", "api_port": free_port(), "web_port": web_port}
    stop = asyncio.Event()
    served = asyncio.create_task(run(settings.model_copy(update=update), stop))
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{web_port}") as client:
            for _ in range(200):
                try:
                    page = await client.get("/")
                    break
                except httpx.ConnectError:
                    await asyncio.sleep(0.05)
            assert page.status_code == 200
            assert page.headers["content-type"].startswith("text/html")
            assert "default-src 'self'" in page.headers["content-security-policy"]
            assert '<script type="module" src="/static/app.js">' in page.text
            expected = {"javascript": [], "text/css": [], "image/svg+xml": []}
            for url in [*page_refs(), *module_graph("/static/app.js")]:
                response = await client.get(url)
                assert response.status_code == 200, url
                kind = next(k for k in expected if k in response.headers["content-type"])
                expected[kind].append(url)
            assert all(expected.values()), expected
            licence = await client.get("/static/vendor/uplot/LICENSE")
            assert licence.status_code == 200 and "MIT" in licence.text
            assert (await client.get("/static/nothing.js")).status_code == 404
            # The API itself is unchanged beside the page.
            assert (await client.get("/targets")).json()["items"] is not None
    finally:
        stop.set()
        await asyncio.wait_for(served, 10)


async def test_the_page_is_not_part_of_the_api_schema(settings: Settings) -> None:
    async with api_client(settings) as client:
        paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/" not in paths
    assert not any(p.startswith("/static") for p in paths)
    assert "/targets/{target_id}/series" in paths


def page_admin_actions() -> list[str]:
    source = (STATIC_DIR / "api.js").read_text()
    found = re.search(r"ADMIN_ACTIONS = \[([^\]]*)\]", source)
    assert found is not None
    return re.findall(r'"(\w+)"', found.group(1))


async def test_admin_actions_of_the_page_need_the_token(settings: Settings) -> None:
    actions = page_admin_actions()
    assert actions == ["pause", "resume", "stop"]
    # What the page's fetch sends: same origin, Accept JSON, Bearer from the token field.
    page = {"Accept": "application/json", "Origin": "http://api"}
    async with api_client(settings) as client:
        created = await client.post("/targets", json={"address": unique_address()}, headers=ADMIN)
        target_id = created.json()["id"]
        states = []
        for action in actions:
            url = f"/targets/{target_id}/{action}"
            anonymous = await client.post(url, headers=page)
            assert anonymous.status_code == 401
            assert "Bearer" in anonymous.headers["www-authenticate"]
            wrong = await client.post(url, headers={**page, "Authorization": "Bearer nope"})
            assert wrong.status_code == 403
            done = await client.post(url, headers={**page, **ADMIN})
            assert done.status_code == 200, done.text
            states.append(done.json()["state"])
        # Reads stay open without a token (no read token configured).
        listed = await client.get("/targets", headers=page)
    assert states == ["paused", "active", "stopped"]
    assert target_id in [t["id"] for t in listed.json()["items"]]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_the_pure_functions_of_the_page_pass_their_node_unit_tests() -> None:
    done = subprocess.run(
        ["node", "--test", "tests/browser/units.test.mjs"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert re.search(r"^# pass [1-9]\d*$", done.stdout, re.M)
    assert re.search(r"^# fail 0$", done.stdout, re.M)
