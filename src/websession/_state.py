"""SessionState: everything known about one session during one request, and every change
to it. The engine decides what happens to a session; this object remembers it.

Each transition (adopt a loaded record, record a change, commit a save, rotate the ID,
start afresh, note what the response must say) is one method here, written once; no
other class writes these attributes. Other modules read them.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .providers.base import Record

__all__ = ["DELETED", "Lifetime", "SessionState"]

#: Marks a key deleted in :attr:`SessionState.changes`.
DELETED: Any = object()
_MISSING: Any = object()


#: A session's own lifetime: idle timeout, absolute lifetime (``None``: the manager's) and
#: whether its cookie persists (``None``: as the manager's settings say).
Lifetime = tuple[float | None, float | None, bool | None]


class SessionState:
    """One session's state during one request.

    Identity: :attr:`sid` (the ID, or for a client-side session the sealed value),
    :attr:`from_client` (the client sent it: it must be looked up before it is trusted),
    :attr:`alternates` (other well-formed IDs the same request sent, tried in order if this
    one does not load),
    :attr:`old_sid` (the ID a regeneration left behind, deleted when the session is saved).
    Store facts: :attr:`loaded`, :attr:`is_new` (not in the store), :attr:`created`,
    :attr:`expires_at`, :attr:`version`, :attr:`refreshed` (the read itself moved the
    deadline). :attr:`lifetime`: its own :data:`Lifetime`, or ``None`` for the manager's
    (one attribute, so the usual session costs one test); :attr:`forced`: write even
    without changes. Changes: :attr:`data`, :attr:`changes` (key -> value or :data:`DELETED`),
    :attr:`cleared` (a flush), :attr:`snapshots` (copies of mutable values, to find in-place
    changes; ``None`` until the first). Response: :attr:`send_id`, :attr:`expire_cookie`.
    :attr:`settled`: nothing is left for a release to do (every transition that could give
    it work clears it), so a second release in one request costs nothing.
    """

    # Every attribute costs each request a store when the state is made: keep them few.
    __slots__ = (
        "alternates",
        "changes",
        "cleared",
        "created",
        "data",
        "expire_cookie",
        "expires_at",
        "forced",
        "from_client",
        "handle",
        "is_new",
        "lifetime",
        "lifetime_set",
        "loaded",
        "old_sid",
        "refresh_checked",
        "refreshed",
        "send_id",
        "settled",
        "sid",
        "snapshots",
        "version",
    )

    def __init__(self, sid: str, from_client: bool, expire_cookie: bool = False,
                 alternates: tuple[str, ...] = ()) -> None:
        self.sid = sid
        self.from_client = from_client
        # A client-supplied ID must be looked up before it can be trusted; a fresh one is
        # known to be new and empty.
        self.loaded = self.is_new = not from_client
        self.data: dict[str, Any] = {}
        self.changes: dict[str, Any] = {}
        self.snapshots: dict[str, Any] | None = None
        self.cleared = self.refreshed = self.refresh_checked = self.send_id = False
        self.forced = self.lifetime_set = False
        self.created = self.expires_at = 0.0
        self.version = 0
        self.old_sid: str | None = None
        self.expire_cookie = expire_cookie
        self.handle: Any = None
        self.alternates = alternates
        self.settled = True  # not loaded, or new and empty: nothing to save
        self.lifetime: Lifetime | None = None

    # -- loading ----------------------------------------------------------------------

    def adopt(self, decoded: tuple[float, dict[str, Any], Lifetime | None],
              record: Record) -> None:
        """The store had this session: take its record (``decoded``: its creation time,
        data and own lifetime, if it has one)."""
        self.created, self.data, self.lifetime = decoded
        self.version = record.version
        self.expires_at = record.expires_at
        self.refreshed = record.refreshed
        self.is_new = False
        self.loaded = True
        self.settled = False  # the idle deadline may be due for a refresh

    def attach(self, handle: Any) -> None:
        """A seed-style provider's own store object now holds this session's data."""
        self.handle = handle
        self.loaded = True
        self.is_new = False

    def try_alternate(self) -> bool:
        """The client's ID did not load: move to the next one it sent, if any."""
        if not self.alternates:
            return False
        self.sid, self.alternates = self.alternates[0], self.alternates[1:]
        return True

    def start_fresh(self, sid: str, *, expire_cookie: bool) -> None:
        """Continue as a new, empty, unsaved session under ``sid``.

        ``expire_cookie``: the response must drop the cookie the client sent (its ID was
        unknown, expired or destroyed) unless a new one replaces it.
        """
        self.sid = sid
        self.old_sid = None
        self.data = {}
        self.changes.clear()
        self.snapshots = None
        self.cleared = False
        self.is_new = True
        self.loaded = True
        self.send_id = False
        self.expire_cookie = expire_cookie
        self.handle = None
        self.settled = True
        self.forced = self.lifetime_set = False
        self.lifetime = None

    # -- the application's changes ----------------------------------------------------

    def remember(self, key: str, value: Any) -> None:
        """Keep a copy of the mutable ``value`` just read, to see in-place changes later."""
        if self.snapshots is None:
            self.snapshots = {}
        self.snapshots[key] = copy.deepcopy(value)
        self.settled = False

    def set(self, key: str, value: Any) -> None:
        """Record ``key = value``."""
        self.data[key] = value
        self.changes[key] = value
        self.settled = False

    def delete(self, key: str) -> None:
        """Record the removal of ``key`` (a stored session may hold it even if we do not)."""
        if self.data.pop(key, _MISSING) is not _MISSING or not self.is_new:
            self.changes[key] = DELETED
        self.settled = False

    def flush(self) -> None:
        """Record the removal of every value."""
        self.data.clear()
        self.changes.clear()
        self.snapshots = None
        self.cleared = True
        self.settled = False

    def set_lifetime(self, idle: float | None, absolute: float | None,
                     persistent: bool | None) -> None:
        """Give the session a lifetime of its own (``None``: the manager's); the next
        release saves it."""
        self.lifetime = (None if idle is None and absolute is None and persistent is None
                         else (idle, absolute, persistent))
        self.lifetime_set = True
        self.settled = False
        if not self.is_new:  # a new session is stored with it if it gets data
            self.forced = True

    def concurrent_lifetime(self, lifetime: Lifetime | None) -> None:
        """Another request saved first with ``lifetime``: keep it, unless this request set
        a lifetime of its own (then ours is the later word)."""
        if not self.lifetime_set:
            self.lifetime = lifetime

    def force_save(self) -> None:
        """Make the next release write the session even if no value changed."""
        self.forced = True
        self.settled = False

    def mutated_keys(self) -> list[str]:
        """Keys whose mutable values were changed in place since they were read."""
        if not self.snapshots:
            return []
        return [
            key
            for key, before in self.snapshots.items()
            if key not in self.changes and key in self.data and self.data[key] != before
        ]

    def collect_mutations(self) -> None:
        """Turn in-place changes of mutable values into recorded changes (callers check
        :attr:`snapshots` first: most requests have none)."""
        for key in self.mutated_keys():
            self.changes[key] = self.data[key]

    def reapply(self, current: dict[str, Any]) -> dict[str, Any]:
        """This request's changes applied over ``current``, a concurrent request's data."""
        data = {} if self.cleared else current
        for key, value in self.changes.items():
            if value is DELETED:
                data.pop(key, None)
            else:
                data[key] = value
        return data

    # -- saving -----------------------------------------------------------------------

    def committed(self, data: dict[str, Any], record: Record, send_id: bool) -> None:
        """The store (or the cookie) now holds ``data`` as ``record`` (its version and
        deadline), under this ID.

        ``send_id``: the response must carry the ID (a new one, or a persistent cookie
        whose ``Max-Age`` slides with the server's deadline).
        """
        self.data = data
        self.version = record.version
        self.expires_at = record.expires_at
        self.changes.clear()
        self.snapshots = None
        self.cleared = self.forced = self.lifetime_set = False
        self.refresh_checked = self.settled = True  # the write just set the deadline
        if send_id:
            self.send_id = True
            self.expire_cookie = False

    def stored(self, sid: str, created: float, record: Record) -> None:
        """``record``, under the new ID (or sealed value) ``sid``, now holds the session:
        a new one, one moved to a new ID, or a client-side session sealed afresh. The
        response carries the new ID."""
        self.sid = sid
        self.created = created
        self.is_new = False
        self.old_sid = None
        self.committed(self.data, record, True)

    def deadline_moved(self, expires_at: float, *, send_id: bool) -> None:
        """A refresh moved the idle deadline to ``expires_at`` (or found it current)."""
        self.expires_at = expires_at
        self.refresh_checked = True
        self.settled = True
        if send_id:
            self.send_id = True

    def refresh_done(self, *, send_id: bool = False) -> None:
        """This request's refresh of the deadline is settled: later releases skip it.

        ``send_id``: the deadline moved (the read refreshed it), so a persistent cookie
        must move with it.
        """
        self.refresh_checked = True
        self.settled = True
        if send_id:
            self.send_id = True

    def retire_old_sid(self) -> str | None:
        """Hand over the ID a regeneration left behind, to be deleted; forget it."""
        old, self.old_sid = self.old_sid, None
        return old

    def dropped(self) -> None:
        """Nothing is left to store (a regenerated session emptied): drop the cookie."""
        self.expire_cookie = True

    # -- ID changes -------------------------------------------------------------------

    def rotate(self, sid: str) -> None:
        """Move to the new ID ``sid``; the old one (if stored) is deleted on the next save."""
        if not self.is_new and self.old_sid is None:
            self.old_sid = self.sid
        self.is_new = True
        self.sid = sid
        self.settled = False

    def new_id(self, sid: str) -> None:
        """An ID collision on create: take ``sid`` instead (2**-128, but never overwrite)."""
        self.sid = sid

    def announce(self, sid: str) -> None:
        """The session now lives under ``sid``, and the response must say so."""
        self.sid = sid
        self.send_id = True
        self.expire_cookie = False

    # -- the response -----------------------------------------------------------------

    def headers_sent(self) -> None:
        """The response now carries what :attr:`send_id` / :attr:`expire_cookie` asked."""
        self.send_id = False
        self.expire_cookie = False
