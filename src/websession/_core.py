"""The engine: everything about a session that is not I/O, written once for both modes.

Each operation that needs the store is a *plan*: a generator that yields :data:`Op`
requests — ``("update", (sid, record, 3), out)``: call the primitive ``update`` with these
arguments — and the driver puts the answer in ``out[0]`` before the plan resumes.
:meth:`Engine.run` drives a plan with a provider's sync primitives, :meth:`Engine.arun`
with their async twins, so the logic — expiry, merging of concurrent changes,
regeneration — exists exactly once.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from ._ids import SessionIDs
from ._session import DELETED, SessionStore
from .codecs import DecodeError
from .cookies import dump_cookie
from .exceptions import (
    SessionConflictError,
    SessionModeError,
    SessionTooLarge,
    StoreUnavailableError,
)
from .providers.base import BaseProvider, Record, Sealer

if TYPE_CHECKING:
    from ._config import ManagerConfig

__all__ = ["Engine", "Op", "Plan"]

# Enough for heavy contention on one session; each retry re-reads and re-applies.
MAX_SAVE_ATTEMPTS = 200
# A read-only request refreshes the idle deadline only once this fraction of the idle
# timeout has passed since the last write, so busy sessions are not written on every read.
REFRESH_FRACTION = 0.1
# A record's payload: the creation time as a big-endian double, then the codec's bytes.
_CREATED = struct.Struct(">d")
# Seconds within which a deadline read back counts as just refreshed (see release()).
FRESH_WINDOW = 1.0
# The most a browser keeps of one Set-Cookie value (name, value and attributes).
COOKIE_LIMIT = 4093


#: A request to a provider: the primitive's name, its arguments, and a one-item list the
#: driver stores the primitive's return value in. Plain tuples keep the hot path cheap.
Op = tuple[str, tuple[Any, ...], list[Any]]
Plan = Generator[Op, None, None]

_ANAMES = {name: "a" + name for name in
           ("read", "create", "update", "touch", "delete", "count", "gc")}


class Engine:
    """Shared session logic bound to one provider and one :class:`ManagerConfig`."""

    __slots__ = (
        "_valid", "absolute", "codec", "config", "idle", "ids", "provider", "refresh_step",
        "sealer",
    )

    def __init__(self, provider: BaseProvider, config: ManagerConfig) -> None:
        self.provider = provider
        self.config = config
        self.codec = config.codec
        self.ids = SessionIDs(config.session_id_length, config.session_id_prefix)
        self.idle = float(config.idle_timeout)
        self.absolute = float(config.absolute_lifetime)
        self.refresh_step = self.idle * REFRESH_FRACTION
        #: Set for a client-side provider: sessions are sealed into the cookie.
        self.sealer: Sealer | None = None
        if provider.client_side:
            if not isinstance(provider, Sealer):
                raise TypeError(f"{type(provider).__name__} is client-side but cannot seal")
            self.sealer = provider
        # What a client-supplied ID must look like before anything looks it up.
        self._valid = self.sealer.valid_token if self.sealer is not None else self.ids.matches

    # -- running plans ----------------------------------------------------------------

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        return StoreUnavailableError(
            f"session store {type(self.provider).__name__} is unavailable: {exc}"
        )

    def run(self, plan: Plan) -> None:
        """Run ``plan`` with the provider's blocking primitives."""
        provider = self.provider
        try:
            for name, args, out in plan:
                out[0] = getattr(provider, name)(*args)
        except provider.unavailable_errors as exc:
            raise self._unavailable(exc) from exc

    async def arun(self, plan: Plan) -> None:
        """Run ``plan`` with the provider's async primitives."""
        provider = self.provider
        if not provider.blocking:
            self.run(plan)  # nothing would ever suspend: skip the awaits
            return
        try:
            for name, args, out in plan:
                out[0] = await getattr(provider, _ANAMES[name])(*args)
        except provider.unavailable_errors as exc:
            raise self._unavailable(exc) from exc

    def run_op(self, name: str, *args: Any) -> Any:
        """Call one primitive, with errors translated as in :meth:`run`."""
        try:
            return getattr(self.provider, name)(*args)
        except self.provider.unavailable_errors as exc:
            raise self._unavailable(exc) from exc

    async def arun_op(self, name: str, *args: Any) -> Any:
        """Async twin of :meth:`run_op`."""
        if not self.provider.blocking:
            return self.run_op(name, *args)
        try:
            return await getattr(self.provider, _ANAMES[name])(*args)
        except self.provider.unavailable_errors as exc:
            raise self._unavailable(exc) from exc

    # -- records ----------------------------------------------------------------------

    def _encode(self, created: float, data: dict[str, Any]) -> bytes:
        # The creation time rides in front of the codec's bytes: the codec sees only the
        # application's data, and absolute expiry needs no second lookup.
        return _CREATED.pack(created) + self.codec.encode(data)

    def _decode(self, record: Record | None, now: float) -> tuple[float, dict[str, Any]] | None:
        if record is None or record.expires_at <= now:
            return None
        payload = record.payload
        try:
            (created,) = _CREATED.unpack_from(payload)
            data = self.codec.decode(payload[8:])
        except (DecodeError, struct.error, TypeError):
            return None  # damaged or foreign: an empty session, never an error page
        if created + self.absolute <= now:
            return None
        return created, data

    def _deadline(self, created: float, now: float) -> float:
        end = created + self.absolute
        idle_end = now + self.idle
        return idle_end if idle_end < end else end

    def exists(self, sid: str) -> bool:
        """Whether a live, readable session ``sid`` exists."""
        return self._decode(self.run_op("read", sid), time.time()) is not None

    # -- opening and loading ----------------------------------------------------------

    def open(self, sid: str | None, secure: bool = False, async_mode: bool = False) -> SessionStore:
        """A session for a client-supplied ``sid``; a malformed one gets a fresh ID at once."""
        if sid is not None and self._valid(sid):
            return SessionStore(self, sid, True, secure, async_mode)
        session = SessionStore(self, self.ids.new(), False, secure, async_mode)
        session._expire_cookie = sid is not None  # a malformed cookie: have it dropped
        return session

    def load(self, s: SessionStore) -> None:
        """Read ``s`` from the store; an unknown, expired or damaged ID becomes a fresh one."""
        if s._async and self.provider.blocking:
            raise SessionModeError(
                "this session is not loaded and its provider does I/O: call "
                "`await session.aload()` first (the ASGI middleware does it for you)"
            )
        try:  # run_op("read") inlined: this is on every request that uses its session
            record = self.provider.read(s._sid)
        except self.provider.unavailable_errors as exc:
            raise self._unavailable(exc) from exc
        self._adopt(s, record)

    async def aload(self, s: SessionStore) -> None:
        """Async twin of :meth:`load`."""
        self._adopt(s, await self.arun_op("read", s._sid))

    def _adopt(self, s: SessionStore, record: Record | None) -> None:
        decoded = self._decode(record, time.time())
        if decoded is None:
            s._expire_cookie = s._from_client  # stop the client sending a dead ID
            s._sid = self.ids.new()
            s._is_new = True
        else:
            assert record is not None
            s._created, s._data = decoded
            s._version = record.version
            s._expires_at = record.expires_at
            s._is_new = False
        s._loaded = True

    # -- changes ----------------------------------------------------------------------

    @staticmethod
    def mutated_keys(s: SessionStore) -> list[str]:
        """Keys whose mutable values were changed in place since they were read."""
        return [
            key
            for key, before in s._snapshots.items()
            if key not in s._changes and key in s._data and s._data[key] != before
        ]

    @staticmethod
    def _reapply(s: SessionStore, current: dict[str, Any]) -> dict[str, Any]:
        """This request's changes applied over a concurrent request's saved data."""
        data = {} if s._cleared else current
        for key, value in s._changes.items():
            if value is DELETED:
                data.pop(key, None)
            else:
                data[key] = value
        return data

    def _committed(self, s: SessionStore, record: Record, created: float) -> None:
        s._version = record.version
        s._expires_at = record.expires_at
        s._created = created
        s._changes.clear()
        s._snapshots.clear()
        s._cleared = False
        if self.config.cookie_life_time:
            s._send_id = True  # slide the persistent cookie with the server deadline

    # -- saving -----------------------------------------------------------------------

    def release(self, s: SessionStore) -> Plan | None:
        """The plan that saves what ``s`` changed — create, compare-and-set update, or
        refresh of the idle deadline — or ``None`` when the store need not be touched."""
        if not s._loaded:
            return None  # never used: no store access at all
        if s._snapshots:
            for key in self.mutated_keys(s):
                s._changes[key] = s._data[key]
        if self.sealer is not None:
            self._seal(s, self.sealer)
            return None
        if s._is_new:
            if s._data or s._old_sid is not None:
                return self._save_new(s, time.time())
            return None
        if s._changes or s._cleared:
            return self._save_changes(s, time.time())
        if s._refresh_checked:
            return None  # a later release in the same request: the deadline is current
        s._refresh_checked = True
        if self.provider.refreshes_on_read:
            # The read itself moved the deadline. A persistent cookie must move with it:
            # a deadline a full idle timeout away means it was refreshed just now.
            if self.config.cookie_life_time and (
                s._expires_at - time.time() >= self.idle - FRESH_WINDOW
            ):
                s._send_id = True
            return None
        expires_at = self._deadline(s._created, time.time())
        if expires_at - s._expires_at >= self.refresh_step:
            return self._touch(s, expires_at)
        return None

    def _seal(self, s: SessionStore, sealer: Sealer) -> None:
        """Client-side sessions: every change, or a due refresh, is a new cookie value."""
        now = time.time()
        if s._is_new:
            rotated, s._old_sid = s._old_sid is not None, None
            if not s._data:
                s._expire_cookie = s._expire_cookie or rotated
                return
            created, version = now, 1
        elif s._changes or s._cleared:
            created, version = s._created, s._version + 1
        elif s._refresh_checked or (
            self._deadline(s._created, now) - s._expires_at < self.refresh_step
        ):
            return
        else:
            created, version = s._created, s._version
        s._refresh_checked = True
        record = Record(self._encode(created, s._data), self._deadline(created, now), version)
        token = sealer.seal(record)
        size = len(self._cookie(token, s))
        if size > COOKIE_LIMIT:
            raise SessionTooLarge(size, COOKIE_LIMIT)
        s._sid = token
        s._is_new = False
        s._send_id = True
        s._expire_cookie = False
        self._committed(s, record, created)

    def _touch(self, s: SessionStore, expires_at: float) -> Plan:
        out: list[Any] = [None]
        yield "touch", (s._sid, expires_at), out
        if out[0]:
            s._expires_at = expires_at
            if self.config.cookie_life_time:
                s._send_id = True

    def _save_new(self, s: SessionStore, now: float) -> Plan:
        old_sid, s._old_sid = s._old_sid, None
        if s._data:
            record = Record(self._encode(now, s._data), self._deadline(now, now), 1)
            out: list[Any] = [None]
            while True:
                yield "create", (s._sid, record), out
                if out[0]:
                    break
                s._sid = self.ids.new()  # an ID collision: 2**-128, but never overwrite
            s._is_new = False
            s._send_id = True
            s._expire_cookie = False
            self._committed(s, record, now)
        elif old_sid is not None:
            s._expire_cookie = True  # the old session goes and nothing replaces it
        if old_sid is not None:
            yield "delete", (old_sid,), [None]

    def _save_changes(self, s: SessionStore, now: float) -> Plan:
        data, version, created = s._data, s._version, s._created
        deadline = self._deadline(created, now)
        out: list[Any] = [None]
        for _ in range(MAX_SAVE_ATTEMPTS):
            record = Record(self._encode(created, data), deadline, version + 1)
            yield "update", (s._sid, record, version), out
            if out[0]:
                s._data = data
                s._version = version + 1
                s._expires_at = deadline
                s._changes.clear()
                if s._snapshots:
                    s._snapshots.clear()
                s._cleared = False
                s._refresh_checked = True  # the write just set the deadline
                if self.config.cookie_life_time:
                    s._send_id = True  # slide the persistent cookie with the server deadline
                return
            # Lost a race, or the session is gone. Reload; re-apply only our own changes.
            yield "read", (s._sid,), out
            current: Record | None = out[0]
            decoded = self._decode(current, now)
            if decoded is None:
                # Destroyed or regenerated meanwhile: never re-create it.
                s._changes.clear()
                s._cleared = False
                s._data = {}
                s._is_new = True
                s._sid = self.ids.new()
                return
            assert current is not None
            data, version = self._reapply(s, decoded[1]), current.version
        raise SessionConflictError(
            f"gave up saving a session after {MAX_SAVE_ATTEMPTS} concurrent-update conflicts"
        )

    # -- ID changes -------------------------------------------------------------------

    def regenerate(self, s: SessionStore, new_sid: str | None = None) -> str:
        """Give ``s`` a new ID now; the data moves to it, and the old ID is deleted, on
        release. No I/O: the session must already be loaded."""
        if new_sid is not None and not self.ids.is_valid(new_sid):
            raise ValueError("new_sid does not have the shape of this manager's session IDs")
        if not s._is_new and s._old_sid is None:
            s._old_sid = s._sid
        s._is_new = True
        s._sid = new_sid or self.ids.new()
        return s._sid

    def destroy(self, s: SessionStore) -> Plan:
        """Delete ``s`` from the store and turn it into a fresh, empty session."""
        doomed = [sid for sid in (s._old_sid, s._sid if not s._is_new or not s._loaded else None)
                  if sid is not None]
        for sid in doomed:
            yield "delete", (sid,), [None]
        s._expire_cookie = s._from_client or bool(doomed)
        s._sid = self.ids.new()
        s._old_sid = None
        s._data = {}
        s._changes.clear()
        s._snapshots.clear()
        s._cleared = False
        s._is_new = True
        s._loaded = True
        s._send_id = False

    # -- response headers -------------------------------------------------------------

    def _cookie(self, value: str | None, s: SessionStore) -> str:
        """The ``Set-Cookie`` value carrying ``value``, or deleting the cookie if ``None``."""
        cfg = self.config
        return dump_cookie(
            cfg.cookie_name,
            "" if value is None else value,
            max_age=0 if value is None else (cfg.cookie_life_time or None),
            path=cfg.cookie_path,
            domain=cfg.domain or None,
            secure=cfg.secure or s._secure,
            httponly=not cfg.disable_http_only,
            samesite=cfg.cookie_same_site,
        )

    def response_headers(self, s: SessionStore, headers: list[tuple[str, str]]) -> None:
        """Append the headers the response needs after ``s`` was released."""
        cfg = self.config
        if s._accessed:
            headers.append(("Vary", "Cookie"))
        if not (s._send_id or s._expire_cookie):
            return
        deleting = not s._send_id
        if cfg.enable_set_cookie or self.sealer is not None:  # a sealed session IS the cookie
            headers.append(("Set-Cookie", self._cookie(None if deleting else s._sid, s)))
        if cfg.enable_sid_in_http_header:
            headers.append((cfg.session_name_in_http_header, "" if deleting else s._sid))
        # A response that carries the ID must never be cached: no-store replaces whatever
        # caching the application asked for.
        headers[:] = [h for h in headers if h[0].lower() != "cache-control"]
        headers.append(("Cache-Control", "no-store"))
        s._send_id = False
        s._expire_cookie = False
