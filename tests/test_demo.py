"""The login demo (``python -m demo``) and its session page, driven over real HTTP.

Each test starts the demo's threaded wsgiref server on an ephemeral port in a thread and
talks to it with :mod:`http.client`, keeping the session cookie by hand like a browser.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from demo.app import (
    DEFAULT_CONFIG,
    MAX_BODY_BYTES,
    SHOWN_ID_CHARS,
    build_manager,
    make_app,
    make_server,
)

import websession
from websession.providers import Record
from websession.providers.memory import MemoryProvider

ROOT = Path(__file__).resolve().parents[1]

COOKIE = "gosessionid"
SID = re.compile(r"[0-9a-f]{32}")
TIMEOUT = 10.0


# -- a live server and a cookie-keeping client ------------------------------------------


@dataclass
class Live:
    manager: websession.Manager
    port: int


@contextmanager
def serve(manager: websession.Manager) -> Iterator[Live]:
    """The demo app over ``manager`` on a threaded wsgiref server, in a thread."""
    server = make_server("127.0.0.1", 0, make_app(manager), quiet=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield Live(manager, server.server_address[1])
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
        server.server_close()
    assert not thread.is_alive()


@pytest.fixture
def live() -> Iterator[Live]:
    manager = build_manager({})  # the defaults: memory provider, the seed's JSON config
    manager.start_gc()
    try:
        with serve(manager) as running:
            yield running
    finally:
        manager.close()
    assert not manager.gc_running


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: str

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    def one(self, name: str) -> str:
        values = self.all(name)
        assert len(values) == 1, (name, self.headers)
        return values[0]


def parse_set_cookie(header: str) -> tuple[str, str, dict[str, str]]:
    """``name=value; Attr=x; Flag`` -> (name, value, {"attr": "x", "flag": ""})."""
    first, *attrs = (part.strip() for part in header.split(";"))
    name, _, value = first.partition("=")
    parsed: dict[str, str] = {}
    for attr in attrs:
        key, _, val = attr.partition("=")
        parsed[key.lower()] = val
    return name, value, parsed


class Client:
    """One browser: sends its session cookie, and obeys Set-Cookie for it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sid: str | None = None

    def request(
        self,
        method: str,
        path: str,
        form: Mapping[str, str] | None = None,
        *,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        send = dict(headers or {})
        if self.sid is not None:
            send["Cookie"] = f"{COOKIE}={self.sid}"
        if form is not None:
            body = urlencode(form).encode("ascii")
            send["Content-Type"] = "application/x-www-form-urlencoded"
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            conn.request(method, path, body=body, headers=send)
            raw = conn.getresponse()
            response = Response(raw.status, raw.getheaders(), raw.read().decode("utf-8"))
        finally:
            conn.close()
        for header in response.all("Set-Cookie"):
            name, value, attrs = parse_set_cookie(header)
            if name == COOKIE:
                self.sid = None if attrs.get("max-age") == "0" else value
        return response

    def get(self, path: str = "/") -> Response:
        return self.request("GET", path)

    def login(self, username: str, password: str = "secret") -> Response:
        return self.request("POST", "/login", {"username": username, "password": password})

    def logout(self) -> Response:
        return self.request("POST", "/logout", {})


def logged_in_as(response: Response) -> str | None:
    match = re.search(r"Logged in as (.*?)</p>", response.body)
    return match.group(1) if match else None


def active_count(response: Response) -> int:
    match = re.search(r"Active sessions: (\d+)", response.body)
    assert match, response.body
    return int(match.group(1))


def assert_login_form(response: Response, status: int = 200) -> None:
    assert response.status == status
    assert '<form method="post" action="/login">' in response.body
    assert 'name="username"' in response.body
    assert 'name="password" type="password"' in response.body
    assert "Logged in as" not in response.body


# -- the pages ---------------------------------------------------------------------------


def test_index_shows_login_form_and_creates_no_session(live: Live) -> None:
    client = Client(live.port)
    response = client.get()
    assert_login_form(response)
    assert response.one("Content-Type") == "text/html; charset=utf-8"
    assert response.one("Cache-Control") == "no-store"
    assert response.all("Set-Cookie") == []  # a visit alone stores nothing
    assert live.manager.get_active_session() == 0


def test_login_sets_hardened_cookie_and_shows_user(live: Live) -> None:
    client = Client(live.port)
    response = client.login("ann")
    assert response.status == 303
    assert response.one("Location") == "/"
    assert response.one("Cache-Control") == "no-store"  # added by the session middleware
    name, value, attrs = parse_set_cookie(response.one("Set-Cookie"))
    assert name == COOKIE
    assert SID.fullmatch(value)
    assert "httponly" in attrs
    assert attrs["samesite"] == "Lax"
    assert attrs["path"] == "/"
    assert "max-age" not in attrs  # a browser-session cookie (cookieLifeTime 0)
    assert "secure" not in attrs  # plain http on localhost
    assert client.sid == value

    page = client.get()
    assert page.status == 200
    assert logged_in_as(page) == "ann"
    assert active_count(page) == 1
    assert '<form method="post" action="/logout">' in page.body
    assert page.one("Cache-Control") == "no-store"
    assert "Cookie" in page.all("Vary")
    assert page.all("Set-Cookie") == []  # nothing changed: no new cookie
    assert live.manager.get_session_store(value).get("username") == "ann"


def test_login_replaces_a_planted_session_id(live: Live) -> None:
    # An attacker's session, created through the public API, planted in the victim's browser.
    planted_store = live.manager.get_session_store("0" * 32)
    planted_store.set("planted", "by attacker")
    planted_store.session_release()
    planted = planted_store.session_id()
    assert SID.fullmatch(planted)
    assert live.manager.get_session_store(planted).get("planted") == "by attacker"
    assert live.manager.get_active_session() == 1

    victim = Client(live.port)
    victim.sid = planted
    response = victim.login("ann")
    assert response.status == 303
    new_sid = victim.sid
    assert new_sid is not None
    assert SID.fullmatch(new_sid)
    assert new_sid != planted
    # The planted ID is dead: it names no session, and shows nobody logged in.
    assert live.manager.get_session_store(planted).get("username") is None
    attacker = Client(live.port)
    attacker.sid = planted
    assert_login_form(attacker.get())
    # The victim's session moved to the new ID (regeneration keeps the data).
    page = victim.get()
    assert logged_in_as(page) == "ann"
    assert active_count(page) == 1


def test_logging_in_again_replaces_the_previous_id(live: Live) -> None:
    client = Client(live.port)
    assert client.login("ann").status == 303
    first = client.sid
    assert first is not None

    assert client.login("bob").status == 303
    second = client.sid
    assert second is not None
    assert second != first
    page = client.get()
    assert logged_in_as(page) == "bob"
    assert active_count(page) == 1  # the old session was deleted, not left behind

    stale = Client(live.port)
    stale.sid = first
    assert_login_form(stale.get())


def test_second_client_counts_two_sessions(live: Live) -> None:
    ann, bob = Client(live.port), Client(live.port)
    ann.login("ann")
    assert active_count(ann.get()) == 1
    bob.login("bob")
    assert ann.sid is not None
    assert bob.sid is not None
    assert ann.sid != bob.sid
    ann_page, bob_page = ann.get(), bob.get()
    assert logged_in_as(ann_page) == "ann"
    assert logged_in_as(bob_page) == "bob"
    assert active_count(ann_page) == 2
    assert active_count(bob_page) == 2
    assert live.manager.get_active_session() == 2


def test_logout_expires_cookie_and_session(live: Live) -> None:
    client = Client(live.port)
    client.login("ann")
    old_sid = client.sid
    assert old_sid is not None

    response = client.logout()
    assert response.status == 303
    assert response.one("Location") == "/"
    assert response.one("Cache-Control") == "no-store"
    name, value, attrs = parse_set_cookie(response.one("Set-Cookie"))
    assert (name, value) == (COOKIE, "")
    assert attrs["max-age"] == "0"
    assert "httponly" in attrs
    assert attrs["samesite"] == "Lax"
    assert client.sid is None
    assert live.manager.get_active_session() == 0

    assert_login_form(client.get())
    replay = Client(live.port)  # someone who kept a copy of the old cookie
    replay.sid = old_sid
    assert_login_form(replay.get())


def test_logout_without_a_session_is_harmless(live: Live) -> None:
    response = Client(live.port).logout()
    assert response.status == 303
    assert response.all("Set-Cookie") == []
    assert live.manager.get_active_session() == 0


def test_username_is_html_escaped(live: Live) -> None:
    client = Client(live.port)
    evil = '<script>alert("x")</script>&'
    assert client.login(evil).status == 303
    page = client.get()
    assert "<script>" not in page.body
    assert logged_in_as(page) == "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;"
    assert live.manager.get_session_store(client.sid or "").get("username") == evil


@pytest.mark.parametrize(
    "forged",
    [
        "f" * 32,  # well-formed, but no such session
        "not-a-session-id",
        "../../etc/passwd",
        '"<script>"',
        "x" * 4000,
    ],
)
def test_forged_cookie_gets_login_form(live: Live, forged: str) -> None:
    client = Client(live.port)
    client.sid = forged
    response = client.get()
    assert_login_form(response)
    assert forged not in response.body
    assert live.manager.get_active_session() == 0
    # Logging in from there works, under a fresh ID.
    assert client.login("ann").status == 303
    assert client.sid is not None
    assert client.sid != forged
    assert SID.fullmatch(client.sid)
    assert logged_in_as(client.get()) == "ann"


# -- bad requests ------------------------------------------------------------------------


@pytest.mark.parametrize("username", ["", "   "])
def test_empty_username_is_rejected(live: Live, username: str) -> None:
    client = Client(live.port)
    response = client.login(username)
    assert_login_form(response, 400)
    assert "Please enter a username." in response.body
    assert response.all("Set-Cookie") == []
    assert client.sid is None
    assert live.manager.get_active_session() == 0


def test_overlong_username_is_rejected(live: Live) -> None:
    response = Client(live.port).login("a" * 65)
    assert_login_form(response, 400)
    assert "at most 64 characters" in response.body
    assert live.manager.get_active_session() == 0


def test_body_size_is_capped(live: Live) -> None:
    # The server must refuse on the header alone, without reading (or waiting for) a body.
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=TIMEOUT)
    try:
        conn.putrequest("POST", "/login")
        conn.putheader("Content-Type", "application/x-www-form-urlencoded")
        conn.putheader("Content-Length", str(MAX_BODY_BYTES + 1))
        conn.endheaders()
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        conn.close()
    assert response.status == 413
    assert '<form method="post" action="/login">' in body
    assert live.manager.get_active_session() == 0


@pytest.mark.parametrize("length", ["abc", "-1", "+3", "1_0"])
def test_malformed_content_length_is_rejected(live: Live, length: str) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", live.port, timeout=TIMEOUT)
    try:
        conn.putrequest("POST", "/login")
        conn.putheader("Content-Type", "application/x-www-form-urlencoded")
        conn.putheader("Content-Length", length)
        conn.endheaders()
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    assert response.status == 400
    assert live.manager.get_active_session() == 0


@pytest.mark.parametrize(("body", "content_type", "status"), [
    (b'{"username": "ann"}', "application/json", 415),  # not a form
    (b"username=%ff%fe", "application/x-www-form-urlencoded", 400),  # not UTF-8
])
def test_unreadable_login_bodies_are_rejected(live: Live, body: bytes, content_type: str,
                                              status: int) -> None:
    response = Client(live.port).request(
        "POST", "/login", body=body, headers={"Content-Type": content_type})
    assert response.status == status
    assert live.manager.get_active_session() == 0


@pytest.mark.parametrize("path", ["/nope", "/login/", "/index.html", "/logout/x"])
def test_unknown_path_is_404(live: Live, path: str) -> None:
    response = Client(live.port).get(path)
    assert response.status == 404
    assert response.all("Set-Cookie") == []


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/login", "POST"),
        ("GET", "/logout", "POST"),
        ("POST", "/", "GET, HEAD"),
        ("PUT", "/login", "POST"),
        ("DELETE", "/", "GET, HEAD"),
    ],
)
def test_wrong_method_is_405(live: Live, method: str, path: str, allow: str) -> None:
    client = Client(live.port)
    response = client.request(method, path)
    assert response.status == 405
    assert response.one("Allow") == allow
    assert client.sid is None


def test_head_index_has_headers_but_no_body(live: Live) -> None:
    response = Client(live.port).request("HEAD", "/")
    assert response.status == 200
    assert int(response.one("Content-Length")) > 0
    assert response.body == ""


class FlakyStore(MemoryProvider):
    """The memory provider, with primitives that can be made to fail."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()

    def _check(self, op: str) -> None:
        if op in self.failing:
            raise ConnectionError(f"store is down ({op})")

    def read(self, sid: str) -> Record | None:
        self._check("read")
        return super().read(sid)

    def create(self, sid: str, record: Record) -> bool:
        self._check("create")
        return super().create(sid, record)

    def delete(self, sid: str) -> None:
        self._check("delete")
        super().delete(sid)


def assert_unavailable(response: Response) -> None:
    assert response.status == 503
    assert response.one("Retry-After") == "5"
    assert response.one("Cache-Control") == "no-store"
    assert response.all("Set-Cookie") == []
    assert "session store is unavailable" in response.body


def test_store_outage_is_a_503_not_a_crash() -> None:
    store = FlakyStore()
    with websession.Manager(store, DEFAULT_CONFIG) as manager, serve(manager) as running:
        client = Client(running.port)
        assert client.login("ann").status == 303
        sid = client.sid

        store.failing = {"read"}  # loading the session fails
        assert_unavailable(client.get())
        store.failing = {"create"}  # saving fails, inside the middleware's start_response
        assert_unavailable(client.login("bob"))
        store.failing = {"delete"}  # destroying fails
        assert_unavailable(client.logout())

        store.failing = set()
        assert client.sid == sid
        page = client.get()
        assert logged_in_as(page) == "ann"  # nothing was half-done
        assert active_count(page) == 1


# -- serving -----------------------------------------------------------------------------


def test_server_serves_requests_concurrently(live: Live) -> None:
    # A client that connects and says nothing occupies one handler thread; a
    # single-threaded server would make everyone else wait behind it.
    stalled = socket.create_connection(("127.0.0.1", live.port), timeout=TIMEOUT)
    try:
        client = Client(live.port)
        assert client.login("ann").status == 303
        assert logged_in_as(client.get()) == "ann"
    finally:
        stalled.close()


def test_build_manager_reads_the_environment() -> None:
    with build_manager({}) as default:
        assert default.config.cookie_name == "gosessionid"
        assert default.config.gc_lifetime == 3600
    assert DEFAULT_CONFIG == '{"cookieName":"gosessionid","gclifetime":3600}'
    env = {"WEBSESSION_PROVIDER": "memory", "WEBSESSION_CONFIG": '{"cookieName": "sid"}'}
    with build_manager(env) as custom:
        assert custom.config.cookie_name == "sid"
    with pytest.raises(websession.UnknownProviderError):
        build_manager({"WEBSESSION_PROVIDER": "no-such-provider"})
    with pytest.raises(websession.ConfigurationError, match="cookieName"):
        build_manager({"WEBSESSION_CONFIG": '{"cookiName": "sid"}'})


def test_python_m_demo_serves_and_stops_on_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBSESSION_")}
    with subprocess.Popen(
        [sys.executable, "-m", "demo", "--port", "0"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            banner = proc.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", banner)
            assert match, banner
            response = Client(int(match.group(1))).get()
            assert_login_form(response)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert "stopping" in out
    assert "Traceback" not in err
    assert '"GET / HTTP/1.1" 200' in err  # the request log


# -- the session page ----------------------------------------------------------------------


def short_id(sid: str) -> str:
    return sid[:SHOWN_ID_CHARS] + "\N{HORIZONTAL ELLIPSIS}"


def state(client: Client) -> dict[str, Any]:
    response = client.get("/session/state")
    assert response.status == 200
    assert response.one("Content-Type") == "application/json"
    assert response.one("Cache-Control") == "no-store"
    data: dict[str, Any] = json.loads(response.body)
    return data


def test_session_page_shows_the_session_but_never_its_whole_id(live: Live) -> None:
    client = Client(live.port)
    client.login("ann")
    sid = client.sid
    assert sid is not None
    before = time.time()
    page = client.get("/session")
    assert page.status == 200
    assert page.one("Cache-Control") == "no-store"
    assert page.all("Set-Cookie") == []  # looking changes nothing
    assert sid not in page.body
    assert f'<code id="sid">{short_id(sid)}</code>' in page.body
    assert '<dd id="stored">yes</dd>' in page.body
    assert "websession.providers.memory.MemoryProvider" in page.body
    assert "<code>username</code></td><td><code>&quot;ann&quot;</code>" in page.body
    session = live.manager.get_session_store(sid)
    deadline = re.search(r'id="idle-live" data-until="([0-9.]+)"', page.body)
    assert deadline is not None
    assert float(deadline.group(1)) == pytest.approx(session.expires_at, abs=1)
    assert float(deadline.group(1)) > before + 3500  # the seed's one-hour idle timeout
    absolute = re.search(r'id="absolute-live" data-until="([0-9.]+)"', page.body)
    assert absolute is not None
    assert float(absolute.group(1)) == pytest.approx(session.created_at + 86400, abs=1)
    assert f'<span id="version">{session.version}</span>' in page.body
    # The page's own script and style run under its CSP, and nothing else does.
    csp = page.one("Content-Security-Policy")
    assert "unsafe-inline" not in csp
    for tag in ("script", "style"):
        match = re.search(f"<{tag}>(.*?)</{tag}>", page.body, re.S)
        assert match is not None
        digest = base64.b64encode(hashlib.sha256(match.group(1).encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp


def test_session_page_for_a_visitor_stores_nothing(live: Live) -> None:
    client = Client(live.port)
    page = client.get("/session")
    assert page.status == 200
    assert page.all("Set-Cookie") == []
    assert '<dd id="stored">no: nothing has been set in it yet</dd>' in page.body
    assert "The session holds no data." in page.body
    assert "Log out" not in page.body
    assert state(client)["stored"] is False
    assert live.manager.get_active_session() == 0


def test_session_page_escapes_keys_and_values(live: Live) -> None:
    client = Client(live.port)
    client.login("ann")
    store = live.manager.get_session_store(client.sid or "")
    store["<b>key</b>"] = "<script>alert(1)</script>"
    store.session_release()
    page = client.get("/session")
    assert "<script>alert(1)" not in page.body
    assert "<b>key" not in page.body
    assert "&lt;b&gt;key&lt;/b&gt;" in page.body
    assert "&quot;&lt;script&gt;alert(1)&lt;/script&gt;&quot;" in page.body
    # The JSON the page's script renders with textContent carries the text as it is.
    assert ["<b>key</b>", '"<script>alert(1)</script>"'] in state(client)["data"]


def burst(client: Client, requests: int) -> None:
    """What the page's button does: start, then ``requests`` concurrent POSTs."""
    assert client.request("POST", "/session/burst/start", {"requests": str(requests)}).status \
        == 200
    barrier = threading.Barrier(requests)
    statuses: list[int] = []

    def one(i: int) -> None:
        barrier.wait(TIMEOUT)
        statuses.append(client.request("POST", "/session/burst", {"key": str(i)}).status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(requests)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert statuses == [200] * requests


def test_concurrent_requests_keep_every_key(live: Live) -> None:
    client = Client(live.port)
    client.login("ann")
    burst(client, 30)
    data = dict(state(client)["data"])
    assert [k for k in data if k.startswith("burst-")] == [f"burst-{i:02d}" for i in range(30)]
    assert data["username"] == '"ann"'
    # Starting again clears the previous burst's keys.
    burst(client, 5)
    data = dict(state(client)["data"])
    assert [k for k in data if k.startswith("burst-")] == [f"burst-{i:02d}" for i in range(5)]


def test_a_visitors_burst_shares_one_session(live: Live) -> None:
    client = Client(live.port)
    burst(client, 10)
    assert live.manager.get_active_session() == 1
    assert len([k for k, _ in state(client)["data"] if k.startswith("burst-")]) == 10


@pytest.mark.parametrize(("path", "form"), [
    ("/session/burst/start", {"requests": "0"}),
    ("/session/burst/start", {"requests": "101"}),
    ("/session/burst/start", {"requests": "-1"}),
    ("/session/burst/start", {}),
    ("/session/burst", {"key": "100"}),
    ("/session/burst", {"key": "x"}),
    ("/session/burst", {}),
])
def test_burst_rejects_bad_input(live: Live, path: str, form: dict[str, str]) -> None:
    client = Client(live.port)
    response = client.request("POST", path, form)
    assert response.status == 400
    assert live.manager.get_active_session() == 0


def test_regenerate_moves_the_session_to_a_new_id(live: Live) -> None:
    client = Client(live.port)
    client.login("ann")
    old = client.sid
    assert old is not None
    response = client.request("POST", "/session/regenerate", {})
    assert response.status == 303
    assert response.one("Location") == "/session"
    new = client.sid
    assert new is not None
    assert new != old
    page = client.get("/session")
    assert f'<code id="sid">{short_id(new)}</code>' in page.body
    assert logged_in_as(client.get()) == "ann"
    stale = Client(live.port)
    stale.sid = old
    assert_login_form(stale.get())
    assert live.manager.get_active_session() == 1


def test_regenerate_without_a_session_stores_nothing(live: Live) -> None:
    client = Client(live.port)
    response = client.request("POST", "/session/regenerate", {})
    assert response.status == 303
    assert response.all("Set-Cookie") == []
    assert live.manager.get_active_session() == 0


@pytest.mark.parametrize("headers", [
    {"Origin": "http://evil.example"},
    {"Origin": "null"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
])
@pytest.mark.parametrize(("path", "form"), [
    ("/login", {"username": "mallory"}),
    ("/logout", {}),
    ("/session/regenerate", {}),
    ("/session/burst/start", {"requests": "3"}),
    ("/session/burst", {"key": "1"}),
])
def test_cross_site_posts_are_refused(
    live: Live, headers: dict[str, str], path: str, form: dict[str, str]
) -> None:
    client = Client(live.port)
    client.login("ann")
    sid = client.sid
    assert sid is not None
    version = live.manager.get_session_store(sid).version
    response = client.request("POST", path, form, headers=headers)
    assert response.status == 403
    assert response.all("Set-Cookie") == []
    assert client.sid == sid
    after = live.manager.get_session_store(sid)
    assert after.get("username") == "ann"
    assert after.version == version


def test_same_origin_posts_from_a_browser_are_accepted(live: Live) -> None:
    client = Client(live.port)
    origin = f"http://127.0.0.1:{live.port}"
    response = client.request("POST", "/login", {"username": "ann"},
                              headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"})
    assert response.status == 303
    response = client.request("POST", "/session/regenerate", {}, headers={"Origin": origin})
    assert response.status == 303
    assert logged_in_as(client.get()) == "ann"
