"""The login demo as a Flask application (``demo.flask_app``), driven over real HTTP: the
demo's threaded server on an ephemeral port in a thread, and ``serve()`` in a process of
its own, stopped with SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from demo.app import DEFAULT_CONFIG, build_manager, make_server
from demo.flask_app import flask_manager, make_app
from tests.test_demo import (
    TIMEOUT,
    Client,
    FlakyStore,
    assert_login_form,
    assert_unavailable,
    burst,
    logged_in_as,
    parse_set_cookie,
    state,
)

import websession
from websession.flask import FlaskSession

ROOT = Path(__file__).resolve().parents[1]


@contextmanager
def serve(manager: websession.Manager) -> Iterator[int]:
    """The Flask demo over ``manager`` on the demo's threaded server; yields the port."""
    server = make_server("127.0.0.1", 0, make_app(manager), quiet=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        thread.join(TIMEOUT)
        server.server_close()


@pytest.fixture
def manager() -> Iterator[websession.Manager]:
    with websession.Manager("memory", DEFAULT_CONFIG, session_class=FlaskSession) as made:
        yield made


@pytest.fixture
def port(manager: websession.Manager) -> Iterator[int]:
    with serve(manager) as running:
        yield running


def test_login_moves_to_a_new_id_and_logout_deletes_the_session(
        manager: websession.Manager, port: int) -> None:
    client = Client(port)
    assert_login_form(client.get())
    assert client.sid is None  # a visitor stores nothing
    burst(client, 1)  # a visitor's session, stored before login
    planted = client.sid
    response = client.login("ann")
    assert response.status == 303 and response.one("Location") == "/"
    assert client.sid and client.sid != planted
    _, _, attrs = parse_set_cookie(response.one("Set-Cookie"))
    assert "httponly" in attrs and attrs["samesite"] == "Lax" and attrs["path"] == "/"
    assert logged_in_as(client.get()) == "ann"
    stale = Client(port)
    stale.sid = planted
    assert_login_form(stale.get())
    logged_in = client.sid
    response = client.logout()
    _, _, attrs = parse_set_cookie(response.one("Set-Cookie"))
    assert attrs["max-age"] == "0" and client.sid is None
    assert manager.get_active_session() == 0
    stale.sid = logged_in
    assert_login_form(stale.get())


def test_burst_of_concurrent_requests_keeps_every_key(port: int) -> None:
    client = Client(port)
    client.login("ann")
    burst(client, 20)
    data = dict(state(client)["data"])
    assert [k for k in data if k.startswith("burst-")] == [f"burst-{i:02d}" for i in range(20)]
    assert data["username"] == '"ann"'


def test_session_page_and_regenerate(port: int) -> None:
    client = Client(port)
    client.login("ann")
    page = client.get("/session")
    assert page.status == 200 and "Content-Security-Policy" in dict(page.headers)
    assert client.sid and client.sid not in page.body  # never the whole ID
    old = client.sid
    response = client.request("POST", "/session/regenerate", {})
    assert response.status == 303 and client.sid != old
    assert logged_in_as(client.get()) == "ann"


def test_refusals(port: int) -> None:
    client = Client(port)
    assert client.request("POST", "/login", {"username": "ann"},
                          headers={"Sec-Fetch-Site": "cross-site"}).status == 403
    assert client.request("POST", "/login", {"username": ""}).status == 400
    assert client.request("POST", "/login", body=b"{}",
                          headers={"Content-Type": "application/json"}).status == 415
    assert client.request("POST", "/login", body=b"username=" + b"a" * 5000,
                          headers={"Content-Type": "application/x-www-form-urlencoded"}
                          ).status == 413
    assert client.get("/nowhere").status == 404
    response = client.request("DELETE", "/login")
    assert response.status == 405 and "POST" in response.one("Allow")
    assert client.sid is None


def test_store_outage_is_a_503_not_a_crash() -> None:
    store = FlakyStore()
    with websession.Manager(store, DEFAULT_CONFIG, session_class=FlaskSession) as manager, \
            serve(manager) as port:
        client = Client(port)
        assert client.login("ann").status == 303
        sid = client.sid
        store.failing = {"read"}  # loading the session fails, in the view
        assert_unavailable(client.get())
        store.failing = {"create"}  # saving fails, after the view
        assert_unavailable(client.login("bob"))
        store.failing = set()
        assert client.sid == sid
        assert logged_in_as(client.get()) == "ann"  # nothing was half-done


def test_flask_manager_gives_plain_managers_a_flask_twin() -> None:
    with build_manager({}) as plain:
        twin = flask_manager(plain)
        try:
            assert twin is not plain
            assert twin.engine.session_class is FlaskSession
            assert twin.config.cookie_name == "gosessionid"
            assert flask_manager(twin) is twin
        finally:
            twin.close()


def test_serve_runs_until_sigterm() -> None:
    code = ("from demo.app import build_manager\nfrom demo.flask_app import serve\n"
            "serve(build_manager(), '127.0.0.1', 0)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBSESSION_")}
    with subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            banner = proc.stdout.readline()
            match = re.search(r"http://127\.0\.0\.1:(\d+)/", banner)
            assert match, banner
            client = Client(int(match.group(1)))
            assert client.login("ann").status == 303
            assert logged_in_as(client.get()) == "ann"
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert "stopping" in out and "Traceback" not in err
