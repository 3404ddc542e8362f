"""The demo in a real browser: headless Chromium (Debian's) driven by Playwright.

The test serves the demo on 127.0.0.1 itself, then clicks through it as a person would:
log in, open the session page, send concurrent requests, regenerate the ID, log out. It
saves a screenshot of each step under its tmp_path. Without /usr/bin/chromium it skips,
or fails under CI=true (``.ci/run`` installs Debian's ``chromium`` package).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from demo.app import build_manager, make_app, make_server
from tests.servers import unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Page

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox (root in CI), and no connections to anything but the demo: this machine's
# network is closed, and Chromium would otherwise keep trying Google's hosts.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
COOKIE = "gosessionid"
TIMEOUT_MS = 15_000


@pytest.fixture
def demo_url() -> Iterator[str]:
    manager = build_manager({})  # what `make demo` runs: memory provider, the seed's JSON
    server = make_server("127.0.0.1", 0, make_app(manager, "memory"), quiet=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()
        manager.close()


@pytest.fixture
def page(tmp_path: Path) -> Iterator[Page]:
    if not CHROMIUM.exists():
        unavailable(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile for every run
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 900, "height": 1100},
        )
        try:
            browser_page = context.new_page()
            browser_page.set_default_timeout(TIMEOUT_MS)
            yield browser_page
        finally:
            context.close()


def session_cookie(page: Page) -> str | None:
    return next((c["value"] for c in page.context.cookies() if c["name"] == COOKIE), None)


def test_a_person_logs_in_watches_the_session_and_logs_out(
    page: Page, demo_url: str, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    problems: list[str] = []  # script errors, CSP refusals, failed requests
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", lambda msg: problems.append(f"console: {msg.text}")
            if msg.type == "error" else None)
    shots = tmp_path / "screenshots"

    def shot(name: str) -> None:
        page.screenshot(path=str(shots / f"{name}.png"), full_page=True)

    # 1. The login form.
    page.goto(demo_url + "/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    shot("01-login")

    # 2. Log in.
    page.get_by_label("Username").fill("ann")
    page.get_by_label("Password").fill("secret")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Logged in as ann")).to_be_visible()
    first_cookie = session_cookie(page)
    assert first_cookie is not None
    shot("02-logged-in")

    # 3. The session page, reached from the keyboard.
    page.get_by_role("link", name="Your session").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Your session")).to_be_visible()
    shown_id = page.locator("#sid").inner_text()
    assert re.fullmatch(r"[0-9a-f]{6}\u2026", shown_id), shown_id
    assert first_cookie.startswith(shown_id[:-1])
    assert first_cookie not in page.content()  # never the whole ID
    expect(page.locator("#stored")).to_have_text("yes")
    expect(page.locator("#data-rows")).to_contain_text('"ann"')
    expect(page.get_by_text("MemoryProvider")).to_be_visible()
    # The countdowns run: the page's script is allowed by its CSP hash and ticking.
    expect(page.locator("#idle-live")).to_have_text(re.compile(r"^in (\d+ h )?\d+ min \d+ s$"))
    expect(page.locator("#absolute-live")).to_have_text(re.compile(r"^in \d+ h \d+ min \d+ s$"))
    expect(page.locator("#created-live")).to_have_text(re.compile(r"^\d+ s ago$"))
    shot("03-session")

    # 4. Twenty concurrent requests, each setting its own key: all twenty kept.
    version_before = int(page.locator("#version").inner_text())
    page.get_by_label("Requests").fill("20")
    page.get_by_label("Requests").press("Enter")
    result = page.locator("#burst-result")
    expect(result).to_have_text(re.compile(r"^20 of 20 keys kept"))
    rows = page.locator("#data-rows tr")
    keys = [rows.nth(i).locator("td").first.inner_text() for i in range(rows.count())]
    assert [k for k in keys if k.startswith("burst-")] == [f"burst-{i:02d}" for i in range(20)]
    assert "username" in keys  # the login survived the burst
    assert int(page.locator("#version").inner_text()) > version_before
    shot("04-twenty-requests")

    # 5. Regenerate: a new ID, the same data.
    page.get_by_role("button", name="Regenerate the session ID").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#sid")).not_to_have_text(shown_id)
    new_cookie = session_cookie(page)
    assert new_cookie is not None
    assert new_cookie != first_cookie
    assert new_cookie.startswith(page.locator("#sid").inner_text()[:-1])
    expect(page.locator("#data-rows")).to_contain_text("burst-19")
    expect(page.locator("#data-rows")).to_contain_text('"ann"')
    shot("05-regenerated")

    # 6. Log out from the session page: back to the login form, the cookie gone.
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert session_cookie(page) is None
    shot("06-logged-out")

    assert problems == []
    assert sorted(p.name for p in shots.iterdir()) == [
        "01-login.png", "02-logged-in.png", "03-session.png", "04-twenty-requests.png",
        "05-regenerated.png", "06-logged-out.png",
    ]
