"""The session API frameworks build on: per-session lifetime, invalidate, forced saves,
accessed/modified, the rules for blocking calls, and what session_start accepts."""

from __future__ import annotations

import asyncio
import time
from collections import UserDict
from typing import Any

import pytest

from websession import Manager, SessionModeError, SessionStore
from websession.providers.memory import MemoryProvider

KEY = "k" * 32


class SlowProvider(MemoryProvider):
    """A memory provider that says it blocks, as network providers do."""

    blocking = True


def request(manager: Manager, cookie: str | None = None) -> SessionStore:
    environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "wsgi.url_scheme": "http"}
    if cookie:
        environ["HTTP_COOKIE"] = f"{manager.config.cookie_name}={cookie}"
    return manager.session_start(environ)


def release(session: SessionStore) -> dict[str, str]:
    headers: list[tuple[str, str]] = []
    session.session_release(headers)
    return dict(headers)


def cookie_of(headers: dict[str, str]) -> str:
    return headers["Set-Cookie"].split(";", 1)[0].split("=", 1)[1]


def attributes(set_cookie: str) -> dict[str, str]:
    parts = [p.strip() for p in set_cookie.split(";")[1:]]
    return {k.lower(): v for k, _, v in (p.partition("=") for p in parts)}


def test_accessed_tells_whether_the_application_used_the_session() -> None:
    manager = Manager("memory")
    session = request(manager)
    assert not session.accessed
    session.get("x")
    assert session.accessed


def test_invalidate_ends_the_session_and_continues_under_a_new_id() -> None:
    manager = Manager("memory")
    first = request(manager)
    first["user"] = "ann"
    old = cookie_of(release(first))
    session = request(manager, old)
    session.invalidate()
    assert dict(session) == {}
    headers = release(session)
    assert "Max-Age=0" in headers["Set-Cookie"]  # nothing new to keep: the cookie goes
    assert dict(request(manager, old)) == {}  # the old ID is dead
    again = request(manager, old)
    again.invalidate()
    again["flash"] = "bye"
    new = cookie_of(release(again))
    assert new != old
    assert request(manager, new)["flash"] == "bye"


async def test_ainvalidate() -> None:
    manager = Manager("memory")
    first = request(manager)
    first["user"] = "ann"
    old = cookie_of(release(first))
    session = request(manager, old)
    await session.ainvalidate()
    assert request(manager, old).get("user") is None


def test_own_idle_timeout_is_enforced_by_the_server_and_carried_by_the_record() -> None:
    manager = Manager("memory", maxLifetime=3600)
    session = request(manager)
    session["user"] = "ann"
    session.set_lifetime(idle=1)
    sid = cookie_of(release(session))
    later = request(manager, sid)
    assert later["user"] == "ann"
    assert later.idle_timeout == 1  # another request reads the lifetime from the record
    assert later.expires_at - time.time() <= 1.0
    time.sleep(1.3)
    assert request(manager, sid).get("user") is None


def test_own_absolute_lifetime_is_enforced() -> None:
    manager = Manager("memory", maxLifetime=3600)
    session = request(manager)
    session["user"] = "ann"
    session.set_lifetime(absolute=1)
    sid = cookie_of(release(session))
    assert request(manager, sid).absolute_lifetime == 1
    time.sleep(1.3)
    assert request(manager, sid).get("user") is None


def test_persistent_cookie_gets_a_max_age_matching_the_server_deadline() -> None:
    manager = Manager("memory", maxLifetime=600)
    session = request(manager)
    session["user"] = "ann"
    session.set_lifetime(idle=300, persistent=True)
    headers = release(session)
    max_age = int(attributes(headers["Set-Cookie"])["max-age"])
    assert 295 <= max_age <= 300


def test_browser_session_cookie_overrides_the_managers_cookie_lifetime() -> None:
    manager = Manager("memory", cookieLifeTime=3600)
    session = request(manager)
    session["user"] = "ann"
    session.set_lifetime(persistent=False)
    headers = release(session)
    assert "max-age" not in attributes(headers["Set-Cookie"])
    assert request(manager, cookie_of(headers)).persistent is False


def test_lifetime_is_kept_across_regenerate() -> None:
    manager = Manager("memory")
    session = request(manager)
    session["user"] = "ann"
    session.set_lifetime(idle=120, persistent=True)
    sid = cookie_of(release(session))
    again = request(manager, sid)
    again.regenerate_id()
    new = cookie_of(release(again))
    assert new != sid
    moved = request(manager, new)
    assert moved.idle_timeout == 120 and moved.persistent is True


def test_setting_a_lifetime_alone_is_saved() -> None:
    manager = Manager("memory")
    session = request(manager)
    session["user"] = "ann"
    sid = cookie_of(release(session))
    again = request(manager, sid)
    again.set_lifetime(idle=60)
    assert again.modified
    release(again)
    assert request(manager, sid).idle_timeout == 60


@pytest.mark.parametrize("bad", [0, -1, float("inf"), float("nan"), True, "60"])
def test_lifetime_must_be_a_positive_number(bad: Any) -> None:
    session = request(Manager("memory"))
    with pytest.raises(ValueError, match="positive number"):
        session.set_lifetime(idle=bad)


def test_sealed_sessions_carry_their_own_lifetime_too() -> None:
    manager = Manager("cookie", providerConfig={"securityKey": "s" * 32})
    session = request(manager)
    session["user"] = "ann"
    session.set_lifetime(idle=1)
    token = cookie_of(release(session))
    assert request(manager, token)["user"] == "ann"
    time.sleep(1.3)
    assert request(manager, token).get("user") is None


def test_mark_modified_forces_a_write_without_losing_concurrent_changes() -> None:
    manager = Manager("memory")
    session = request(manager)
    session["a"] = 1
    sid = cookie_of(release(session))
    mine = request(manager, sid)
    version = mine.version
    other = request(manager, sid)
    other["b"] = 2
    release(other)
    mine.mark_modified()
    release(mine)
    after = request(manager, sid)
    assert after.version == version + 2
    assert dict(after) == {"a": 1, "b": 2}


async def test_blocking_calls_on_the_event_loop_thread_name_their_twin() -> None:
    manager = Manager(SlowProvider())

    def make() -> str:
        session = request(manager)
        session["user"] = "ann"
        return cookie_of(release(session))

    sid = await asyncio.to_thread(make)
    session = request(manager, sid)
    with pytest.raises(SessionModeError, match=r"await session\.aload\(\)"):
        session.get("user")
    await session.aload()
    with pytest.raises(SessionModeError, match=r"await session\.adestroy\(\)"):
        session.destroy()
    with pytest.raises(SessionModeError, match=r"await manager\.aget_active_session\(\)"):
        manager.get_active_session()
    with pytest.raises(SessionModeError, match=r"await manager\.agc\(\)"):
        manager.gc()
    assert await manager.aget_active_session() == 1


async def test_blocking_calls_work_from_a_worker_thread_while_a_loop_runs() -> None:
    manager = Manager(SlowProvider())

    def threadpool_endpoint(cookie: str | None) -> str:
        session = request(manager, cookie)
        session["n"] = session.get("n", 0) + 1
        headers = release(session)
        return cookie_of(headers) if cookie is None else cookie

    sid = await asyncio.to_thread(threadpool_endpoint, None)
    await asyncio.to_thread(threadpool_endpoint, sid)
    scope_session = manager.session_start(
        {"type": "http", "headers": [(b"cookie", f"gosessionid={sid}".encode())]})
    assert await asyncio.to_thread(lambda: scope_session["n"]) == 2


class NotARequest(UserDict[str, Any]):
    """A mapping that is neither a WSGI environ nor an ASGI scope (as an aiohttp Request)."""


@pytest.mark.parametrize("thing", [object(), NotARequest({"x": 1}), 42, "environ"])
def test_session_start_refuses_what_it_does_not_understand(thing: Any) -> None:
    with pytest.raises(TypeError, match="WSGI environ or an ASGI scope"):
        Manager("memory").session_start(thing)


def test_session_start_takes_framework_requests_carrying_one() -> None:
    class Request:
        def __init__(self) -> None:
            self.environ = {"REQUEST_METHOD": "GET"}

    manager = Manager("memory")
    req = Request()
    assert manager.session_start(req) is manager.session_start(req.environ)


def test_managers_hand_out_the_session_class_they_are_given() -> None:
    class FrameworkSession(SessionStore):
        __slots__ = ()

    manager = Manager("memory", session_class=FrameworkSession)
    assert type(request(manager)) is FrameworkSession
    sealed = Manager("cookie", {"providerConfig": {"securityKey": "s" * 32}},
                     session_class=FrameworkSession)
    assert type(request(sealed)) is FrameworkSession


def test_mark_modified_stores_even_an_empty_new_session() -> None:
    manager = Manager("memory")
    session = request(manager)
    session.mark_modified()
    sid = cookie_of(release(session))
    assert manager.get_active_session() == 1
    assert not request(manager, sid).is_new


def test_a_concurrent_save_keeps_the_lifetime_another_request_set() -> None:
    manager = Manager("memory")
    first = request(manager)
    first["a"] = 1
    sid = cookie_of(release(first))
    slow = request(manager, sid)
    slow["b"] = 2  # loaded before the lifetime changed
    fast = request(manager, sid)
    fast.set_lifetime(idle=120, persistent=True)
    release(fast)
    release(slow)  # conflicts, re-applies its own change over the newer record
    after = request(manager, sid)
    assert dict(after) == {"a": 1, "b": 2}
    assert after.idle_timeout == 120 and after.persistent is True


def test_get_session_store_without_an_id_is_a_fresh_session() -> None:
    manager = Manager("memory")
    session = manager.get_session_store(None)
    assert session.is_new and dict(session) == {}


def test_dropping_persistence_resends_the_cookie_without_max_age() -> None:
    manager = Manager("memory")
    session = request(manager)
    session["user"] = "ann"
    session.set_lifetime(persistent=True)
    sid = cookie_of(release(session))
    again = request(manager, sid)
    again.set_lifetime(persistent=False)
    headers = release(again)
    assert cookie_of(headers) == sid
    assert "max-age" not in attributes(headers["Set-Cookie"])


def test_own_lifetime_is_what_set_lifetime_set_and_survives_the_next_request() -> None:
    manager = Manager("memory")
    session = request(manager)
    session["x"] = 1
    managers = session.own_lifetime
    session.set_lifetime(600, persistent=True)
    assert managers == (None, None, None)  # before: the manager's, all three
    assert session.own_lifetime == (600.0, None, True)
    sid = cookie_of(release(session))
    again = request(manager, sid)
    assert again.own_lifetime == (600.0, None, True)
    assert again.idle_timeout == 600.0  # the value in force
    assert again.absolute_lifetime == manager.config.absolute_lifetime


def test_pending_says_whether_release_has_work_without_doing_it() -> None:
    manager = Manager("memory", {"maxLifetime": 100})
    untouched = request(manager)
    assert not untouched.pending  # never used: nothing to save
    session = request(manager)
    session["x"] = 1
    assert session.pending
    sid = cookie_of(release(session))
    assert not session.pending  # saved: the deadline was just set

    reader = request(manager, sid)
    reader.get("x")
    assert not reader.pending  # read-only, and the deadline is fresh
    reader["cart"] = []
    assert reader.pending
    release(reader)
    mutator = request(manager, sid)
    mutator["cart"].append(1)  # an in-place change counts
    assert mutator.pending
    release(mutator)

    later = request(manager, sid)
    later.load()
    assert not later.pending
    later.regenerate_id()
    assert later.pending  # the old ID must go
    release(later)
    assert not later.pending


def test_pending_sees_a_refresh_due_on_a_read_only_request() -> None:
    manager = Manager("memory", {"maxLifetime": 1})  # a refresh is due after 0.1 s
    session = request(manager)
    session["x"] = 1
    sid = cookie_of(release(session))
    fresh = request(manager, sid)
    fresh.load()
    assert not fresh.pending  # the deadline was just set
    time.sleep(0.3)
    due = request(manager, sid)
    due.load()
    assert due.pending
    release(due)
    assert not due.pending


def test_current_id_reads_no_store_until_the_session_is_used() -> None:
    manager = Manager("memory")
    sent = "0" * 32  # well-formed, and unknown to the store
    unknown = request(manager, sent)
    assert unknown.current_id == sent and not unknown.loaded  # as sent, unchecked
    unknown.load()
    assert unknown.current_id != sent  # a fresh ID
    assert unknown.current_id == unknown.session_id()


def test_abandon_forgets_the_session_without_touching_the_store() -> None:
    manager = Manager("memory")
    session = request(manager)
    session["user"] = "ann"
    sid = cookie_of(release(session))
    same = request(manager, sid)
    assert same["user"] == "ann"
    same.abandon()
    assert dict(same) == {} and same.current_id != sid
    assert request(manager, sid)["user"] == "ann"  # the stored session is untouched
