"""SealEngine: sessions kept in the client, sealed into the cookie by a
:class:`~websession.providers.ClientSideProvider`. There is no store: loading opens the
cookie value, saving seals a new one, and nothing here does I/O."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from ._core import Engine
from ._session import SessionStore
from ._state import SessionState
from .exceptions import SessionTooLarge
from .providers.base import ClientSideProvider

if TYPE_CHECKING:
    from ._config import ManagerConfig

__all__ = ["COOKIE_LIMIT", "SealEngine"]

# The most a browser keeps of one Set-Cookie value (name, value and attributes).
COOKIE_LIMIT = 4093


class SealEngine(Engine):
    """The engine for client-side sessions: every change, or a due refresh, is a new
    sealed cookie value."""

    blocking = False
    cookie_is_session = True  # sent even when the manager's enableSetCookie is off

    def __init__(self, sealer: ClientSideProvider, config: ManagerConfig,
                 session_class: type[SessionStore] = SessionStore) -> None:
        super().__init__(config, session_class)
        self.sealer = sealer
        self.valid_client_id = sealer.valid_token

    def load(self, state: SessionState) -> None:
        """Open the sealed value the client sent."""
        while not self.adopt(state, self.sealer.unseal(state.sid)):
            pass  # a stale duplicate cookie: the next value the client sent

    async def aload(self, state: SessionState) -> None:
        """Same as :meth:`load`: opening a cookie does no I/O."""
        self.load(state)

    def release(self, state: SessionState) -> None:
        """Seal ``state`` into a new cookie value if it changed or its refresh is due."""
        if not state.loaded:
            return
        if state.snapshots:
            state.collect_mutations()
        now = time.time()
        if state.is_new:
            rotated = state.retire_old_sid() is not None
            if not state.data and not state.forced:
                if rotated:
                    state.dropped()
                return
            created, version = now, 1
        elif state.changes or state.cleared or state.forced:
            created, version = state.created, state.version + 1
        elif state.refresh_checked or not self.refresh_due(
            state, self.deadline(state, state.created, now)
        ):
            return
        else:
            created, version = state.created, state.version
        record = self.record(state, state.data, created, version, now)
        token = self.sealer.seal(record)
        # Measured with Secure, as over https: a session that fits, fits on every request.
        size = len(self.cookie(token, True, self.max_age(state)))
        if size > COOKIE_LIMIT:
            raise SessionTooLarge(size, COOKIE_LIMIT)
        state.stored(token, created, record)

    async def arelease(self, state: SessionState) -> None:
        """Same as :meth:`release`: sealing does no I/O."""
        self.release(state)

    def destroy(self, state: SessionState) -> None:
        """Expire the cookie; a copy the client kept stays valid until its deadline."""
        self.forget(state, bool(self.doomed_ids(state)))

    async def adestroy(self, state: SessionState) -> None:
        """Same as :meth:`destroy`."""
        self.destroy(state)

    cannot_bind = ("sessions kept in the cookie cannot be found by user or revoked: the "
                   "server keeps no record of them")
    cannot_scan = ("sessions kept in the cookie cannot be listed: each lives only in its "
                   "browser, and the server keeps no record of it")

    def count(self) -> int:
        """Sessions held by clients cannot be counted: 0, as in the seed."""
        return 0

    async def acount(self) -> int:
        """Same as :meth:`count`."""
        return 0

    def gc(self) -> int:
        """Nothing to collect: expiry is inside each sealed value."""
        return 0

    async def agc(self) -> int:
        """Same as :meth:`gc`."""
        return 0

    def close(self) -> None:
        """Close the sealer."""
        self.sealer.close()

    async def aclose(self) -> None:
        """Async twin of :meth:`close`."""
        await self.sealer.aclose()
