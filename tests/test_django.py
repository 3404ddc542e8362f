"""websession as Django's session engine, through Django's own test Client and its session
API: settings, Django's meanings of every call, django.contrib.auth and messages, the
async API, and concurrent requests on one session (the stores of ``STORES``)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.sessions.backends.base import (  # type: ignore[import-untyped]
    CreateError,
    UpdateError,
)
from django.core.exceptions import ImproperlyConfigured  # type: ignore[import-untyped]
from django.core.management import call_command  # type: ignore[import-untyped]
from django.test import AsyncClient, Client, override_settings  # type: ignore[import-untyped]
from django.utils import timezone  # type: ignore[import-untyped]
from tests.django_site import PASSWORD, STORES, configure, create_user, store

from websession import ConfigurationError, Manager, SessionModeError
from websession.django import (
    BackingSession,
    SessionStore,
    aclose_manager,
    close_manager,
    get_manager,
    manager_config,
)
from websession.providers.memory import MemoryProvider
from websession.testing import SpyProvider


@pytest.fixture(scope="module", autouse=True)
def _site() -> None:
    configure()


@pytest.fixture
def memory() -> Iterator[Manager]:
    """A fresh memory store for this test (the manager is rebuilt when settings change)."""
    with override_settings(WEBSESSION={"provider": "memory"}):
        yield get_manager()


@pytest.fixture(params=STORES)
def stored(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Each real store in turn; yields its name."""
    with store(request.param, tmp_path) as conf, override_settings(WEBSESSION=conf):
        yield request.param


def _cookie(response: Any, name: str = "sessionid") -> str:
    return str(response.cookies[name].value)


def _with_cookie(key: str) -> Client:
    client = Client()
    client.cookies["sessionid"] = key
    return client


# -- settings -------------------------------------------------------------------------------


def test_the_cookie_is_djangos_and_carries_websessions_id(memory: Manager) -> None:
    response = Client().get("/set/colour?value=blue")
    assert list(response.cookies) == ["sessionid"]  # one cookie: websession adds none
    morsel = response.cookies["sessionid"]
    assert morsel["max-age"] == 1209600 and morsel["httponly"] and morsel["samesite"] == "Lax"
    stored = memory.get_session_store(morsel.value)
    assert stored["colour"] == "blue" and not stored.is_new


@pytest.fixture
def cookie_settings(memory: Manager) -> Iterator[None]:
    with override_settings(SESSION_COOKIE_NAME="sid", SESSION_COOKIE_AGE=600,
                           SESSION_COOKIE_DOMAIN="example.test", SESSION_COOKIE_SECURE=True,
                           SESSION_COOKIE_SAMESITE="Strict", SESSION_COOKIE_PATH="/app"):
        yield


@pytest.mark.usefixtures("cookie_settings")
def test_djangos_cookie_settings_and_age() -> None:
    config = get_manager().config
    assert (config.cookie_name, config.idle_timeout, config.absolute_lifetime) == (
        "sid", 600, 86400)
    assert (config.domain, config.secure, config.cookie_same_site, config.cookie_path) == (
        "example.test", True, "Strict", "/app")
    session = SessionStore()
    session["a"] = 1
    session.save()
    # The server forgets the session after SESSION_COOKIE_AGE idle seconds.
    assert session.websession.expires_at == pytest.approx(time.time() + 600, abs=5)
    client = Client(HTTP_HOST="example.test")
    morsel = client.get("/set/a", secure=True).cookies["sid"]
    assert (morsel["max-age"], morsel["domain"], morsel["secure"], morsel["samesite"],
            morsel["path"]) == (600, "example.test", True, "Strict", "/app")


def test_expire_at_browser_close(memory: Manager) -> None:
    with override_settings(SESSION_EXPIRE_AT_BROWSER_CLOSE=True):
        morsel = Client().get("/set/a").cookies["sessionid"]
    assert morsel["max-age"] == "" and morsel["expires"] == ""


def test_absolute_lifetime_defaults_to_the_cookie_age_when_longer(memory: Manager) -> None:
    with override_settings(SESSION_COOKIE_AGE=30 * 86400):
        assert get_manager().config.absolute_lifetime == 30 * 86400


def test_websession_config_as_seed_json() -> None:
    config = manager_config('{"gclifetime": 60, "absoluteLifetime": 7200, '
                            '"sessionIDLength": 24}')
    assert (config.gc_lifetime, config.absolute_lifetime, config.session_id_length) == (
        60, 7200, 24)
    assert config.idle_timeout == 1209600 and config.cookie_name == "sessionid"


@pytest.mark.parametrize(("config", "setting"), [
    ({"cookieName": "gosid"}, "SESSION_COOKIE_NAME"),
    ('{"maxLifetime": 60}', "SESSION_COOKIE_AGE"),
    ({"secure": True}, "SESSION_COOKIE_SECURE"),
    ({"cookieLifeTime": 60}, "SESSION_EXPIRE_AT_BROWSER_CLOSE"),
    ({"EnableSidInURLQuery": True}, "reads the session ID from its cookie only"),
])
def test_config_may_not_contradict_django(config: Any, setting: str) -> None:
    with pytest.raises(ConfigurationError, match=setting):
        manager_config(config)


@pytest.mark.parametrize(("websession", "message"), [
    (None, "needs settings.WEBSESSION"),
    ({"config": {}}, "needs a 'provider'"),
    ({"provider": "memory", "cookie": "x"}, "unknown key"),
    ({"manager": "no.such.manager"}, "cannot import 'no.such.manager'"),
    ({"manager": "tests.django_site.PASSWORD"}, "must be a websession.Manager"),
    ({"manager": "plain"}, "session_class=websession.django.BackingSession"),
])
def test_bad_websession_setting(websession: Any, message: str) -> None:
    if websession == {"manager": "plain"}:
        websession = {"manager": Manager("memory")}
    with override_settings(WEBSESSION=websession), pytest.raises(ImproperlyConfigured,
                                                                  match=message):
        SessionStore()


def test_a_manager_of_your_own_is_used_and_left_open() -> None:
    spy = SpyProvider(MemoryProvider())
    manager = Manager(spy, manager_config(), session_class=BackingSession)
    with override_settings(WEBSESSION={"manager": manager}):
        Client().get("/set/a")
        assert get_manager() is manager and spy.counts["create"] == 1
    close_manager()
    session = manager.get_session_store(manager.engine.ids.new())
    assert session.get("a") is None  # still usable: the adapter did not close it
    manager.close()


def test_settings_changes_rebuild_the_manager() -> None:
    with override_settings(WEBSESSION={"provider": "memory"}):
        first = get_manager()
        with override_settings(SESSION_COOKIE_AGE=77):
            assert get_manager() is not first and get_manager().config.idle_timeout == 77


def test_a_missing_websession_setting_is_named() -> None:
    with override_settings(WEBSESSION=None), pytest.raises(ImproperlyConfigured):
        Client().get("/show")


# -- Django's session API, Django's meanings --------------------------------------------------


def test_mapping_api(memory: Manager) -> None:
    session = SessionStore()
    assert session.session_key is None and session.is_empty()
    session["a"] = 1
    assert session["a"] == 1 and "a" in session and session.get("b", 2) == 2
    assert session.setdefault("b", 3) == 3 and session.setdefault("b", 4) == 3
    session.update({"c": [1, 2]})
    assert sorted(session.keys()) == ["a", "b", "c"] and session.has_key("c")
    assert sorted(session.items()) == [("a", 1), ("b", 3), ("c", [1, 2])]
    assert session.pop("a") == 1 and session.pop("a", None) is None
    del session["b"]
    with pytest.raises(KeyError):
        del session["b"]
    with pytest.raises(KeyError):
        session["b"]
    session.set_test_cookie()
    assert session.test_cookie_worked()
    session.delete_test_cookie()
    assert session.session_key is None and not session.is_empty()  # data, no key yet
    session.save()
    key = session.session_key
    assert key and session.exists(key) and not session.exists("0" * 32)
    again = SessionStore(key)
    assert again.load() == {"c": [1, 2]} and again.session_key == key
    again.clear()
    assert list(again.keys()) == [] and again.modified
    again.save()
    assert SessionStore(key).load() == {} and SessionStore(key).exists(key)


def test_only_changed_keys_are_saved_so_concurrent_stores_merge(memory: Manager) -> None:
    first = SessionStore()
    first["shared"] = 0
    first.save()
    key = first.session_key
    a, b = SessionStore(key), SessionStore(key)
    assert a["shared"] == b["shared"] == 0  # both read before either saves
    a["from_a"] = 1
    b["from_b"] = 2
    a.save()
    b.save()
    assert SessionStore(key).load() == {"shared": 0, "from_a": 1, "from_b": 2}


def test_in_place_changes_and_modified_true_are_saved(memory: Manager) -> None:
    session = SessionStore()
    session["cart"] = [1]
    session.save()
    key = session.session_key
    again = SessionStore(key)
    again["cart"].append(2)  # Django needs `modified = True` here; websession sees it
    assert again.modified
    again.save()
    assert SessionStore(key)["cart"] == [1, 2]
    forced = SessionStore(key)
    version = forced.websession.version
    assert not forced.modified
    forced.modified = True
    forced.save()
    assert SessionStore(key).websession.version == version + 1


def test_cycle_key_keeps_data_and_kills_the_old_key_at_once(memory: Manager) -> None:
    session = SessionStore()
    session["a"] = 1
    session.save()
    old = session.session_key
    session.cycle_key()
    new = session.session_key
    assert new and new != old and session["a"] == 1
    assert not session.exists(old) and SessionStore(new).load() == {"a": 1}
    # The middleware sends the new key even when nothing else changed.
    client = _with_cookie(new)
    assert _cookie(client.get("/cycle")) != new
    assert not session.exists(new)


def test_flush_deletes_and_starts_an_empty_session(memory: Manager) -> None:
    session = SessionStore()
    session["a"] = 1
    session.save()
    key = session.session_key
    session.flush()
    assert session.session_key is None and session.is_empty() and session.get("a") is None
    assert not session.exists(key)
    session["b"] = 2
    session.save()
    assert session.session_key not in (None, key)


def test_delete_this_session_or_another(memory: Manager) -> None:
    one, two = SessionStore(), SessionStore()
    for session in (one, two):
        session["a"] = 1
        session.save()
    one.delete(two.session_key)
    assert not one.exists(two.session_key) and one.exists(one.session_key)
    key = one.session_key
    one.delete()
    assert not one.exists(key) and one.session_key is None


def test_create_stores_even_an_empty_session(memory: Manager) -> None:
    session = SessionStore()
    session.create()
    key = session.session_key
    assert key and session.exists(key) and session.modified  # the middleware sends it
    assert SessionStore(key).load() == {} and list(SessionStore(key).keys()) == []
    with pytest.raises(CreateError):
        session.save(must_create=True)
    session["a"] = 1
    session.save()
    session.create()  # Django: the data under a new key, the old record left alone
    assert session.session_key != key and session.exists(key)
    assert SessionStore(session.session_key).load() == {"a": 1}


def test_saving_a_session_deleted_meanwhile_raises_update_error(memory: Manager) -> None:
    session = SessionStore()
    session["a"] = 1
    session.save()
    key = session.session_key
    here, elsewhere = SessionStore(key), SessionStore(key)
    here["b"] = 2
    elsewhere.flush()  # a logout in another tab
    with pytest.raises(UpdateError):
        here.save()
    assert not SessionStore(key).exists(key)  # not brought back


def test_a_dead_key_is_never_adopted(memory: Manager) -> None:
    assert SessionStore("0123456789abcdef0123456789abcdef").session_key is None
    session = SessionStore("0123456789abcdef0123456789abcdef")
    assert session.get("a") is None and session.session_key is None
    response = _with_cookie("0123456789abcdef0123456789abcdef").get("/show")
    assert response.cookies["sessionid"].value == ""  # the middleware drops it


# -- expiry -----------------------------------------------------------------------------------


def test_set_expiry_has_djangos_meanings_and_the_server_enforces_them(memory: Manager) -> None:
    session = SessionStore()
    session["a"] = 1
    session.set_expiry(0)
    assert session.get_expire_at_browser_close() and session.get_expiry_age() == 1209600
    assert session.websession.persistent is False
    session.set_expiry(300)
    assert session.get_expiry_age() == 300 and not session.get_expire_at_browser_close()
    session.save()
    assert session.websession.idle_timeout == 300
    assert session.websession.expires_at == pytest.approx(time.time() + 300, abs=5)
    session.set_expiry(timedelta(hours=1))
    end = timezone.now() + timedelta(hours=1)
    assert abs((session.get_expiry_date() - end).total_seconds()) < 5
    session.save()
    assert session.websession.absolute_expires_at == pytest.approx(end.timestamp(), abs=5)
    session.cycle_key()  # a new key does not move a fixed end
    assert session.websession.absolute_expires_at == pytest.approx(end.timestamp(), abs=5)
    session.set_expiry(30 * 86400)  # remember me: longer than the absolute lifetime
    session.save()
    assert session.websession.absolute_lifetime >= 30 * 86400
    session.set_expiry(None)
    session.save()
    assert session.get_expiry_age() == 1209600 and session.websession.idle_timeout == 1209600
    assert session.websession.persistent is None


def test_a_session_past_its_own_expiry_is_empty(memory: Manager) -> None:
    session = SessionStore()
    session["a"] = 1
    session.set_expiry(1)
    session.save()
    key = session.session_key
    time.sleep(1.5)
    replay = SessionStore(key)
    assert replay.get("a") is None and replay.session_key is None


def test_browser_close_cookie_from_set_expiry_zero(memory: Manager) -> None:
    morsel = Client().get("/expiry/0").cookies["sessionid"]
    assert morsel["max-age"] == "" and morsel.value


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_read_only_requests_resend_the_cookie_when_the_deadline_moves(
        kind: str, tmp_path: Path) -> None:
    with store(kind, tmp_path) as conf, override_settings(WEBSESSION=conf):
        client = Client()
        client.get("/expiry/2")
        resent = []
        for _ in range(4):
            time.sleep(0.5)
            response = client.get("/show")
            if "sessionid" in response.cookies:
                resent.append(response.cookies["sessionid"]["max-age"])
        assert resent and set(resent) == {2}  # Max-Age follows the server's deadline


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_read_only_requests_slide_the_idle_deadline(kind: str, tmp_path: Path) -> None:
    # Django's middleware saves only modified sessions; the adapter reports a due refresh
    # as a modification, so reading keeps a session alive past its idle timeout.
    with store(kind, tmp_path) as conf, override_settings(WEBSESSION=conf):
        client = Client()
        client.get("/expiry/2")
        for _ in range(6):  # 3 s in all, longer than the 2 s idle timeout
            time.sleep(0.5)
            assert client.get("/show").json()["data"].get("expiring") is True
        time.sleep(2.5)
        assert client.get("/show").json()["data"] == {}


def test_a_read_only_request_writes_nothing_until_a_refresh_is_due() -> None:
    spy = SpyProvider(MemoryProvider())
    manager = Manager(spy, manager_config(), session_class=BackingSession)
    with override_settings(WEBSESSION={"manager": manager}):
        client = Client()
        client.get("/set/a")
        before = dict(spy.counts)
        response = client.get("/show")
        assert response.json()["data"] == {"a": "1"} and "sessionid" not in response.cookies
        after = dict(spy.counts)
        assert after.pop("read") == before.pop("read", 0) + 1 and after == before
    manager.close()


def test_save_every_request_resends_the_cookie_without_writing() -> None:
    spy = SpyProvider(MemoryProvider())
    manager = Manager(spy, manager_config(), session_class=BackingSession)
    with override_settings(WEBSESSION={"manager": manager}, SESSION_SAVE_EVERY_REQUEST=True):
        client = Client()
        key = _cookie(client.get("/set/a"))
        writes = spy.counts["create"] + spy.counts["update"] + spy.counts["touch"]
        for path in ("/show", "/messages/read"):  # reads; the second never uses the session
            assert _cookie(client.get(path)) == key
        assert spy.counts["create"] + spy.counts["update"] + spy.counts["touch"] == writes
    manager.close()


def test_a_logout_elsewhere_interrupts_a_saving_request(memory: Manager) -> None:
    key = _cookie(Client().get("/set/a"))
    session = SessionStore(key)
    session["b"] = 2
    _with_cookie(key).get("/logout")
    with pytest.raises(UpdateError):
        session.save()
    # Through the middleware, Django answers 400 (SessionInterrupted), as with its db
    # backend, and the session stays deleted.
    key = _cookie(Client().get("/set/a"))
    assert _with_cookie(key).get("/interrupted").status_code == 400
    assert not SessionStore().exists(key)


def test_clearsessions_runs_the_gc(tmp_path: Path) -> None:
    with store("sqlite", tmp_path) as conf, override_settings(WEBSESSION=conf):
        session = SessionStore()
        session["a"] = 1
        session.set_expiry(1)
        session.save()
        path = conf["config"]["providerConfig"]["path"]

        def rows() -> int:
            with sqlite3.connect(path) as db:
                count: int = db.execute("SELECT count(*) FROM websession_sessions").fetchone()[0]
                return count

        assert rows() == 1
        time.sleep(1.2)
        call_command("clearsessions")
        assert rows() == 0


# -- django.contrib.auth, messages, the test client ----------------------------------------------


def test_login_gives_a_new_key_and_kills_the_old_one(stored: str) -> None:
    create_user("ann")
    client = Client()
    before = _cookie(client.get("/set/cart?value=3"))
    response = client.get("/login?username=ann")
    after = _cookie(response)
    assert after != before and response.json()["key"] == after
    shown = client.get("/show").json()
    assert shown["user"] == "ann" and shown["data"]["cart"] == "3"  # data kept
    assert not SessionStore().exists(before)
    replay = _with_cookie(before).get("/show").json()
    assert replay["user"] == "" and replay["data"] == {}


def test_logout_deletes_the_session_and_the_cookie(memory: Manager) -> None:
    create_user("ann")
    client = Client()
    client.get("/login?username=ann")
    key = _cookie(client.get("/set/a"))
    response = client.get("/logout")
    assert response.cookies["sessionid"].value == ""
    assert not SessionStore().exists(key)


def test_a_password_change_logs_out_the_other_sessions(memory: Manager) -> None:
    create_user("bob")
    here, there = Client(), Client()
    assert here.login(username="bob", password=PASSWORD)
    there.force_login(create_user("bob"))
    assert here.get("/show").json()["user"] == there.get("/show").json()["user"] == "bob"
    key = here.session.session_key
    here.get("/password?password=new%20secret")
    assert here.get("/show").json()["user"] == "bob"  # update_session_auth_hash kept it
    assert here.session.session_key != key  # ... under a new key
    assert there.get("/show").json()["user"] == ""
    create_user("bob").set_password(PASSWORD)


def test_test_client_login_logout_and_session(memory: Manager) -> None:
    user = create_user("cy")
    client = Client()
    first = client.session.session_key
    assert first and client.session.session_key == first  # an empty session is kept
    session = client.session
    session["theme"] = "dark"
    session.save()
    assert client.get("/show").json()["data"] == {"theme": "dark"}
    client.force_login(user)
    shown = client.get("/show").json()
    assert shown["user"] == "cy" and shown["data"]["theme"] == "dark"
    assert client.session["_auth_user_id"] == str(user.pk)
    client.logout()
    assert client.get("/show").json()["user"] == ""


def test_messages_in_the_session(memory: Manager) -> None:
    client = Client()
    client.get("/messages/add?text=saved")
    assert client.get("/messages/read").json() == ["saved"]
    assert client.get("/messages/read").json() == []


# -- async ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "redis"])
def test_async_session_api(kind: str, tmp_path: Path) -> None:
    async def scenario() -> None:
        session = SessionStore()
        await session.aset("a", 1)
        assert await session.aget("a") == 1 and await session.ahas_key("a")
        await session.asave()
        key = session.session_key
        assert key and await session.aexists(key)
        other = SessionStore(key)
        assert await other.aload() == {"a": 1}
        await other.aset_expiry(60)
        assert await other.aget_expiry_age() == 60
        assert not await other.aget_expire_at_browser_close()
        await other.acycle_key()
        assert not await other.aexists(key) and await other.aget("a") == 1
        await other.asave()
        cycled = other.session_key
        assert SessionStore(cycled).websession.loaded is False
        assert (await SessionStore(cycled).aload())["a"] == 1
        assert other.websession.idle_timeout == 60
        await other.aflush()
        assert other.session_key is None and not await other.aexists(cycled)
        created = SessionStore()
        await created.acreate()
        assert await created.aexists(created.session_key)
        await created.adelete()
        assert created.session_key is None
        await SessionStore.aclear_expired()
        if kind == "redis":  # a provider that does I/O: blocking calls are refused here
            with pytest.raises(SessionModeError):
                SessionStore(cycled).get("a")
        await aclose_manager()

    with store(kind, tmp_path) as conf, override_settings(WEBSESSION=conf):
        asyncio.run(scenario())


async def test_async_views_under_asgi(stored: str) -> None:
    # Django's AsyncClient runs the ASGI handler: the stock middleware in its async mode,
    # the view's aget/aset/acycle_key on the event loop with the provider's async twins.
    client = AsyncClient()
    assert (await client.get("/async")).json()["count"] == 1
    key = _cookie(await client.get("/async"))
    response = await client.get("/async?cycle=1")
    assert response.json()["count"] == 3 and _cookie(response) != key
    assert (await client.get("/async")).json()["count"] == 4
    await aclose_manager()  # this loop's connections, before the loop ends


# -- concurrent requests ------------------------------------------------------------------------

REQUESTS = 20


def _burst(key: str) -> dict[str, Any]:
    """``REQUESTS`` concurrent requests on the session ``key``, each setting its own key;
    the session's data afterwards."""
    barrier = threading.Barrier(REQUESTS)
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            client = _with_cookie(key)
            barrier.wait()
            assert client.get(f"/burst/{i}").status_code == 200
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    data: dict[str, Any] = _with_cookie(key).get("/show").json()["data"]
    return data


def test_concurrent_requests_keep_every_key(stored: str) -> None:
    key = _cookie(Client().get("/set/start"))
    data = _burst(key)
    assert sorted(k for k in data if k.startswith("k")) == [f"k{i:02d}" for i in
                                                             range(REQUESTS)]


def test_djangos_cache_backend_loses_them() -> None:
    # The control: the same burst against Django's own cache backend loses updates, so
    # the test above can tell.
    with override_settings(SESSION_ENGINE="django.contrib.sessions.backends.cache"):
        key = _cookie(Client().get("/set/start"))
        kept = [k for k in _burst(key) if k.startswith("k")]
    assert len(kept) < REQUESTS
