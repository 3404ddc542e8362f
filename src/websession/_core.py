"""The engine: everything about a session that is not I/O, written once for both modes.

Each operation that needs the store is a *plan*: a generator that yields :class:`Op`
requests ("read sid", "update sid if version is 3") and receives their results. :meth:`run`
executes a plan with a provider's sync primitives, :meth:`arun` with their async twins, so
the logic — expiry, merging of concurrent changes, regeneration — exists exactly once.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ._ids import SessionIDs
from ._session import DELETED, SessionStore
from .codecs import DecodeError
from .cookies import dump_cookie
from .exceptions import SessionConflictError, StoreUnavailableError
from .providers.base import BaseProvider, Record

if TYPE_CHECKING:
    from ._config import ManagerConfig

__all__ = ["Engine", "Op", "Plan"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Op:
    """A request for one provider primitive, by its sync and async names."""

    name: str
    aname: str
    args: tuple[Any, ...]


Plan = Generator[Op, Any, T]

# Enough for heavy contention on one session; each retry re-reads and re-applies.
MAX_SAVE_ATTEMPTS = 200
# A read-only request refreshes the idle deadline only once this fraction of the idle
# timeout has passed since the last write, so busy sessions are not written on every read.
REFRESH_FRACTION = 0.1


def _op(name: str, *args: Any) -> Op:
    return Op(name, "a" + name, args)


class Engine:
    """Shared session logic bound to one provider and one :class:`ManagerConfig`."""

    __slots__ = ("absolute", "codec", "config", "idle", "ids", "provider", "refresh_step")

    def __init__(self, provider: BaseProvider, config: ManagerConfig) -> None:
        self.provider = provider
        self.config = config
        self.codec = config.codec
        self.ids = SessionIDs(config.session_id_length, config.session_id_prefix)
        self.idle = float(config.idle_timeout)
        self.absolute = float(config.absolute_lifetime)
        self.refresh_step = self.idle * REFRESH_FRACTION

    # -- running plans ----------------------------------------------------------------

    def run(self, plan: Plan[T]) -> T:
        """Run ``plan`` with the provider's blocking primitives."""
        provider = self.provider
        try:
            op = next(plan)
            while True:
                op = plan.send(getattr(provider, op.name)(*op.args))
        except StopIteration as stop:
            result: T = stop.value
            return result
        except provider.unavailable_errors as exc:
            raise StoreUnavailableError(
                f"session store {type(provider).__name__} is unavailable: {exc}"
            ) from exc

    async def arun(self, plan: Plan[T]) -> T:
        """Run ``plan`` with the provider's async primitives."""
        provider = self.provider
        try:
            op = next(plan)
            while True:
                op = plan.send(await getattr(provider, op.aname)(*op.args))
        except StopIteration as stop:
            result: T = stop.value
            return result
        except provider.unavailable_errors as exc:
            raise StoreUnavailableError(
                f"session store {type(provider).__name__} is unavailable: {exc}"
            ) from exc

    @staticmethod
    def single(name: str, *args: Any) -> Plan[Any]:
        """A plan of one primitive call (``count``, ``gc``…)."""
        return (yield _op(name, *args))

    def run_op(self, name: str, *args: Any) -> Any:
        """Run one primitive, with errors translated as in :meth:`run`."""
        return self.run(self.single(name, *args))

    # -- opening ----------------------------------------------------------------------

    def open(
        self, sid: str | None, *, secure: bool = False, async_mode: bool = False
    ) -> SessionStore:
        """A session for a client-supplied ``sid``; a malformed one gets a fresh ID at once."""
        if sid is not None and self.ids.is_valid(sid):
            return SessionStore(self, sid, from_client=True, secure=secure, async_mode=async_mode)
        return SessionStore(self, self.ids.new(), from_client=False, secure=secure,
                            async_mode=async_mode)

    def _decode(self, record: Record | None, now: float) -> tuple[float, dict[str, Any]] | None:
        if record is None or record.expires_at <= now:
            return None
        try:
            envelope = self.codec.decode(record.payload)
            created = float(envelope["c"])
            data = envelope["d"]
        except (DecodeError, KeyError, TypeError, ValueError):
            return None  # damaged or foreign: an empty session, never an error page
        if not isinstance(data, dict) or created + self.absolute <= now:
            return None
        return created, data

    def _encode(self, created: float, data: dict[str, Any]) -> bytes:
        return self.codec.encode({"c": created, "d": data})

    def _deadline(self, created: float, now: float) -> float:
        return min(now + self.idle, created + self.absolute)

    def load(self, s: SessionStore) -> Plan[None]:
        """Read ``s`` from the store; an unknown, expired or damaged ID becomes a fresh one."""
        record = yield _op("read", s._sid)
        now = time.time()
        decoded = self._decode(record, now)
        if decoded is None or record is None:
            s._sid = self.ids.new()
            s._is_new = True
        else:
            s._created, s._data = decoded
            s._version = record.version
            s._expires_at = record.expires_at
            s._is_new = False
        s._loaded = True

    def exists(self, sid: str) -> Plan[bool]:
        """Whether a live, readable session ``sid`` exists."""
        record = yield _op("read", sid)
        return self._decode(record, time.time()) is not None

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

    def release(self, s: SessionStore) -> Plan[None]:
        """Save what ``s`` changed: create, compare-and-set update, or refresh expiry."""
        if not s._loaded:
            return  # never touched: no store access at all
        for key in self.mutated_keys(s):
            s._changes[key] = s._data[key]
        now = time.time()
        if s._is_new:
            yield from self._save_new(s, now)
        elif s._changes or s._cleared:
            yield from self._save_changes(s, now)
        elif self._deadline(s._created, now) - s._expires_at >= self.refresh_step:
            expires_at = self._deadline(s._created, now)
            if (yield _op("touch", s._sid, expires_at)):
                s._expires_at = expires_at
                if self.config.cookie_life_time:
                    s._send_id = True

    def _save_new(self, s: SessionStore, now: float) -> Plan[None]:
        old_sid, s._old_sid = s._old_sid, None
        if s._data:
            payload = self._encode(now, s._data)
            record = Record(payload, self._deadline(now, now), 1)
            while not (yield _op("create", s._sid, record)):
                s._sid = self.ids.new()  # an ID collision: 2**-128, but never overwrite
            s._is_new = False
            s._send_id = True
            s._expire_cookie = False
            self._committed(s, record, now)
        elif old_sid is not None:
            s._expire_cookie = True  # the old session goes and nothing replaces it
        if old_sid is not None:
            yield _op("delete", old_sid)

    def _save_changes(self, s: SessionStore, now: float) -> Plan[None]:
        data, version = s._data, s._version
        for _ in range(MAX_SAVE_ATTEMPTS):
            record = Record(self._encode(s._created, data), self._deadline(s._created, now),
                            version + 1)
            if (yield _op("update", s._sid, record, version)):
                s._data = data
                self._committed(s, record, s._created)
                return
            # Lost a race, or the session is gone. Reload; re-apply only our own changes.
            current = yield _op("read", s._sid)
            decoded = self._decode(current, now)
            if decoded is None or current is None:
                # Destroyed or regenerated meanwhile: never re-create it.
                s._changes.clear()
                s._cleared = False
                s._data = {}
                s._is_new = True
                s._sid = self.ids.new()
                return
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
        for key in self.mutated_keys(s):
            s._changes[key] = s._data[key]
        s._is_new = True
        s._sid = new_sid or self.ids.new()
        return s._sid

    def destroy(self, s: SessionStore) -> Plan[None]:
        """Delete ``s`` from the store and turn it into a fresh, empty session."""
        doomed = [sid for sid in (s._old_sid, s._sid if not s._is_new or not s._loaded else None)
                  if sid is not None]
        for sid in doomed:
            yield _op("delete", sid)
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

    def response_headers(self, s: SessionStore, headers: list[tuple[str, str]]) -> None:
        """Append the headers the response needs after ``s`` was released."""
        cfg = self.config
        if s._accessed:
            headers.append(("Vary", "Cookie"))
        if not (s._send_id or s._expire_cookie):
            return
        deleting = not s._send_id
        if cfg.enable_set_cookie:
            headers.append(("Set-Cookie", dump_cookie(
                cfg.cookie_name,
                "" if deleting else s._sid,
                max_age=0 if deleting else (cfg.cookie_life_time or None),
                path=cfg.cookie_path,
                domain=cfg.domain or None,
                secure=cfg.secure or s._secure,
                httponly=not cfg.disable_http_only,
                samesite=cfg.cookie_same_site,
            )))
        if cfg.enable_sid_in_http_header:
            headers.append((cfg.session_name_in_http_header, "" if deleting else s._sid))
        headers.append(("Cache-Control", "no-store"))
        s._send_id = False
        s._expire_cookie = False
