"""Manager: the seed's ``session.Manager``. Each method is a few lines over the engine; the
async twins (``a``-prefixed) run the same plans with the provider's async primitives."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from ._config import ManagerConfig, parse_config
from ._core import Engine
from ._seed import SeedBridge, SeedSessionStore
from ._session import SessionStore
from .cookies import parse_cookie_values
from .exceptions import ConfigurationError
from .providers import create_provider
from .providers.base import BaseProvider, Provider

__all__ = ["Manager"]

log = logging.getLogger("websession")

#: Where a request's session is kept, in a WSGI environ or an ASGI scope.
SESSION_KEY = "websession.session"


def _request_dict(request: Any) -> MutableMapping[str, Any]:
    """The WSGI environ or ASGI scope behind ``request`` (framework requests accepted)."""
    if type(request) is dict or isinstance(request, MutableMapping):
        return request
    for attr in ("scope", "environ"):  # Starlette/FastAPI, Flask/Werkzeug/WebOb
        inner = getattr(request, attr, None)
        if isinstance(inner, MutableMapping):
            return inner
    raise TypeError(
        f"expected a WSGI environ, an ASGI scope or a request object, not {type(request).__name__}"
    )


class Manager:
    """A session manager over one provider: ``Manager("memory", '{"cookieName": "sid"}')``.

    ``provider`` is a registered name, a provider instance, or a provider class. ``config``
    is the seed's JSON string, a mapping, or a :class:`ManagerConfig`; keyword arguments
    override it.
    """

    def __init__(
        self,
        provider: str | Provider | BaseProvider | type,
        config: str | Mapping[str, Any] | ManagerConfig | None = None,
        /,
        **overrides: Any,
    ) -> None:
        self.config = parse_config(config, **overrides)
        if isinstance(provider, str):
            instance = create_provider(provider)
        elif isinstance(provider, type):
            instance = provider()
        else:
            instance = provider
        if not isinstance(instance, BaseProvider | Provider):
            raise ConfigurationError(
                f"{type(instance).__name__} is not a session provider: subclass "
                "websession.providers.BaseProvider or implement websession.Provider"
            )
        instance.session_init(self.config.idle_timeout, self.config.provider_config)
        if isinstance(instance, BaseProvider):
            self.config = instance.adjust_config(self.config)
        self.provider = instance
        self._seed: Provider | None = None
        if isinstance(instance, BaseProvider):
            self._engine = Engine(instance, self.config)
        else:
            self._seed = instance
            self._engine = Engine(SeedBridge(instance), self.config)
        # ASGI header names are lowercase bytes: match them without decoding every header.
        self._sid_header = self.config.session_name_in_http_header.lower().encode("latin-1")
        self._gc_thread: threading.Thread | None = None
        self._gc_stop = threading.Event()

    # -- sessions ---------------------------------------------------------------------

    def _client_sid(self, req: Mapping[str, Any], asgi: bool) -> str | None:
        """The session ID the client sent, chosen among every value it sent.

        One request can carry several: the cookie once per path it was set for (a stale
        path-scoped copy comes first), two ``Cookie`` headers joined with ``,``, then the
        query string and the ID header where enabled. The first well-formed value wins;
        with none, the first value, so that the response drops the malformed cookie.
        """
        cfg = self.config
        if asgi:
            # HTTP/2 may split the Cookie header in several; they join with "; ".
            raw = [value for name, value in req.get("headers", ()) if name == b"cookie"]
            if not raw:
                cookie_header = ""
            else:
                cookie_header = (raw[0] if len(raw) == 1 else b"; ".join(raw)).decode("latin-1")
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
        if len(candidates) <= 1:  # the common case: the engine checks its shape
            return candidates[0] if candidates else None
        well_formed = self._engine._valid
        return next((sid for sid in candidates if well_formed(sid)), candidates[0])

    def session_start(self, request: Any) -> SessionStore:
        """Return the request's session; nothing is read from the store until it is used.

        ``request`` is a WSGI environ, an ASGI scope, or a framework request that carries
        one. Calling it again for the same request returns the same object.
        """
        req = request if type(request) is dict else _request_dict(request)
        cached = req.get(SESSION_KEY)
        # (None first: SessionStore is an ABC, and ABC isinstance checks are slow.)
        if cached is not None and isinstance(cached, SessionStore) and (
            cached._engine is self._engine
        ):
            return cached
        asgi = req.get("type") in ("http", "websocket")
        if asgi:
            secure = req.get("scheme") in ("https", "wss")
        else:
            secure = req.get("wsgi.url_scheme") == "https"
        sid = self._client_sid(req, asgi)
        session: SessionStore
        if self._seed is not None:
            valid = sid is not None and self._engine.ids.is_valid(sid)
            session = SeedSessionStore(
                self._engine, self._seed, sid if valid and sid else self._engine.ids.new(),
                from_client=valid, secure=secure, async_mode=asgi,
            )
        else:
            session = self._engine.open(sid, secure, asgi)
        req[SESSION_KEY] = session
        return session

    def get_session_store(self, sid: str) -> SessionStore:
        """The session with ID ``sid`` outside any request (a fresh one if unknown)."""
        if self._seed is not None:
            valid = self._engine.ids.is_valid(sid)
            return SeedSessionStore(self._engine, self._seed,
                                    sid if valid else self._engine.ids.new(), from_client=valid)
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
    def provider_blocks(self) -> bool:
        """Whether the provider does blocking I/O (async code must use the ``a`` twins)."""
        return self._engine.provider.blocking

    # -- maintenance ------------------------------------------------------------------

    def get_active_session(self) -> int:
        """Count live sessions."""
        count: int = self._engine.run_op("count")
        return count

    async def aget_active_session(self) -> int:
        """Async twin of :meth:`get_active_session`."""
        count: int = await self._engine.arun_op("count")
        return count

    def gc(self) -> int:
        """Run one GC pass; return how many sessions were removed, where the store says."""
        removed: int = self._engine.run_op("gc")
        return removed

    async def agc(self) -> int:
        """Async twin of :meth:`gc`."""
        removed: int = await self._engine.arun_op("gc")
        return removed

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
        """Stop the background GC and close the provider."""
        self.stop_gc()
        if isinstance(self.provider, BaseProvider):
            self.provider.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        self.stop_gc()
        if isinstance(self.provider, BaseProvider):
            await self.provider.aclose()

    def __enter__(self) -> Manager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Manager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
