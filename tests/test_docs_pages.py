# SPDX-License-Identifier: GPL-3.0-or-later
"""``GET /`` says where things are; ``/docs`` serves Swagger UI from this machine, behind the token (a browser gets in
with ``/docs?token=`` once, traded for a strict HttpOnly cookie); cross-site use stays refused."""

import shutil
import subprocess

import pytest
import requests
from conftest import AUTH, TOKEN


def test_root_says_where_things_are(server):
    assert requests.get(server.url + "/", timeout=10).status_code == 401
    answer = server.get("/").json()
    assert answer["docs"] == "/docs" and answer["openapi"] == "/openapi.json" and answer["health"] == "/v1/health"
    assert "/docs?token=" in answer["auth"]
    bare = requests.get(server.url + "/docs", timeout=10)
    assert bare.status_code == 401 and "/docs?token=" in bare.json()["detail"]


def test_docs_token_is_traded_for_a_strict_cookie(server):
    wrong = requests.get(server.url + "/docs", params={"token": "x" * 32}, timeout=10, allow_redirects=False)
    assert wrong.status_code == 401

    session = requests.Session()
    first = session.get(server.url + "/docs", params={"token": TOKEN}, timeout=10, allow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/docs"  # the token leaves the address bar
    set_cookie = first.headers["set-cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie
    assert TOKEN not in set_cookie  # a keyed hash of it, not the token

    page = session.get(server.url + "/docs", timeout=10)
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert "cdn" not in page.text.lower() and "/docs/static/swagger-ui-bundle.js" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    script = session.get(server.url + "/docs/static/swagger-ui-bundle.js", timeout=10)
    assert script.status_code == 200 and len(script.content) > 100_000
    schema = session.get(server.url + "/openapi.json", timeout=10)
    assert schema.status_code == 200 and "/v1/jobs" in schema.json()["paths"]
    # "Try it out" works with the cookie, like the bearer header...
    assert session.get(server.url + "/v1/health", timeout=10).json()["status"] == "ok"
    # ... but never for another site: a foreign Origin is refused whatever the credentials.
    foreign = session.post(server.url + "/v1/jobs", headers={"Origin": "https://evil.example"}, timeout=10)
    assert foreign.status_code == 403
    assert requests.get(server.url + "/docs/static/swagger-ui-bundle.js", timeout=10).status_code == 401
    assert requests.get(server.url + "/docs", cookies={"strata_docs": "0" * 64}, timeout=10).status_code == 401
    assert session.get(server.url + "/docs/static/..%2Fcore.py", timeout=10).status_code == 404


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium")
def test_docs_render_in_a_real_browser(server, tmp_path):
    """Chromium opens /docs?token=..., follows the redirect with the cookie and Swagger UI lists our operations."""
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=15000", "--dump-dom", f"{server.url}/docs?token={TOKEN}"],
        capture_output=True, text=True, timeout=120)
    dom = result.stdout
    assert "Strata inference server" in dom, result.stderr[-2000:]
    assert "/v1/jobs/{job_id}/cancel" in dom and "Submit a decomposition job" in dom
    assert AUTH["Authorization"].split()[1] not in dom
