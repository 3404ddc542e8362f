"""Manager: the seed's ``session.Manager``. Each method is a few lines over the engine; the
async twins (``a``-prefixed) run the same plans with the provider's async primitives."""

from __future__ import annotations

import logging
import threading
from collections.abc import (
    AsyncIterator,
    Callable,
    Generator,
    Iterator,
    Mapping,
    MutableMapping,
)
from typing import Any
from urllib.parse import parse_qs

from ._config import ManagerConfig, parse_config
from ._core import Engine, StoreEngine
from ._ops import SessionInfo
from ._sealing import SealEngine
from ._session import SessionStore
from .cookies import parse_cookie_values
from .exceptions import ConfigurationError, UnsupportedOperationError
from .providers import create_provider
from .providers.base import BaseProvider, ClientSideProvider, Page, Provider, Record
from .seed import SeedEngine

__all__ = ["Manager"]

log = logging.getLogger("websession")

#: The most session IDs one request may make us look up (each may cost a store read).
MAX_CANDIDATES = 4

#: Where a request's session is kept, in a WSGI environ or an ASGI scope.
SESSION_KEY = "websession.session"


_ACCEPTS = ("a WSGI environ or an ASGI scope (a dict), or a request object carrying one "
            "(.environ, .scope)")


def _request_dict(request: Any) -> MutableMapping[str, Any]:
    """The WSGI environ or ASGI scope behind ``request`` (framework requests accepted)."""
    if isinstance(request, MutableMapping):
        # Other mappings must look like one: an aiohttp Request is a mapping too, and
        # reading it as an environ would silently lose the client's cookie.
        if "REQUEST_METHOD" in request or request.get("type") in ("http", "websocket"):
            return request
    else:
        for attr in ("scope", "environ"):  # Starlette/FastAPI, Flask/Werkzeug/WebOb
            inner = getattr(request, attr, None)
            if isinstance(inner, MutableMapping):
                return inner
    raise TypeError(f"session_start() takes {_ACCEPTS}, not {type(request).__name__}")


class Manager:
    """A session manager over one provider: ``Manager("memory", '{"cookieName": "sid"}')``.

    ``provider`` is a registered name, a provider instance, or a provider class. ``config``
    is the seed's JSON string, a mapping, or a :class:`ManagerConfig`; keyword arguments
    override it. ``session_class`` is the class of the sessions it hands out: a framework
    adapter passes its subclass of :class:`SessionStore`.
    """

    def __init__(
        self,
        provider: str | Provider | BaseProvider | ClientSideProvider | type,
        config: str | Mapping[str, Any] | ManagerConfig | None = None,
        /,
        *,
        session_class: type[SessionStore] = SessionStore,
        **overrides: Any,
    ) -> None:
        self.config = parse_config(config, **overrides)
        self._session_class = session_class
        if isinstance(provider, str):
            instance = create_provider(provider)
        elif isinstance(provider, type):
            instance = provider()
        else:
            instance = provider
        self.provider = instance
        self._engine = self._engine_for(instance)
        # ASGI header names are lowercase bytes: match them without decoding every header.
        self._sid_header = self.config.session_name_in_http_header.lower().encode("latin-1")
        self._gc_thread: threading.Thread | None = None
        self._gc_stop = threading.Event()
        # Stops the provider's report of sessions its store expires (started on the first
        # subscription to "expired", where the provider has one).
        self._stop_expiry_watch: Callable[[], None] | None = None

    def _engine_for(self, provider: object) -> Engine:
        """Configure ``provider`` and build the engine for its kind."""
        engine: Engine
        if isinstance(provider, BaseProvider | ClientSideProvider):
            provider.configure(self.config.provider_config)
            self.config = provider.adjust_config(self.config)
            if isinstance(provider, BaseProvider):
                engine = StoreEngine(provider, self.config, self._session_class)
            else:
                engine = SealEngine(provider, self.config, self._session_class)
        elif isinstance(provider, Provider):
            provider.session_init(self.config.idle_timeout, self.config.provider_config)
            engine = SeedEngine(provider, self.config)
        else:
            raise ConfigurationError(
                f"{type(provider).__name__} is not a session provider: subclass "
                "websession.providers.BaseProvider or ClientSideProvider, or implement "
                "websession.Provider"
            )
        return engine

    # -- sessions ---------------------------------------------------------------------

    def _client_sids(self, req: Mapping[str, Any], asgi: bool) -> list[str]:
        """Every session ID the client sent, in the order they count.

        One request can carry several: the cookie once per path it was set for (a stale
        path-scoped copy comes first), two ``Cookie`` headers joined with ``,``, then the
        query string and the ID header where enabled.
        """
        cfg = self.config
        if asgi:
            # HTTP/2 may split the Cookie header in several; they join with "; ". (A loop,
            # not a comprehension: every request runs it, and a comprehension is a call.)
            raw = b""
            for name, value in req.get("headers", ()):
                if name == b"cookie":
                    raw = raw + b"; " + value if raw else value
            cookie_header = raw.decode("latin-1")
        else:
            cookie_header = req.get("HTTP_COOKIE", "")
        candidates = parse_cookie_values(cookie_header, cfg.cookie_name) if cookie_header else []
        if cfg.enable_sid_in_url_query:
            query = req.get("query_string", b"").decode("latin-1") if asgi else req.get(
                "QUERY_STRING", "")
            candidates += parse_qs(query).get(cfg.cookie_name, [])
        if cfg.enable_sid_in_http_header:
            if asgi:
                candidates += [value.decode("latin-1") for key, value in req.get("headers", ())
                               if key == self._sid_header]
            else:
                header = req.get("HTTP_" + cfg.session_name_in_http_header.upper().replace(
                    "-", "_"))
                candidates += [header] if header else []
        return candidates

    def session_start(self, request: Any) -> SessionStore:
        """Return the request's session; nothing is read from the store until it is used.

        ``request`` is a WSGI environ, an ASGI scope, or a framework request that carries
        one. Calling it again for the same request returns the same object.
        """
        req = request if type(request) is dict else _request_dict(request)
        cached = req.get(SESSION_KEY)
        # (None first: SessionStore is an ABC, and ABC isinstance checks are slow.)
        if cached is not None and isinstance(cached, SessionStore) and (
            cached.engine is self._engine
        ):
            return cached
        asgi = req.get("type") in ("http", "websocket")
        if asgi:
            secure = req.get("scheme") in ("https", "wss")
        else:
            secure = req.get("wsgi.url_scheme") == "https"
        sids = self._client_sids(req, asgi)
        engine = self._engine
        if len(sids) <= 1:  # the common case: the engine checks its shape
            session = engine.open(sids[0] if sids else None, secure)
        else:
            # Several copies: try the well-formed ones in order until one is live (a
            # stale path-scoped copy must not hide the live session); with none, the
            # first, so that the response drops the malformed cookie.
            valid = [sid for sid in sids if engine.valid_client_id(sid)][:MAX_CANDIDATES]
            session = engine.open(valid[0] if valid else sids[0], secure, tuple(valid[1:]))
        req[SESSION_KEY] = session
        return session

    def get_session_store(self, sid: str | None) -> SessionStore:
        """The session with ID ``sid`` outside any request (a fresh one if unknown, or if
        ``sid`` is ``None``)."""
        return self._engine.open(sid)

    def session_destroy(self, request: Any) -> None:
        """Delete the request's session now; its release expires the cookie."""
        self.session_start(request).destroy()

    async def asession_destroy(self, request: Any) -> None:
        """Async twin of :meth:`session_destroy`."""
        await self.session_start(request).adestroy()

    def session_regenerate_id(self, request: Any) -> SessionStore:
        """Move the request's session to a new ID, keeping its data; return it.

        The old ID is deleted, and the new cookie sent, when the session is released.
        """
        session = self.session_start(request)
        session.regenerate_id()
        return session

    async def asession_regenerate_id(self, request: Any) -> SessionStore:
        """Async twin of :meth:`session_regenerate_id`."""
        session = self.session_start(request)
        await session.aregenerate_id()
        return session

    @property
    def engine(self) -> Engine:
        """The engine serving this manager's sessions (its IDs, settings and provider)."""
        return self._engine

    @property
    def provider_blocks(self) -> bool:
        """Whether the provider does blocking I/O (async code must use the ``a`` twins)."""
        return self._engine.blocking

    # -- operations -------------------------------------------------------------------

    def stats(self) -> dict[str, int | float]:
        """The engine's counters since this manager started: ``loads``, ``saves``,
        ``refreshes``, ``conflicts``, ``retries``, ``unavailable``, ``created``,
        ``regenerated``, ``destroyed``, ``expired``, ``writes`` (releases that wrote),
        and ``load_seconds`` / ``write_seconds``: the time reads and writes took (divided
        by ``loads`` and ``writes``, the store's mean latency). Sessions kept in a store
        are counted; a cookie provider counts nothing. A provider's own counters follow
        (the Redis client-side cache's ``cache_hits``, ``cache_misses``, …)."""
        stats = self._engine.counters.snapshot()
        if isinstance(self.provider, BaseProvider):
            stats.update(self.provider.stats())
        return stats

    def on(self, event: str, callback: Callable[..., Any]) -> None:
        """Call ``callback`` on ``event``: ``"created"`` (new ID), ``"regenerated"`` (new
        ID, old ID), ``"destroyed"`` (ID), ``"expired"`` (how many a GC pass removed, and
        their IDs where the provider reports them: memory, file, sqlite, MySQL,
        PostgreSQL; else ``None``). On Redis, which expires sessions itself, the first
        ``expired`` subscriber starts a thread that reports them from the server's
        keyspace notifications (when the server has them on).

        A callback may be sync or async (an async one runs as a task on the running loop,
        or to completion when there is none); an exception in it is logged and never
        reaches the request. Sessions kept in a store fire them; a cookie provider cannot.
        """
        self._engine.events.on(event, callback)
        if event == "expired" and self._stop_expiry_watch is None:
            self._stop_expiry_watch = self._engine.watch_expired()

    def off(self, event: str, callback: Callable[..., Any]) -> None:
        """Stop calling ``callback`` on ``event``."""
        self._engine.events.off(event, callback)
        if not self._engine.events.wants("expired"):
            self._unwatch_expired()

    def _unwatch_expired(self) -> None:
        stop, self._stop_expiry_watch = self._stop_expiry_watch, None
        if stop is not None:
            stop()

    @property
    def can_list(self) -> bool:
        """Whether the provider can list its sessions (:meth:`iter_sessions`)."""
        return self._engine.can_scan

    def iter_sessions(self, batch: int = 500, cursor: str | None = None) -> Iterator[SessionInfo]:
        """Every live session, fetched ``batch`` at a time (memory stays flat).

        Needs a provider that can list its sessions (memory, file, sqlite, Redis, MySQL,
        PostgreSQL); others raise :class:`~websession.exceptions.UnsupportedOperationError`.
        ``cursor`` resumes a walk where :meth:`pages` left it.
        """
        for page, _ in self.pages(batch, cursor):
            yield from page

    def pages(self, batch: int = 500,
              cursor: str | None = None) -> Iterator[tuple[list[SessionInfo], str | None]]:
        """The walk of :meth:`iter_sessions` a batch at a time, each with the cursor that
        resumes after it (``None`` after the last)."""
        engine = self._engine
        while True:
            page = engine.scan(cursor, batch)
            yield engine.infos(page), page.cursor
            if page.cursor is None:
                return
            cursor = page.cursor

    async def aiter_sessions(self, batch: int = 500,
                             cursor: str | None = None) -> AsyncIterator[SessionInfo]:
        """Async twin of :meth:`iter_sessions`."""
        engine = self._engine
        while True:
            page = await engine.ascan(cursor, batch)
            for info in engine.infos(page):
                yield info
            if page.cursor is None:
                return
            cursor = page.cursor

    def inspect(self, sid: str) -> SessionInfo | None:
        """The live session ``sid`` as an operator sees it (data, created, expiry), or
        ``None``; it is not loaded as a request's session, so nothing is refreshed."""
        return self._engine.inspect(sid)

    async def ainspect(self, sid: str) -> SessionInfo | None:
        """Async twin of :meth:`inspect`."""
        return await self._engine.ainspect(sid)

    def migrate(self, target: Manager, batch: int = 500, cursor: str | None = None, *,
                dry_run: bool = False) -> Generator[tuple[int, int, str | None], None, None]:
        """Copy every live session into ``target``'s store, a batch at a time, keeping
        IDs, data, expiry, version and user binding; yield ``(read, created, cursor)``
        after each batch.

        The records are copied as stored, so both managers must use the same codec. An ID
        the target already has is left alone: re-running after an interruption (from the
        start, or from the last cursor) finishes the copy without duplicates. Memory stays
        flat: one batch at a time. ``dry_run`` reads and counts without writing.
        """
        engine, into = self._engine, self._store_of(target)
        while True:
            page = engine.scan(cursor, batch)
            rows = self._rows(page)
            yield len(rows), 0 if dry_run else into.import_records(rows), page.cursor
            if page.cursor is None:
                return
            cursor = page.cursor

    async def amigrate(self, target: Manager, batch: int = 500, cursor: str | None = None,
                       *, dry_run: bool = False) -> AsyncIterator[tuple[int, int, str | None]]:
        """Async twin of :meth:`migrate`."""
        engine, into = self._engine, self._store_of(target)
        while True:
            page = await engine.ascan(cursor, batch)
            rows = self._rows(page)
            yield len(rows), 0 if dry_run else await into.aimport_records(rows), page.cursor
            if page.cursor is None:
                return
            cursor = page.cursor

    @staticmethod
    def _store_of(target: Manager) -> StoreEngine:
        if not isinstance(target.engine, StoreEngine):
            raise UnsupportedOperationError(
                f"cannot migrate into {type(target.provider).__name__}: it keeps no store")
        return target.engine

    def _rows(self, page: Page) -> list[tuple[str, Record, str | None]]:
        """A scanned page's live records, each with the user it is bound to."""
        records = dict(page.records)
        return [(info.sid, records[info.sid], info.user) for info in self._engine.infos(page)]

    # -- per-user sessions ------------------------------------------------------------

    def sessions_of(self, user: Any) -> list[SessionInfo]:
        """The live sessions bound to ``user`` (``session.bind_user``, or the ``userKey``
        session key), oldest binding first. Memory, sqlite, Redis, MySQL and PostgreSQL
        index them; other providers raise :class:`~websession.UnsupportedOperationError`."""
        return self._engine.sessions_of(str(user))

    async def asessions_of(self, user: Any) -> list[SessionInfo]:
        """Async twin of :meth:`sessions_of`."""
        return await self._engine.asessions_of(str(user))

    def revoke_user(self, user: Any, keep: str | None = None) -> int:
        """Delete every session of ``user`` except ``keep`` (the current one, for "log
        out everywhere else"); return how many were deleted."""
        return self._engine.revoke_user(str(user), keep)

    async def arevoke_user(self, user: Any, keep: str | None = None) -> int:
        """Async twin of :meth:`revoke_user`."""
        return await self._engine.arevoke_user(str(user), keep)

    # -- maintenance ------------------------------------------------------------------

    def get_active_session(self) -> int:
        """Count live sessions."""
        return self._engine.count()

    async def aget_active_session(self) -> int:
        """Async twin of :meth:`get_active_session`."""
        return await self._engine.acount()

    def gc(self) -> int:
        """Run one GC pass; return how many sessions were removed, where the store says."""
        return self._engine.gc()

    async def agc(self) -> int:
        """Async twin of :meth:`gc`."""
        return await self._engine.agc()

    def start_gc(self) -> None:
        """Run :meth:`gc` every ``gclifetime`` seconds in a daemon thread until
        :meth:`stop_gc` (the seed's ``go manager.GC()``). A failing pass is logged, and the
        next one runs on time."""
        if self._gc_thread is not None and self._gc_thread.is_alive():
            return
        self._gc_stop.clear()
        self._gc_thread = threading.Thread(target=self._gc_loop, name="websession-gc",
                                           daemon=True)
        self._gc_thread.start()

    def _gc_loop(self) -> None:
        while not self._gc_stop.wait(self.config.gc_lifetime):
            try:
                self.gc()
            except Exception:
                log.exception("session GC pass failed")

    def stop_gc(self) -> None:
        """Stop the background GC started by :meth:`start_gc` and wait for it."""
        self._gc_stop.set()
        if self._gc_thread is not None:
            self._gc_thread.join()
            self._gc_thread = None

    @property
    def gc_running(self) -> bool:
        """Whether the background GC thread is running."""
        return self._gc_thread is not None and self._gc_thread.is_alive()

    def close(self) -> None:
        """Stop the background GC (and any watch for expired sessions) and close the
        provider."""
        self.stop_gc()
        self._unwatch_expired()
        self._engine.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self.stop_gc()
        self._unwatch_expired()
        await self._engine.aclose()

    def __enter__(self) -> Manager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Manager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
