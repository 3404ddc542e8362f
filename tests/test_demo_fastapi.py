"""The FastAPI version of the login demo (demo/fastapi_app.py) behaves as the WSGI one: the
WSGI demo's own tests run here again, against the FastAPI demo served by uvicorn."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from demo.app import DEFAULT_CONFIG, build_manager
from demo.fastapi_app import make_app
from tests.asgi_flows import serve, store_manager
from tests.test_demo import (  # noqa: F401 - collected here again, with this module's `live`
    Client,
    FlakyStore,
    Live,
    active_count,
    assert_login_form,
    assert_unavailable,
    burst,
    logged_in_as,
    state,
    test_a_visitors_burst_shares_one_session,
    test_body_size_is_capped,
    test_burst_rejects_bad_input,
    test_concurrent_requests_keep_every_key,
    test_cross_site_posts_are_refused,
    test_empty_username_is_rejected,
    test_forged_cookie_gets_login_form,
    test_head_index_has_headers_but_no_body,
    test_index_shows_login_form_and_creates_no_session,
    test_logging_in_again_replaces_the_previous_id,
    test_login_replaces_a_planted_session_id,
    test_login_sets_hardened_cookie_and_shows_user,
    test_logout_expires_cookie_and_session,
    test_logout_without_a_session_is_harmless,
    test_malformed_content_length_is_rejected,
    test_overlong_username_is_rejected,
    test_regenerate_moves_the_session_to_a_new_id,
    test_regenerate_without_a_session_stores_nothing,
    test_same_origin_posts_from_a_browser_are_accepted,
    test_second_client_counts_two_sessions,
    test_server_serves_requests_concurrently,
    test_session_page_escapes_keys_and_values,
    test_session_page_for_a_visitor_stores_nothing,
    test_session_page_shows_the_session_but_never_its_whole_id,
    test_unknown_path_is_404,
    test_unreadable_login_bodies_are_rejected,
    test_username_is_html_escaped,
    test_wrong_method_is_405,
)

import websession

ROOT = Path(__file__).resolve().parents[1]


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


@pytest.fixture
def live() -> Iterator[Live]:
    """The FastAPI demo over the WSGI demo's defaults (memory, the seed's config), on
    uvicorn; its lifespan runs the manager's GC and stops it."""
    manager = build_manager({})
    with serve(make_app(manager)) as url:
        assert manager.gc_running
        yield Live(manager, _port(url))
    assert not manager.gc_running


def test_store_outage_is_a_503_not_a_crash() -> None:
    store = FlakyStore()
    manager = websession.Manager(store, DEFAULT_CONFIG)
    with serve(make_app(manager)) as url:
        client = Client(_port(url))
        assert client.login("ann").status == 303
        sid = client.sid

        store.failing = {"read"}  # loading the session fails
        assert_unavailable(client.get())
        store.failing = {"create"}  # saving fails, before the response starts
        assert_unavailable(client.login("bob"))
        store.failing = {"delete"}  # invalidating fails
        assert_unavailable(client.logout())

        store.failing = set()
        assert client.sid == sid
        page = client.get()
        assert logged_in_as(page) == "ann"  # nothing was half-done
        assert active_count(page) == 1


@pytest.mark.parametrize("kind", ["redis", "postgres"])
def test_the_demo_on_a_store_with_io(kind: str, tmp_path: Path) -> None:
    with store_manager(kind, tmp_path) as manager, serve(make_app(manager, kind)) as url:
        client = Client(_port(url))
        assert_login_form(client.get())
        assert client.login("ann").status == 303
        page = client.get()
        assert (logged_in_as(page), active_count(page)) == ("ann", 1)
        assert f"{kind} <span" in client.get("/session").body
        burst(client, 20)
        kept = [k for k, _ in state(client)["data"] if k.startswith("burst-")]
        assert kept == [f"burst-{i:02d}" for i in range(20)]
        assert client.logout().status == 303
        assert_login_form(client.get())
        assert manager.get_active_session() == 0


def test_serve_runs_until_ctrl_c() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBSESSION_")}
    code = ("from demo.app import build_manager; from demo.fastapi_app import serve; "
            f"serve(build_manager(), '127.0.0.1', {port})")
    with subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    assert proc.poll() is None and time.monotonic() < deadline, \
                        proc.communicate()
                    time.sleep(0.05)
            client = Client(port)
            assert_login_form(client.get())
            assert client.login("ann").status == 303
            assert logged_in_as(client.get()) == "ann"
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "Application shutdown complete" in err  # the lifespan ran: the store is closed
