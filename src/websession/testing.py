"""The provider conformance suite, for websession's providers and third-party ones.

Subclass :class:`ProviderConformance` in a pytest module and supply one fixture,
``provider``, that returns a fresh, empty provider::

    from websession.testing import ProviderConformance

    class TestMyProvider(ProviderConformance):
        @pytest.fixture
        def provider(self):
            p = MyProvider(...)
            yield p
            p.close()

Every test runs twice, through the sync API and through the async twins. Requires pytest.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from functools import partial
from typing import Any, TypeVar

import pytest

from ._config import ManagerConfig
from ._manager import Manager
from ._session import SessionStore
from .providers.base import BaseProvider, ClientSideProvider, Page, Record

__all__ = ["Client", "ProviderConformance", "ScanConformance", "SessionConformance",
           "SpyProvider", "SpySealer", "UserConformance"]

T = TypeVar("T")


class _Recorder:
    """The calls a spy saw: (primitive name, session ID or ``None``)."""

    calls: list[tuple[str, str | None]]

    @property
    def counts(self) -> Counter[str]:
        """How often each primitive was called, sync and async together."""
        return Counter(name for name, _ in self.calls)


class SpyProvider(_Recorder, BaseProvider):
    """Wraps a store provider and records every primitive call (name and session ID)."""

    def __init__(self, inner: BaseProvider) -> None:
        self.inner = inner
        self.blocking = inner.blocking
        self.unavailable_errors = inner.unavailable_errors
        self.refreshes_on_read = inner.refreshes_on_read
        self.calls = []

    def configure(self, config: Any) -> None:
        self.inner.configure(config)

    def adjust_config(self, config: ManagerConfig) -> ManagerConfig:
        return self.inner.adjust_config(config)

    def read(self, sid: str) -> Record | None:
        self.calls.append(("read", sid))
        return self.inner.read(sid)

    def create(self, sid: str, record: Record) -> bool:
        self.calls.append(("create", sid))
        return self.inner.create(sid, record)

    def update(self, sid: str, record: Record, expected_version: int) -> bool:
        self.calls.append(("update", sid))
        return self.inner.update(sid, record, expected_version)

    def touch(self, sid: str, expires_at: float) -> bool:
        self.calls.append(("touch", sid))
        return self.inner.touch(sid, expires_at)

    def delete(self, sid: str) -> None:
        self.calls.append(("delete", sid))
        self.inner.delete(sid)

    def count(self) -> int:
        self.calls.append(("count", None))
        return self.inner.count()

    def gc(self) -> int:
        self.calls.append(("gc", None))
        return self.inner.gc()

    def scan(self, cursor: str | None, batch: int) -> Page:
        self.calls.append(("scan", cursor))
        return self.inner.scan(cursor, batch)

    def ascan(self, cursor: str | None, batch: int) -> Awaitable[Page]:
        self.calls.append(("scan", cursor))
        return self.inner.ascan(cursor, batch)

    @property
    def can_scan(self) -> bool:
        return self.inner.can_scan

    def gc_ids(self) -> list[str]:
        self.calls.append(("gc", None))
        return self.inner.gc_ids()

    def agc_ids(self) -> Awaitable[list[str]]:
        self.calls.append(("gc", None))
        return self.inner.agc_ids()

    @property
    def reports_expired(self) -> bool:
        return self.inner.reports_expired

    def bind(self, sid: str, user: str | None, cap: int) -> list[str]:
        self.calls.append(("bind", sid))
        return self.inner.bind(sid, user, cap)

    def abind(self, sid: str, user: str | None, cap: int) -> Awaitable[list[str]]:
        self.calls.append(("bind", sid))
        return self.inner.abind(sid, user, cap)

    def sessions_of(self, user: str) -> list[tuple[str, Record]]:
        self.calls.append(("sessions_of", None))
        return self.inner.sessions_of(user)

    def asessions_of(self, user: str) -> Awaitable[list[tuple[str, Record]]]:
        self.calls.append(("sessions_of", None))
        return self.inner.asessions_of(user)

    def revoke_user(self, user: str, keep: str | None) -> list[str]:
        self.calls.append(("revoke_user", keep))
        return self.inner.revoke_user(user, keep)

    def arevoke_user(self, user: str, keep: str | None) -> Awaitable[list[str]]:
        self.calls.append(("revoke_user", keep))
        return self.inner.arevoke_user(user, keep)

    @property
    def can_bind(self) -> bool:
        return self.inner.can_bind

    def aread(self, sid: str) -> Awaitable[Record | None]:
        self.calls.append(("read", sid))
        return self.inner.aread(sid)

    def acreate(self, sid: str, record: Record) -> Awaitable[bool]:
        self.calls.append(("create", sid))
        return self.inner.acreate(sid, record)

    def aupdate(self, sid: str, record: Record, expected_version: int) -> Awaitable[bool]:
        self.calls.append(("update", sid))
        return self.inner.aupdate(sid, record, expected_version)

    def atouch(self, sid: str, expires_at: float) -> Awaitable[bool]:
        self.calls.append(("touch", sid))
        return self.inner.atouch(sid, expires_at)

    def adelete(self, sid: str) -> Awaitable[None]:
        self.calls.append(("delete", sid))
        return self.inner.adelete(sid)

    def acount(self) -> Awaitable[int]:
        self.calls.append(("count", None))
        return self.inner.acount()

    def agc(self) -> Awaitable[int]:
        self.calls.append(("gc", None))
        return self.inner.agc()

    def close(self) -> None:
        self.inner.close()


class SpySealer(_Recorder, ClientSideProvider):
    """Wraps a client-side provider and records each opening of a sealed value as a
    ``read`` (so the conformance suite counts store traffic the same way)."""

    def __init__(self, inner: ClientSideProvider) -> None:
        self.inner = inner
        self.calls = []

    def configure(self, config: Any) -> None:
        self.inner.configure(config)

    def adjust_config(self, config: ManagerConfig) -> ManagerConfig:
        return self.inner.adjust_config(config)

    def seal(self, record: Record) -> str:
        return self.inner.seal(record)

    def unseal(self, token: str) -> Record | None:
        self.calls.append(("read", token))
        return self.inner.unseal(token)

    def valid_token(self, token: str) -> bool:
        return self.inner.valid_token(token)

    def close(self) -> None:
        self.inner.close()


#: A spy over either kind of provider.
Spy = SpyProvider | SpySealer


class Client:
    """A browser talking to a manager: keeps the cookie, runs each step in one mode.

    In ``"sync"`` mode it passes WSGI environs and calls the blocking methods; in
    ``"async"`` mode it passes ASGI scopes and awaits the ``a``-prefixed twins on
    ``runner``'s event loop.
    """

    def __init__(self, manager: Manager, mode: str, runner: asyncio.Runner | None,
                 cookie: str | None = None) -> None:
        self.manager = manager
        self.mode = mode
        self.runner = runner
        self.cookie = cookie
        self.headers: list[tuple[str, str]] = []

    def call(self, sync: Callable[[], T], async_: Callable[[], Awaitable[T]]) -> T:
        """Run ``sync()`` in sync mode, or ``await async_()`` in async mode."""
        if self.mode == "sync":
            return sync()
        assert self.runner is not None
        return self.runner.run(_await(async_()))

    def request(self) -> dict[str, Any]:
        """A fresh WSGI environ or ASGI scope carrying the client's cookie."""
        cookie = f"{self.manager.config.cookie_name}={self.cookie}" if self.cookie else None
        if self.mode == "sync":
            environ: dict[str, Any] = {"REQUEST_METHOD": "GET", "wsgi.url_scheme": "http"}
            if cookie:
                environ["HTTP_COOKIE"] = cookie
            return environ
        headers = [(b"cookie", cookie.encode())] if cookie else []
        return {"type": "http", "scheme": "http", "headers": headers, "query_string": b""}

    def begin(self) -> SessionStore:
        """Start a request: the session, not yet loaded."""
        return self.manager.session_start(self.request())

    def open(self) -> SessionStore:
        """Start a request and load its session."""
        session = self.begin()
        self.call(session.load, session.aload)
        return session

    def release(self, session: SessionStore) -> list[tuple[str, str]]:
        """End the request; follow its Set-Cookie like a browser. Returns its headers."""
        headers: list[tuple[str, str]] = []
        self.call(lambda: session.session_release(headers),
                  lambda: session.asession_release(headers))
        name = self.manager.config.cookie_name + "="
        for key, value in headers:
            if key == "Set-Cookie" and value.startswith(name):
                cookie_value = value[len(name):].split(";", 1)[0]
                self.cookie = None if "Max-Age=0" in value else cookie_value
        self.headers = headers
        return headers

    def roundtrip(self, **values: Any) -> SessionStore:
        """One request that sets ``values``; returns its (released) session."""
        session = self.open()
        for key, value in values.items():
            session[key] = value
        self.release(session)
        return session

    def data(self) -> dict[str, Any]:
        """What the session holds now, read in a request of its own."""
        session = self.open()
        data = dict(session)
        self.release(session)
        return data

    def destroy(self, session: SessionStore) -> None:
        """Destroy ``session``."""
        self.call(session.destroy, session.adestroy)

    def regenerate(self, session: SessionStore) -> str:
        """Regenerate ``session``'s ID."""
        return self.call(session.regenerate_id, session.aregenerate_id)

    def active(self) -> int:
        """The manager's live-session count."""
        return self.call(self.manager.get_active_session, self.manager.aget_active_session)

    def gc(self) -> int:
        """Run one GC pass."""
        return self.call(self.manager.gc, self.manager.agc)


async def _await(awaitable: Awaitable[T]) -> T:
    return await awaitable


SAMPLE: dict[str, Any] = {
    "str": "héllo ✓",
    "int": 2**70,
    "float": 1.5,
    "bool": True,
    "none": None,
    "list": [1, "two", [3]],
    "dict": {"nested": {"deep": [1, 2]}, " t": "a key like a tag"},
    "datetime": dt.datetime(2026, 11, 26, 4, 15, 30, 123456, tzinfo=dt.UTC),
    "naive": dt.datetime(2026, 1, 2, 3, 4, 5),
    "date": dt.date(2026, 11, 26),
    "time": dt.time(12, 30, 15),
    "bytes": b"\x00\xffbinary",
    "tuple": (1, ("nested", 2)),
    "set": {1, 2, 3},
    "frozenset": frozenset({"a"}),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": Decimal("3.14159265358979323846"),
}


class SessionConformance:
    """What every provider must show through the manager, in sync and async mode —
    client-side ones (the cookie provider) included.

    Override the ``provider`` fixture (the suite closes the provider after each test);
    optionally ``manager_config`` (a dict of manager settings) if the provider needs
    ``providerConfig``. Server-side providers subclass
    :class:`ProviderConformance`, which adds what a store must do.
    """

    #: Set by suites for client-side providers, whose "ID" is the sealed cookie value.
    client_side = False

    #: Seconds that sleeping tests wait beyond an expiry, for stores with coarse clocks.
    expiry_slack = 0.3
    #: Concurrent requests in the lost-update test.
    concurrency = 50

    @pytest.fixture
    def provider(self) -> BaseProvider:
        """A fresh, empty provider. Subclasses must override this fixture."""
        raise NotImplementedError("override the provider fixture")

    @pytest.fixture
    def manager_config(self) -> dict[str, Any]:
        """Manager settings the provider needs (such as ``provider_config``)."""
        return {}

    @pytest.fixture(params=["sync", "async"])
    def mode(self, request: pytest.FixtureRequest) -> str:
        """Each test runs through the sync API and through the async twins."""
        return str(request.param)

    @pytest.fixture
    def runner(self, mode: str, provider: BaseProvider) -> Iterator[asyncio.Runner | None]:
        """The event loop async-mode steps run on. The provider is closed when the test
        ends — in this loop in async mode, since asyncio clients and pools belong to the
        loop that opened them — so a ``provider`` fixture need not close it."""
        if mode == "sync":
            yield None
            provider.close()
            return
        with asyncio.Runner() as runner:
            yield runner
            runner.run(provider.aclose())
        provider.close()  # what sync calls in an async-mode test may have opened

    @pytest.fixture
    def spy(self, provider: BaseProvider | ClientSideProvider) -> Spy:
        """The provider, wrapped to record its calls."""
        if isinstance(provider, ClientSideProvider):
            return SpySealer(provider)
        return SpyProvider(provider)

    @pytest.fixture
    def make_manager(
        self, spy: Spy, manager_config: dict[str, Any]
    ) -> Iterator[Callable[..., Manager]]:
        """Build managers over the spied provider with extra settings."""
        made: list[Manager] = []

        def make(**settings: Any) -> Manager:
            manager = Manager(spy, {**manager_config, **settings})
            made.append(manager)
            return manager

        yield make
        for manager in made:
            manager.stop_gc()

    @pytest.fixture
    def manager(self, make_manager: Callable[..., Manager]) -> Manager:
        """A manager with default settings."""
        return make_manager()

    @pytest.fixture
    def client(self, manager: Manager, mode: str, runner: asyncio.Runner | None) -> Client:
        """A client with no cookie yet."""
        return Client(manager, mode, runner)

    def _client_for(self, manager: Manager, client: Client, cookie: str | None = None) -> Client:
        return Client(manager, client.mode, client.runner, cookie)


    def test_values_round_trip_exactly(self, client: Client) -> None:
        client.roundtrip(**SAMPLE)
        assert client.cookie is not None
        assert client.data() == SAMPLE
        back = client.data()
        for key, value in SAMPLE.items():
            assert type(back[key]) is type(value), key

    def test_new_session_is_saved_only_when_it_holds_data(self, client: Client) -> None:
        session = client.open()
        assert session.is_new
        headers = client.release(session)
        assert not any(k == "Set-Cookie" for k, _ in headers)
        assert client.cookie is None
        client.roundtrip(user="ann")
        assert any(k == "Set-Cookie" for k, _ in client.headers)
        assert ("Cache-Control", "no-store") in client.headers
        assert client.data() == {"user": "ann"}

    def test_untouched_session_never_reaches_the_store(
        self, client: Client, spy: Spy
    ) -> None:
        client.roundtrip(user="ann")
        spy.calls.clear()
        session = client.begin()
        headers = client.release(session)
        assert spy.calls == []
        assert headers == []

    def test_reading_does_not_write(self, client: Client, spy: Spy) -> None:
        client.roundtrip(user="ann")
        spy.calls.clear()
        session = client.open()
        assert session["user"] == "ann"
        headers = client.release(session)
        assert spy.counts == Counter({"read": 1})
        assert ("Vary", "Cookie") in headers
        assert not any(k == "Set-Cookie" for k, _ in headers)

    def test_delete_and_flush_persist(self, client: Client) -> None:
        client.roundtrip(a=1, b=2, c=3)
        session = client.open()
        session.delete("a")
        del session["b"]
        session.delete("missing")
        client.release(session)
        assert client.data() == {"c": 3}
        session = client.open()
        session.flush()
        session["d"] = 4
        client.release(session)
        assert client.data() == {"d": 4}

    def test_in_place_mutation_is_saved(self, client: Client) -> None:
        client.roundtrip(cart=["apple"], prefs={"theme": "dark"})
        session = client.open()
        session["cart"].append("pear")
        session.get("prefs")["theme"] = "light"
        assert session.modified
        client.release(session)
        assert client.data() == {"cart": ["apple", "pear"], "prefs": {"theme": "light"}}

    def test_unknown_id_is_never_adopted(self, manager: Manager, client: Client) -> None:
        forged = manager.engine.ids.new()
        victim = self._client_for(manager, client, forged)
        session = victim.roundtrip(user="mallory")
        assert session.session_id() != forged
        assert victim.cookie not in (None, forged)
        assert victim.data() == {"user": "mallory"}

    @pytest.mark.parametrize(
        "bad", ["../../etc/passwd", "x", "", "A" * 32, "0" * 31, "'; DROP TABLE s;--", "..%2f.."]
    )
    def test_malformed_id_never_reaches_the_provider(
        self, manager: Manager, client: Client, spy: Spy, bad: str
    ) -> None:
        attacker = self._client_for(manager, client, bad)
        session = attacker.roundtrip(k="v")
        assert all(sid != bad for _, sid in spy.calls)
        assert session.session_id() != bad
        assert attacker.data() == {"k": "v"}

    def test_idle_timeout(self, make_manager: Callable[..., Manager], client: Client) -> None:
        manager = make_manager(max_lifetime=1)
        c = self._client_for(manager, client)
        c.roundtrip(user="ann")
        time.sleep(0.6)
        assert c.data() == {"user": "ann"}  # this read refreshes the idle deadline
        time.sleep(0.6)
        assert c.data() == {"user": "ann"}  # alive 1.2 s after creation
        time.sleep(1 + self.expiry_slack)
        assert c.data() == {}

    def test_absolute_lifetime(self, make_manager: Callable[..., Manager],
                               client: Client) -> None:
        manager = make_manager(max_lifetime=30, absolute_lifetime=1)
        c = self._client_for(manager, client)
        c.roundtrip(user="ann")
        time.sleep(0.5)
        c.roundtrip(seen=True)
        time.sleep(0.5 + self.expiry_slack)
        assert c.data() == {}

    def test_regenerate_keeps_data(self, client: Client) -> None:
        client.roundtrip(cart=[1])
        old = client.cookie
        session = client.open()
        new = client.regenerate(session)
        session["user"] = "ann"
        headers = client.release(session)
        assert client.cookie not in (None, old)
        if not self.client_side:  # a client-side "ID" is the sealed value, made on release
            assert new == session.session_id() == client.cookie
        assert ("Cache-Control", "no-store") in headers
        assert client.data() == {"cart": [1], "user": "ann"}

    def test_destroy_expires_cookie(self, client: Client) -> None:
        client.roundtrip(user="ann")
        session = client.begin()
        client.destroy(session)
        headers = client.release(session)
        assert any(k == "Set-Cookie" and "Max-Age=0" in v for k, v in headers)
        assert client.cookie is None
        assert client.data() == {}

    def test_values_after_destroy_start_a_new_session(self, client: Client) -> None:
        client.roundtrip(user="ann")
        old = client.cookie
        session = client.open()
        client.destroy(session)
        session["flash"] = "logged out"
        client.release(session)
        assert client.cookie not in (None, old)
        assert client.data() == {"flash": "logged out"}


class ProviderConformance(SessionConformance):
    """The full suite for server-side providers: :class:`SessionConformance` plus the
    store's side — counting, GC, revocation, merging of concurrent changes, and the
    primitives' contract."""

    def test_empty_sessions_are_never_stored(self, client: Client, spy: SpyProvider) -> None:
        client.release(client.open())
        assert spy.counts["create"] == 0
        assert client.active() == 0
        client.roundtrip(user="ann")
        assert spy.counts["create"] == 1
        assert client.active() == 1

    def test_regenerate_kills_old_id(self, manager: Manager, client: Client) -> None:
        client.roundtrip(cart=[1])
        old = client.cookie
        session = client.open()
        client.regenerate(session)
        client.release(session)
        assert self._client_for(manager, client, old).data() == {}
        assert client.data() == {"cart": [1]}
        assert client.active() == 1

    def test_destroy_deletes_from_the_store(self, manager: Manager, client: Client) -> None:
        client.roundtrip(user="ann")
        old = client.cookie
        session = client.begin()
        client.destroy(session)
        client.release(session)
        assert client.active() == 0
        assert self._client_for(manager, client, old).data() == {}

    def test_one_read_and_one_write_per_changing_request(
        self, client: Client, spy: SpyProvider
    ) -> None:
        client.roundtrip(n=1)
        spy.calls.clear()
        session = client.open()
        session["n"] += 1
        client.release(session)
        assert spy.counts == Counter({"read": 1, "update": 1})
        assert client.data() == {"n": 2}

    def test_ids_are_long_random_and_prefixed(self, make_manager: Callable[..., Manager],
                                              client: Client) -> None:
        manager = make_manager(session_id_prefix="app-", session_id_length=24)
        ids = set()
        for _ in range(20):
            c = self._client_for(manager, client)
            ids.add(c.roundtrip(x=1).session_id())
        assert len(ids) == 20
        for sid in ids:
            assert sid.startswith("app-") and len(sid) == 4 + 48

    def test_count_and_gc(self, make_manager: Callable[..., Manager], client: Client) -> None:
        short = make_manager(max_lifetime=1)
        for i in range(3):
            self._client_for(short, client).roundtrip(i=i)
        assert client.active() == 3
        time.sleep(1 + self.expiry_slack)
        client.gc()
        assert client.active() == 0
        keep = self._client_for(client.manager, client)
        keep.roundtrip(i=9)
        client.gc()
        assert client.active() == 1
        assert keep.data() == {"i": 9}

    def test_damaged_record_is_an_empty_session(self, manager: Manager, client: Client,
                                                spy: SpyProvider) -> None:
        client.roundtrip(user="ann")
        assert client.cookie is not None
        record = spy.inner.read(client.cookie)
        assert record is not None
        assert spy.inner.update(client.cookie, Record(b"\x80not json", record.expires_at,
                                                      record.version + 1), record.version)
        assert client.data() == {}

    def _concurrently(self, client: Client, jobs: list[Callable[[SessionStore], None]]) -> None:
        """Run one request per job at once, all loading before any saves: threads in sync
        mode, tasks on one event loop in async mode."""
        clients = [self._client_for(client.manager, client, client.cookie) for _ in jobs]
        if client.mode == "sync":
            barrier = threading.Barrier(len(jobs))

            def run(c: Client, job: Callable[[SessionStore], None]) -> None:
                session = c.open()
                barrier.wait()
                job(session)
                c.release(session)

            with ThreadPoolExecutor(len(jobs)) as pool:
                list(pool.map(run, clients, jobs))
            return

        async def one(c: Client, job: Callable[[SessionStore], None]) -> None:
            session = c.begin()
            await session.aload()
            await asyncio.sleep(0.01)
            job(session)
            await session.asession_release([])

        async def all_() -> None:
            await asyncio.gather(*(one(c, j) for c, j in zip(clients, jobs, strict=True)))

        assert client.runner is not None
        client.runner.run(all_())

    def test_concurrent_requests_lose_nothing(self, client: Client) -> None:
        client.roundtrip(base=0)
        n = self.concurrency

        def setter(i: int) -> Callable[[SessionStore], None]:
            return lambda session: session.set(f"k{i}", i)

        self._concurrently(client, [setter(i) for i in range(n)])
        assert client.data() == {"base": 0, **{f"k{i}": i for i in range(n)}}

    def test_concurrent_deletes_and_sets_merge(self, client: Client) -> None:
        client.roundtrip(a=1, b=2)
        self._concurrently(client, [
            lambda session: session.delete("a"),
            lambda session: session.set("c", 3),
            lambda session: session.set("b", 20),
        ])
        assert client.data() == {"b": 20, "c": 3}

    def test_destroy_is_not_undone_by_a_concurrent_save(self, manager: Manager,
                                                        client: Client) -> None:
        client.roundtrip(user="ann")
        old = client.cookie
        slow = self._client_for(manager, client, old)
        session = slow.open()  # a slow request loads the session...
        logout = self._client_for(manager, client, old)
        doomed = logout.begin()
        logout.destroy(doomed)  # ...another logs out...
        logout.release(doomed)
        session["late"] = True  # ...and the slow one saves afterwards
        slow.release(session)
        assert client.active() == 0
        assert self._client_for(manager, client, old).data() == {}

    def test_regenerate_is_not_undone_by_a_concurrent_save(self, manager: Manager,
                                                           client: Client) -> None:
        client.roundtrip(user="ann")
        old = client.cookie
        slow = self._client_for(manager, client, old)
        session = slow.open()
        login = self._client_for(manager, client, old)
        rotating = login.open()
        login.regenerate(rotating)
        login.release(rotating)
        session["late"] = True
        slow.release(session)
        assert self._client_for(manager, client, old).data() == {}
        assert login.data() == {"user": "ann"}
        assert client.active() == 1

    def test_racing_creates_leave_exactly_one_winner(self, provider: BaseProvider,
                                                     client: Client) -> None:
        sid = "d" * 32
        later = time.time() + 60
        n = 16
        if client.mode == "sync":
            barrier = threading.Barrier(n)

            def create(i: int) -> bool:
                barrier.wait()
                return provider.create(sid, Record(str(i).encode(), later, 1))

            with ThreadPoolExecutor(n) as pool:
                results = list(pool.map(create, range(n)))
        else:
            async def all_() -> list[bool]:
                return list(await asyncio.gather(
                    *(provider.acreate(sid, Record(str(i).encode(), later, 1)) for i in range(n))
                ))

            assert client.runner is not None
            results = client.runner.run(all_())
        assert results.count(True) == 1
        record = provider.read(sid)
        assert record is not None
        assert record.payload == str(results.index(True)).encode()

    def test_primitives_contract(self, provider: BaseProvider, client: Client) -> None:
        def call(name: str, *args: Any) -> Any:
            return client.call(lambda: getattr(provider, name)(*args),
                               lambda: getattr(provider, "a" + name)(*args))

        sid = "c0ffee" * 6
        later = time.time() + 60
        assert call("read", sid) is None
        assert call("update", sid, Record(b"x", later, 2), 1) is False  # never resurrects
        assert call("touch", sid, later) is False
        assert call("create", sid, Record(b"one", later, 1)) is True
        assert call("create", sid, Record(b"two", later, 1)) is False  # never overwrites
        assert call("read", sid) == Record(b"one", later, 1)
        assert call("update", sid, Record(b"three", later, 3), 2) is False  # stale version
        assert call("update", sid, Record(b"three", later, 2), 1) is True
        assert call("touch", sid, later + 60) is True
        record = call("read", sid)
        assert (record.payload, record.version) == (b"three", 2)
        assert abs(record.expires_at - (later + 60)) <= 1
        assert call("count") == 1
        call("delete", sid)
        call("delete", sid)  # deleting twice is fine
        assert call("read", sid) is None
        assert call("count") == 0
        # Storing an already expired record may or may not be refused; either way it
        # must read as absent.
        assert isinstance(call("create", sid, Record(b"gone", time.time() - 1, 1)), bool)
        assert call("read", sid) is None


class ScanConformance:
    """What a provider implementing :meth:`~websession.BaseProvider.scan` must do; mix it
    into a :class:`ProviderConformance` subclass (it uses the same fixtures)::

        class TestMyProvider(ProviderConformance, ScanConformance): ...
    """

    def _walk(self, provider: BaseProvider, client: Client, batch: int,
              cursor: str | None = None) -> list[str]:
        seen: list[str] = []
        while True:
            page = client.call(partial(provider.scan, cursor, batch),
                               partial(provider.ascan, cursor, batch))
            assert len(page.records) <= batch
            seen += [sid for sid, _ in page.records]
            if page.cursor is None:
                return seen
            cursor = page.cursor

    def test_scan_returns_every_live_session_once(self, provider: BaseProvider,
                                                  client: Client) -> None:
        later = time.time() + 60
        live = {uuid.uuid4().hex for _ in range(23)}
        for sid in live:
            assert provider.create(sid, Record(sid.encode(), later, 1))
        provider.create(uuid.uuid4().hex, Record(b"old", time.time() - 1, 1))
        assert provider.can_scan
        for batch in (1, 5, 23, 100):
            walked = self._walk(provider, client, batch)
            assert sorted(walked) == sorted(live)  # once each, and never an expired one
        page = provider.scan(None, 100)
        assert {sid: record.payload for sid, record in page.records} == {
            sid: sid.encode() for sid in live}

    def test_scan_survives_changes_during_the_walk(self, provider: BaseProvider,
                                                   client: Client) -> None:
        later = time.time() + 60
        stable = {uuid.uuid4().hex for _ in range(20)}
        doomed = {uuid.uuid4().hex for _ in range(20)}
        for sid in stable | doomed:
            provider.create(sid, Record(b"x", later, 1))
        first = provider.scan(None, 10)
        assert first.cursor is not None
        for sid in doomed:
            provider.delete(sid)
        for _ in range(20):
            provider.create(uuid.uuid4().hex, Record(b"new", later, 1))
        walked = [sid for sid, _ in first.records] + self._walk(provider, client, 7,
                                                                 first.cursor)
        assert len(walked) == len(set(walked))  # nothing twice
        assert stable <= set(walked)  # nothing live for the whole walk is missed

    def test_manager_lists_sessions_with_their_data(self, manager: Manager,
                                                    client: Client) -> None:
        sids = set()
        for i in range(7):
            other = Client(manager, client.mode, client.runner)
            other.roundtrip(i=i)
            sids.add(other.cookie)

        async def collect() -> list[Any]:
            return [info async for info in manager.aiter_sessions(batch=3)]

        infos = client.call(lambda: list(manager.iter_sessions(batch=3)), collect)
        assert {info.sid for info in infos} == sids
        assert sorted(info.data["i"] for info in infos) == list(range(7))
        now = time.time()
        assert all(info.created <= now < info.expires_at and info.size > 0 for info in infos)
        some = infos[0]
        assert client.call(lambda: manager.inspect(some.sid),
                           lambda: manager.ainspect(some.sid)) == some
        assert manager.inspect("0" * 32) is None


class UserConformance:
    """What a provider with a user index (:meth:`~websession.BaseProvider.bind`,
    ``sessions_of``, ``revoke_user``) must do; mix it into a :class:`ProviderConformance`
    subclass (it uses the same fixtures)."""

    #: Concurrent logins of one user in the cap test.
    logins = 20

    def _login(self, manager: Manager, client: Client, user: str, **values: Any) -> Client:
        browser = Client(manager, client.mode, client.runner)
        session = browser.open()
        session.bind_user(user)
        for key, value in values.items():
            session[key] = value
        browser.release(session)
        return browser

    def test_sessions_of_and_revoke_user(self, manager: Manager, client: Client) -> None:
        ann = [self._login(manager, client, "ann", n=i) for i in range(3)]
        bob = self._login(manager, client, "bob")
        found = client.call(lambda: manager.sessions_of("ann"),
                            lambda: manager.asessions_of("ann"))
        assert [info.sid for info in found] == [b.cookie for b in ann]  # oldest first
        assert [info.data["n"] for info in found] == [0, 1, 2]
        keep = ann[1].cookie
        revoked = client.call(lambda: manager.revoke_user("ann", keep=keep),
                              lambda: manager.arevoke_user("ann", keep=keep))
        assert revoked == 2
        assert [info.sid for info in manager.sessions_of("ann")] == [keep]
        assert ann[0].data() == {} and ann[1].data()["n"] == 1  # revoked means logged out
        assert [info.sid for info in manager.sessions_of("bob")] == [bob.cookie]

    def test_binding_follows_regenerate_logout_and_destroy(self, manager: Manager,
                                                           client: Client) -> None:
        browser = self._login(manager, client, "ann")
        session = browser.open()
        client.call(session.regenerate_id, session.aregenerate_id)
        browser.release(session)
        assert [info.sid for info in manager.sessions_of("ann")] == [browser.cookie]
        session = browser.open()
        session.bind_user(None)  # logout, the session kept
        browser.release(session)
        assert manager.sessions_of("ann") == []
        session = browser.open()
        session.bind_user("ann")
        browser.release(session)
        assert len(manager.sessions_of("ann")) == 1
        session = browser.open()
        client.call(session.destroy, session.adestroy)
        assert manager.sessions_of("ann") == []

    def test_concurrent_logins_respect_the_cap(self, make_manager: Callable[..., Manager],
                                               client: Client) -> None:
        manager = make_manager(max_sessions_per_user=3)
        if client.mode == "sync":
            with ThreadPoolExecutor(self.logins) as pool:
                browsers = list(pool.map(lambda i: self._login(manager, client, "ann", i=i),
                                         range(self.logins)))
        else:
            async def login(i: int) -> str:
                session = manager.session_start({"type": "http", "headers": []})
                await session.aload()
                session.bind_user("ann")
                session["i"] = i
                await session.asession_release([])
                return session.session_id()

            async def all_logins() -> list[str]:
                return list(await asyncio.gather(*(login(i) for i in range(self.logins))))

            assert client.runner is not None
            sids = client.runner.run(all_logins())
            browsers = [Client(manager, client.mode, client.runner, sid) for sid in sids]
        live = manager.sessions_of("ann")
        assert len(live) == 3
        assert manager.get_active_session() == 3
        assert {info.sid for info in live} <= {b.cookie for b in browsers}
        assert manager.stats()["destroyed"] == self.logins - 3
