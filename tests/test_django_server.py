"""The Django adapter behind a real HTTP server: Django's WSGI handler on the standard
library's threaded wsgiref server on 127.0.0.1, started and stopped here, spoken to over
sockets, on each store of ``STORES``."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from demo.app import make_server
from django.core.handlers.wsgi import WSGIHandler  # type: ignore[import-untyped]
from django.test import override_settings  # type: ignore[import-untyped]
from tests.django_site import STORES, configure, create_user, store

from websession.django import SessionStore, get_manager

REQUESTS = 20


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    configure()
    server = make_server("127.0.0.1", 0, WSGIHandler(), quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(params=STORES)
def kind(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with store(request.param, tmp_path) as conf, override_settings(WEBSESSION=conf):
        yield request.param


class Response:
    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def set_cookies(self) -> list[str]:
        return [value for name, value in self.headers if name.lower() == "set-cookie"]

    @property
    def session_id(self) -> str:
        (header,) = self.set_cookies
        name, _, rest = header.partition("=")
        assert name == "sessionid"
        return rest.split(";", 1)[0]

    def json(self) -> Any:
        return json.loads(self.body)


def get(port: int, path: str, session_id: str | None = None) -> Response:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers={"Cookie": f"sessionid={session_id}"}
                     if session_id else {})
        response = conn.getresponse()
        return Response(response.status, response.getheaders(), response.read())
    finally:
        conn.close()


def test_one_cookie_carrying_websessions_id(port: int, kind: str) -> None:
    response = get(port, "/set/colour?value=green")
    assert response.status == 200 and len(response.set_cookies) == 1
    sid = response.session_id
    assert get_manager().get_session_store(sid).get("colour") == "green"
    assert get(port, "/show", sid).json()["data"] == {"colour": "green"}


def test_concurrent_requests_keep_every_key(port: int, kind: str) -> None:
    sid = get(port, "/set/start").session_id
    barrier = threading.Barrier(REQUESTS)
    statuses: list[int] = []

    def one(i: int) -> None:
        barrier.wait()
        statuses.append(get(port, f"/burst/{i}", sid).status)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * REQUESTS
    data = get(port, "/show", sid).json()["data"]
    assert sorted(k for k in data if k.startswith("k")) == [f"k{i:02d}" for i in
                                                             range(REQUESTS)]


def test_the_pre_login_id_is_dead_after_login(port: int, kind: str) -> None:
    create_user("dee")
    before = get(port, "/set/cart?value=2").session_id
    login = get(port, "/login?username=dee", before)
    after = login.session_id
    assert after != before
    shown = get(port, "/show", after).json()
    assert (shown["key"], shown["user"], shown["data"]["cart"]) == (after, "dee", "2")
    replay = get(port, "/show", before)
    assert replay.json() == {"key": None, "data": {}, "user": ""}
    assert replay.session_id == '""'  # the dead cookie is dropped
    assert not SessionStore().exists(before)


def test_a_session_past_its_own_expiry_is_empty(port: int, kind: str) -> None:
    sid = get(port, "/expiry/2").session_id
    assert get(port, "/show", sid).json()["data"] == {"expiring": True, "_session_expiry": 2}
    time.sleep(3)
    replay = get(port, "/show", sid).json()
    assert replay["data"] == {} and replay["key"] is None
