"""Session ID generation and validation: one place decides what an ID may look like."""

from __future__ import annotations

import re
import secrets

from .exceptions import ConfigurationError

MIN_ID_BYTES = 16
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.\-]{0,64}")


class SessionIDs:
    """Issues IDs from :mod:`secrets` and tells well-formed IDs from anything else.

    An ID is ``prefix`` followed by ``2 * length`` lowercase hex digits, so a checked ID is
    safe as a file name, a Redis key or an SQL parameter before any provider sees it.
    """

    __slots__ = ("_length", "_pattern", "matches", "prefix")

    def __init__(self, length: int = MIN_ID_BYTES, prefix: str = "") -> None:
        if length < MIN_ID_BYTES:
            raise ConfigurationError(
                f"sessionIDLength: {length} bytes is below the {MIN_ID_BYTES}-byte (128-bit) "
                "minimum",
                key="sessionIDLength",
            )
        if length > 128:
            raise ConfigurationError(
                f"sessionIDLength: {length} bytes is above the 128-byte maximum",
                key="sessionIDLength",
            )
        if not _PREFIX_RE.fullmatch(prefix):
            raise ConfigurationError(
                "sessionIDPrefix: use at most 64 of the characters A-Z a-z 0-9 _ . -",
                key="sessionIDPrefix",
            )
        self._length = length
        self.prefix = prefix
        self._pattern = re.compile(re.escape(prefix) + f"[0-9a-f]{{{2 * length}}}")
        #: The bare check for a ``str``: truthy when it has the shape of an issued ID.
        self.matches = self._pattern.fullmatch

    def new(self) -> str:
        """Return a fresh random ID."""
        return self.prefix + secrets.token_hex(self._length)

    def is_valid(self, sid: object) -> bool:
        """Tell whether ``sid`` has the exact shape of an ID this manager issues."""
        return isinstance(sid, str) and self._pattern.fullmatch(sid) is not None
