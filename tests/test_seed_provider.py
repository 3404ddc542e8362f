"""A provider written the seed's way — its own store and provider classes — registers and
works through the Manager, as beego's README shows for custom providers."""

from __future__ import annotations

import threading
from typing import Any

import pytest

import websession
from websession import Manager


class DictStore:
    """A seed-style Store: the session's values, saved back on release."""

    def __init__(self, provider: DictProvider, sid: str, values: dict[str, Any]) -> None:
        self.provider = provider
        self.sid = sid
        self.values = values

    def set(self, key: str, value: Any) -> None:
        self.values[key] = value

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def delete(self, key: str) -> None:
        self.values.pop(key, None)

    def session_id(self) -> str:
        return self.sid

    def session_release(self, headers: list[tuple[str, str]]) -> None:
        with self.provider.lock:
            self.provider.data[self.sid] = dict(self.values)
            self.provider.releases += 1

    def flush(self) -> None:
        self.values.clear()


class DictProvider:
    """A seed-style Provider keeping sessions in a dict."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.init_args: tuple[int, Any] | None = None
        self.releases = 0
        self.gc_runs = 0

    def session_init(self, max_lifetime: int, config: Any) -> None:
        self.init_args = (max_lifetime, config)

    def session_read(self, sid: str) -> DictStore:
        with self.lock:
            values = self.data.setdefault(sid, {})
        return DictStore(self, sid, dict(values))

    def session_exist(self, sid: str) -> bool:
        return sid in self.data

    def session_regenerate(self, old_sid: str, sid: str) -> DictStore:
        with self.lock:
            self.data[sid] = self.data.pop(old_sid, {})
        return self.session_read(sid)

    def session_destroy(self, sid: str) -> None:
        with self.lock:
            self.data.pop(sid, None)

    def session_all(self) -> int:
        return len(self.data)

    def session_gc(self) -> None:
        self.gc_runs += 1


@pytest.fixture
def provider() -> DictProvider:
    instance = DictProvider()
    websession.register("seed-dict-test", instance, replace=True)
    return instance


def env(cookie: str | None = None) -> dict[str, Any]:
    e: dict[str, Any] = {"REQUEST_METHOD": "GET"}
    if cookie:
        e["HTTP_COOKIE"] = f"gosessionid={cookie}"
    return e


def test_seed_style_provider_satisfies_the_protocols(provider: DictProvider) -> None:
    assert isinstance(provider, websession.Provider)
    assert isinstance(provider.session_read("x"), websession.Store)


def test_seed_style_provider_works_through_the_manager(provider: DictProvider) -> None:
    manager = Manager("seed-dict-test", '{"cookieName":"gosessionid","gclifetime":120,'
                                        '"ProviderConfig":"anything"}')
    assert provider.init_args == (120, "anything")

    session = manager.session_start(env())
    session.set("username", "ann")
    headers: list[tuple[str, str]] = []
    session.session_release(headers)
    sid = session.session_id()
    assert provider.data[sid] == {"username": "ann"}
    assert ("Set-Cookie", f"gosessionid={sid}; Path=/; HttpOnly; SameSite=Lax") in headers

    again = manager.session_start(env(sid))
    assert again.get("username") == "ann" and again["username"] == "ann"
    assert "username" in again
    again.delete("username")
    again["n"] = 1
    again.session_release([])
    assert provider.data[sid] == {"n": 1}
    assert manager.get_active_session() == 1
    manager.gc()
    assert provider.gc_runs == 1


def test_seed_style_provider_never_adopts_unknown_ids(provider: DictProvider) -> None:
    manager = Manager("seed-dict-test")
    forged = "ab" * 16
    session = manager.session_start(env(forged))
    session["x"] = 1
    session.session_release([])
    assert session.session_id() != forged
    assert forged not in provider.data


def test_seed_style_regenerate_and_destroy(provider: DictProvider) -> None:
    manager = Manager("seed-dict-test")
    session = manager.session_start(env())
    session["user"] = "ann"
    session.session_release([])
    old = session.session_id()

    moved = manager.session_regenerate_id(env(old))
    headers: list[tuple[str, str]] = []
    moved.session_release(headers)
    new = moved.session_id()
    assert new != old and old not in provider.data and provider.data[new] == {"user": "ann"}
    assert any(v.startswith(f"gosessionid={new};") for k, v in headers if k == "Set-Cookie")

    request = env(new)
    manager.session_destroy(request)
    headers = []
    manager.session_start(request).session_release(headers)
    assert new not in provider.data
    assert any("Max-Age=0" in v for k, v in headers if k == "Set-Cookie")


async def test_seed_style_provider_from_async_code(provider: DictProvider) -> None:
    manager = Manager("seed-dict-test")
    session = manager.session_start({"type": "http", "headers": []})
    await session.aload()
    session["k"] = "v"
    await session.asession_release([])
    assert provider.data[session.session_id()] == {"k": "v"}


def test_registering_a_name_twice_is_an_error(provider: DictProvider) -> None:
    with pytest.raises(websession.ConfigurationError, match="already registered"):
        websession.register("seed-dict-test", DictProvider())
    assert "seed-dict-test" in websession.registered()


def test_registered_class_gives_each_manager_its_own_instance() -> None:
    websession.register("seed-dict-class", DictProvider, replace=True)
    first, second = Manager("seed-dict-class"), Manager("seed-dict-class")
    assert isinstance(first.provider, DictProvider)
    assert first.provider is not second.provider
