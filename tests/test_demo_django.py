"""The login demo served through Django (demo.django_app) on a real wsgiref server: login,
the session page, a burst of concurrent requests, cross-site POSTs, logout."""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from urllib.parse import urlencode

import pytest
from demo.app import make_server
from demo.django_app import make_app
from tests.django_site import configure

from websession import Manager


class Browser:
    """One client of the demo, keeping its cookie as a browser does."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.cookie = ""

    def request(self, method: str, path: str, form: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        sent = dict(headers or {})
        if self.cookie:
            sent["Cookie"] = self.cookie
        body = None
        if form is not None:
            body = urlencode(form)
            sent["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=sent)
            response = conn.getresponse()
            text = response.read().decode()
            for name, value in response.getheaders():
                if name.lower() == "set-cookie":
                    pair = value.split(";", 1)[0]
                    self.cookie = "" if pair.endswith('=""') else pair
            return response.status, {k.lower(): v for k, v in response.getheaders()}, text
        finally:
            conn.close()


@pytest.fixture
def port() -> Iterator[int]:
    configure()  # the Django tests' settings, if this module runs first
    with ExitStack() as stack, Manager("memory", '{"cookieName":"gosessionid"}') as manager:
        server = make_server("127.0.0.1", 0, make_app(manager, stack=stack), quiet=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield int(server.server_address[1])
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def test_login_session_page_burst_and_logout(port: int) -> None:
    browser = Browser(port)
    status, _, page = browser.request("GET", "/")
    assert status == 200 and "Log in" in page and not browser.cookie
    status, headers, _ = browser.request("POST", "/login", {"username": "ann"})
    assert status == 303 and browser.cookie.startswith("gosessionid=")
    first = browser.cookie
    status, headers, page = browser.request("GET", "/")
    assert "Logged in as ann" in page and "Active sessions: 1" in page
    assert headers["cache-control"] == "no-store" and "Cookie" in headers["vary"]
    _, _, page = browser.request("GET", "/session")
    assert "Your session" in page and "&quot;ann&quot;" in page

    status, _, _ = browser.request("POST", "/session/burst/start", {"requests": "20"})
    assert status == 200
    done: list[int] = []

    def one(i: int) -> None:
        done.append(Browser.request(browser, "POST", "/session/burst", {"key": str(i)})[0])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert done == [200] * 20
    _, _, state = browser.request("GET", "/session/state")
    keys = [key for key, _ in json.loads(state)["data"] if key.startswith("burst-")]
    assert len(keys) == 20

    browser.request("POST", "/session/regenerate", {})
    assert browser.cookie != first
    status, _, _ = browser.request("POST", "/logout", {},
                                   headers={"Origin": "https://evil.example"})
    assert status == 403
    status, _, _ = browser.request("POST", "/logout", {})
    assert status == 303 and browser.cookie == ""
    _, _, page = browser.request("GET", "/")
    assert "Log in" in page


def test_bad_forms_are_refused(port: int) -> None:
    browser = Browser(port)
    assert browser.request("POST", "/login", {"username": ""})[0] == 400
    assert browser.request("POST", "/login", {"username": "x" * 65})[0] == 400
    assert browser.request("GET", "/login")[0] == 405
    assert browser.request("GET", "/nowhere")[0] == 404
    assert browser.request("POST", "/login", {"username": "a" * 5000})[0] == 413
