"""``GET /`` and its assets, through the real app in this process (no lifespan needed: the page
is static)."""

from __future__ import annotations

import asyncio
import re

import httpx
import pytest

from service.api.routers.ui import ASSETS, STATIC_DIR
from service.app import create_app
from service.settings import Settings


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("LIQUID_"):
            monkeypatch.delenv(key)


def get(path: str, **settings: object) -> httpx.Response:
    app = create_app(Settings(**settings))  # type: ignore[arg-type]

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)

    return asyncio.run(go())


def test_the_page_is_served_with_its_assets() -> None:
    page = get("/")
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "connect-src 'self' ws: wss:" in csp
    html = page.text
    assert '<script src="/static/app.js" defer></script>' in html
    assert '<link rel="stylesheet" href="/static/style.css">' in html
    for element in ("stream", "token", "status", "count-predictions", "latest-class"):
        assert f'id="{element}"' in html
    for name, media in ASSETS.items():
        resp = get(f"/static/{name}")
        assert resp.status_code == 200, name
        assert resp.headers["content-type"] == media
        assert resp.content == (STATIC_DIR / name).read_bytes()


def test_the_page_needs_no_key_and_nothing_from_the_internet() -> None:
    assert get("/", api_keys="0123456789abcdef:tenant-a").status_code == 200
    for path in [STATIC_DIR / "index.html", *(STATIC_DIR / n for n in ASSETS)]:
        text = path.read_text()
        assert not re.search(r"https?://", text), f"{path.name} refers to another origin"
        assert "@import" not in text
        assert "<iframe" not in text


@pytest.mark.parametrize("name", ["index.html", "../settings.py", "nope.js", "%2e%2e%2fapp.py"])
def test_only_the_listed_assets_are_served(name: str) -> None:
    resp = get(f"/static/{name}")
    assert resp.status_code == 404
    assert resp.json()["error"]["code"] == "not_found"


def test_the_page_reads_the_stream_and_token_from_its_url() -> None:
    js = (STATIC_DIR / "app.js").read_text()
    assert 'query.get("stream")' in js
    assert 'query.get("token")' in js
    assert "/v1/streams/${encodeURIComponent(page.stream)}/live" in js
