"""Every built-in provider driven through the seed's seven Provider methods
(websession.seed.SeedAdapter), with beego's meanings. The cases follow beego's own
provider tests (session/sess_file_test.go, sess_mem_test.go): init, exist, read, all,
regenerate, destroy and GC, each acting at once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import websession
from websession import Manager
from websession.providers.base import BaseProvider
from websession.providers.file import FileProvider
from websession.providers.memory import MemoryProvider
from websession.providers.sqlite import SQLiteProvider
from websession.seed import SeedAdapter

SID = "a" * 32
SID_NEW = "b" * 32


@pytest.fixture(params=["memory", "file", "sqlite"])
def adapter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SeedAdapter]:
    makers: dict[str, Callable[[], BaseProvider]] = {
        "memory": MemoryProvider,
        "file": lambda: FileProvider(tmp_path / "sessions"),
        "sqlite": lambda: SQLiteProvider(str(tmp_path / "sessions.db")),
    }
    seed = SeedAdapter(makers[request.param]())
    seed.session_init(3600, "")
    yield seed
    seed.provider.close()


def stored(seed: SeedAdapter, sid: str, **values: str) -> str:
    """A session holding ``values``, saved; returns its ID."""
    store = seed.session_read(sid)
    for key, value in values.items():
        store.set(key, value)
    store.session_release([])
    return store.session_id()


def test_adapter_satisfies_the_seed_interface(adapter: SeedAdapter) -> None:
    assert isinstance(adapter, websession.Provider)
    assert isinstance(adapter.session_read(SID), websession.Store)


def test_session_exist(adapter: SeedAdapter) -> None:
    sid = stored(adapter, SID, user="ann")
    assert adapter.session_exist(sid)
    assert not adapter.session_exist(SID_NEW)


@pytest.mark.parametrize("bad", ["", "short", "../../etc/passwd", "A" * 32])
def test_session_exist_refuses_malformed_ids(adapter: SeedAdapter, bad: str) -> None:
    assert not adapter.session_exist(bad)


def test_session_read_set_get_delete_flush(adapter: SeedAdapter) -> None:
    sid = stored(adapter, SID, a="1", b="2")
    store = adapter.session_read(sid)
    assert store.get("a") == "1"
    store.delete("a")
    assert store.get("a") is None
    store.session_release([])
    again = adapter.session_read(sid)
    assert again.get("a") is None and again.get("b") == "2"
    again.flush()
    again.session_release([])
    assert adapter.session_read(sid).get("b") is None


def test_session_read_never_adopts_an_unknown_id(adapter: SeedAdapter) -> None:
    store = adapter.session_read(SID)
    store.set("k", "v")
    store.session_release([])
    assert store.session_id() != SID


def test_session_all_counts_stored_sessions(adapter: SeedAdapter) -> None:
    for _ in range(5):
        stored(adapter, SID, k="v")
    assert adapter.session_all() == 5


def test_session_regenerate_moves_at_once(adapter: SeedAdapter) -> None:
    sid = stored(adapter, SID, user="ann")
    moved = adapter.session_regenerate(sid, SID_NEW)
    # Without releasing the returned store: the old ID is dead before the call returns
    # (session fixation), and the data already lives under the new one.
    assert not adapter.session_exist(sid)
    assert adapter.session_exist(SID_NEW)
    assert moved.session_id() == SID_NEW
    assert moved.get("user") == "ann"
    assert adapter.session_read(SID_NEW).get("user") == "ann"
    assert adapter.session_all() == 1


def test_session_regenerate_of_an_unknown_id_is_an_empty_session(adapter: SeedAdapter) -> None:
    fresh = adapter.session_regenerate(SID, SID_NEW)
    assert fresh.session_id() == SID_NEW
    assert fresh.get("user") is None
    fresh.set("user", "bob")
    fresh.session_release([])
    assert adapter.session_read(SID_NEW).get("user") == "bob"


def test_session_regenerate_refuses_a_malformed_new_id(adapter: SeedAdapter) -> None:
    sid = stored(adapter, SID, user="ann")
    with pytest.raises(ValueError, match="shape"):
        adapter.session_regenerate(sid, "../x")
    assert adapter.session_exist(sid)


def test_session_destroy_acts_at_once(adapter: SeedAdapter) -> None:
    sid = stored(adapter, SID, user="ann")
    adapter.session_destroy(sid)
    assert not adapter.session_exist(sid)
    assert adapter.session_all() == 0


def test_session_gc_removes_expired_sessions(tmp_path: Path) -> None:
    seed = SeedAdapter(FileProvider(tmp_path / "sessions"))
    seed.session_init(1, "")
    for _ in range(3):
        stored(seed, SID, k="v")
    assert seed.session_all() == 3
    time.sleep(1.2)
    seed.session_gc()
    assert seed.session_all() == 0


def test_an_adapted_provider_runs_under_a_manager_as_a_seed_provider() -> None:
    manager = Manager(SeedAdapter(MemoryProvider()))
    environ = {"REQUEST_METHOD": "GET", "wsgi.url_scheme": "http"}
    session = manager.session_start(environ)
    session["user"] = "ann"
    headers: list[tuple[str, str]] = []
    session.session_release(headers)
    cookie = next(v for k, v in headers if k == "Set-Cookie").split(";")[0]
    again = manager.session_start({**environ, "HTTP_COOKIE": cookie})
    assert again["user"] == "ann"
    assert manager.get_active_session() == 1
