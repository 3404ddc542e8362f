"""Manager behaviour that does not depend on the provider: cookies, ID sources, modes, GC."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from websession import Manager, SessionModeError, SessionStore
from websession.providers.base import Record
from websession.providers.memory import MemoryProvider


def environ(cookie: str | None = None, **extra: Any) -> dict[str, Any]:
    env: dict[str, Any] = {"REQUEST_METHOD": "GET", "wsgi.url_scheme": "http", **extra}
    if cookie:
        env["HTTP_COOKIE"] = cookie
    return env


def scope_with(sid: str) -> dict[str, Any]:
    return {"type": "http", "headers": [(b"cookie", f"gosessionid={sid}".encode())]}


def release(session: SessionStore) -> dict[str, list[str]]:
    headers: list[tuple[str, str]] = []
    session.session_release(headers)
    out: dict[str, list[str]] = {}
    for key, value in headers:
        out.setdefault(key, []).append(value)
    return out


def new_session(manager: Manager, **env: Any) -> tuple[str, dict[str, list[str]]]:
    session = manager.session_start(environ(**env))
    session["user"] = "ann"
    return session.session_id(), release(session)


def test_cookie_defaults() -> None:
    sid, headers = new_session(Manager("memory"))
    assert headers["Set-Cookie"] == [f"gosessionid={sid}; Path=/; HttpOnly; SameSite=Lax"]
    assert headers["Cache-Control"] == ["no-store"]
    assert headers["Vary"] == ["Cookie"]


def test_https_requests_get_secure_cookies_automatically() -> None:
    _, headers = new_session(Manager("memory"), **{"wsgi.url_scheme": "https"})
    assert "; Secure" in headers["Set-Cookie"][0]
    scope_session = Manager("memory").session_start(
        {"type": "http", "scheme": "https", "headers": []})
    scope_session["x"] = 1
    assert "; Secure" in release(scope_session)["Set-Cookie"][0]


def test_cookie_attributes_follow_config() -> None:
    manager = Manager("memory", {
        "cookieName": "__Host-sid", "secure": True, "cookieLifeTime": 600,
        "disableHTTPOnly": True, "cookieSameSite": 3,
    })
    sid, headers = new_session(manager)
    cookie = headers["Set-Cookie"][0]
    assert cookie.startswith(f"__Host-sid={sid}; Max-Age=600; Expires=")
    assert cookie.endswith("; Path=/; Secure; SameSite=Strict")
    assert "HttpOnly" not in cookie


def test_domain_is_kept_after_regenerating() -> None:
    manager = Manager("memory", domain="example.com", secure=True, cookieSameSite="strict")
    sid, _ = new_session(manager)
    session = manager.session_start(environ(f"gosessionid={sid}"))
    new = session.regenerate_id()
    cookie = release(session)["Set-Cookie"][0]
    assert cookie.startswith(f"gosessionid={new};")
    for attribute in ("Domain=example.com", "Secure", "HttpOnly", "SameSite=Strict"):
        assert attribute in cookie


def test_persistent_cookie_slides_with_each_write() -> None:
    manager = Manager("memory", cookieLifeTime=600)
    sid, _ = new_session(manager)
    session = manager.session_start(environ(f"gosessionid={sid}"))
    session["n"] = 1
    assert "Max-Age=600" in release(session)["Set-Cookie"][0]


def test_enable_set_cookie_false_sends_no_cookie() -> None:
    _, headers = new_session(Manager("memory", '{"enableSetCookie": false}'))
    assert "Set-Cookie" not in headers


def test_session_id_in_http_header() -> None:
    manager = Manager("memory", {"EnableSidInHTTPHeader": True,
                                 "SessionNameInHTTPHeader": "Beegosessionid"})
    sid, headers = new_session(manager)
    assert headers["Beegosessionid"] == [sid]
    again = manager.session_start(environ(HTTP_BEEGOSESSIONID=sid))
    assert again["user"] == "ann"
    scope = {"type": "http", "headers": [(b"beegosessionid", sid.encode())]}
    assert manager.session_start(scope)["user"] == "ann"


def test_session_id_in_query_only_when_enabled() -> None:
    off = Manager("memory")
    sid, _ = new_session(off)
    assert off.session_start(environ(QUERY_STRING=f"gosessionid={sid}")).get("user") is None
    on = Manager("memory", EnableSidInURLQuery=True)
    sid, _ = new_session(on)
    assert on.session_start(environ(QUERY_STRING=f"a=1&gosessionid={sid}"))["user"] == "ann"


def test_cookie_wins_over_other_sources() -> None:
    manager = Manager("memory", EnableSidInURLQuery=True)
    sid, _ = new_session(manager)
    other, _ = new_session(manager)
    request = environ(f"gosessionid={sid}", QUERY_STRING=f"gosessionid={other}")
    session = manager.session_start(request)
    assert session.session_id() == sid


def test_session_start_returns_the_same_object_per_request() -> None:
    manager = Manager("memory")
    env = environ()
    assert manager.session_start(env) is manager.session_start(env)
    assert Manager("memory").session_start(env) is not manager.session_start(env)


def test_framework_request_objects_are_accepted() -> None:
    class FlaskLike:
        def __init__(self) -> None:
            self.environ = environ()

    request = FlaskLike()
    assert Manager("memory").session_start(request) is request.environ["websession.session"]
    with pytest.raises(TypeError, match="WSGI environ"):
        Manager("memory").session_start(object())


def test_seed_style_manager_calls() -> None:
    manager = Manager("memory", '{"cookieName":"gosessionid","gclifetime":3600}')
    sid, _ = new_session(manager)
    env = environ(f"gosessionid={sid}")
    session = manager.session_regenerate_id(env)
    assert session.session_id() != sid and session["user"] == "ann"
    release(session)
    assert manager.get_active_session() == 1
    env = environ(f"gosessionid={session.session_id()}")
    manager.session_destroy(env)
    assert "Max-Age=0" in release(manager.session_start(env))["Set-Cookie"][0]
    assert manager.get_active_session() == 0


def test_get_session_store_by_id() -> None:
    manager = Manager("memory")
    sid, _ = new_session(manager)
    assert manager.get_session_store(sid)["user"] == "ann"
    assert manager.get_session_store("nonsense").session_id() != "nonsense"


class SlowProvider(MemoryProvider):
    """A memory provider that claims to block, as network providers do."""

    blocking = True


async def test_blocking_provider_in_async_code_names_the_async_twin() -> None:
    manager = Manager(SlowProvider())
    sid, _ = await asyncio.to_thread(new_session, manager)
    session = manager.session_start(scope_with(sid))
    with pytest.raises(SessionModeError, match=r"await session\.aload\(\)"):
        session.get("user")
    await session.aload()
    assert session["user"] == "ann"
    session["n"] = 1
    with pytest.raises(SessionModeError, match=r"asession_release"):
        session.session_release([])
    await session.asession_release([])
    assert await asyncio.to_thread(lambda: manager.get_session_store(sid)["n"]) == 1


async def test_async_twins_of_manager_calls() -> None:
    manager = Manager(SlowProvider())
    sid, _ = await asyncio.to_thread(new_session, manager)
    scope = scope_with(sid)
    session = await manager.asession_regenerate_id(scope)
    await session.asession_release([])
    assert await manager.aget_active_session() == 1
    scope = scope_with(session.session_id())
    await manager.asession_destroy(scope)
    assert await manager.aget_active_session() == 0
    assert await manager.agc() == 0


def test_background_gc_runs_and_stops() -> None:
    manager = Manager("memory", gclifetime=1, maxLifetime=1)
    assert isinstance(manager.provider, MemoryProvider)
    for _ in range(3):
        new_session(manager)
    assert len(manager.provider._records) == 3
    manager.start_gc()
    manager.start_gc()  # idempotent
    try:
        deadline = time.time() + 5
        while manager.provider._records and time.time() < deadline:
            time.sleep(0.1)
        assert manager.provider._records == {}
        assert manager.gc_running
    finally:
        manager.stop_gc()
    assert not manager.gc_running


class FlakyProvider(MemoryProvider):
    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.gc_calls = 0

    def read(self, sid: str) -> Record | None:
        if self.down:
            raise ConnectionRefusedError("store down")
        return super().read(sid)

    def gc(self) -> int:
        self.gc_calls += 1
        raise ConnectionResetError("store down")


def test_store_outage_raises_one_exception_type() -> None:
    import websession

    provider = FlakyProvider()
    manager = Manager(provider)
    sid, _ = new_session(manager)
    provider.down = True
    session = manager.session_start(environ(f"gosessionid={sid}"))
    with pytest.raises(websession.StoreUnavailableError) as info:
        session.get("user")
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    provider.down = False
    assert manager.session_start(environ(f"gosessionid={sid}"))["user"] == "ann"


def test_background_gc_survives_failing_passes(caplog: pytest.LogCaptureFixture) -> None:
    provider = FlakyProvider()
    manager = Manager(provider, gclifetime=1)
    manager.start_gc()
    try:
        deadline = time.time() + 5
        while provider.gc_calls < 2 and time.time() < deadline:
            time.sleep(0.1)
    finally:
        manager.stop_gc()
    assert provider.gc_calls >= 2
    assert "session GC pass failed" in caplog.text


def test_manager_accepts_provider_classes_and_instances() -> None:
    assert isinstance(Manager(MemoryProvider).provider, MemoryProvider)
    instance = MemoryProvider()
    assert Manager(instance).provider is instance

    class NotAProvider:
        pass

    from websession import ConfigurationError

    with pytest.raises(ConfigurationError, match="not a session provider"):
        Manager(NotAProvider())  # type: ignore[arg-type]


def test_manager_as_context_manager_stops_gc() -> None:
    with Manager("memory") as manager:
        manager.start_gc()
        assert manager.gc_running
    assert not manager.gc_running


async def test_async_context_manager() -> None:
    async with Manager("memory") as manager:
        manager.start_gc()
    assert not manager.gc_running
    await asyncio.sleep(0)


def test_unknown_or_malformed_cookie_is_expired() -> None:
    manager = Manager("memory")
    unknown = manager.engine.ids.new()
    session = manager.session_start(environ(f"gosessionid={unknown}"))
    assert session.get("user") is None
    assert "Max-Age=0" in release(session)["Set-Cookie"][0]
    malformed = manager.session_start(environ("gosessionid=../../etc/passwd"))
    assert "Max-Age=0" in release(malformed)["Set-Cookie"][0]


def test_cookie_responses_are_never_cacheable() -> None:
    session = Manager("memory").session_start(environ())
    session["user"] = "ann"
    headers = [("Cache-Control", "public, max-age=600"), ("Content-Type", "text/html")]
    session.session_release(headers)
    assert [v for k, v in headers if k.lower() == "cache-control"] == ["no-store"]
    assert ("Content-Type", "text/html") in headers
