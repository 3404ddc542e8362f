"""The client side of the loop: a minimal cookie jar, shared by every peer.

It does what a browser does for one site and path, and nothing more: remember the cookies
a response sets, forget the ones it deletes, and send them all back on the next request.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CookieJar", "RoundTripError", "check_counter"]


class RoundTripError(AssertionError):
    """A peer's session did not survive the request loop (the counter came back wrong)."""


def _deletes(value: str, attributes: list[str]) -> bool:
    if value in ("", '""', "''"):
        return True
    for attribute in attributes:
        name, _, arg = attribute.partition("=")
        if name.strip().lower() == "max-age" and arg.strip().lstrip("-").isdigit():
            return int(arg) <= 0
    return False


class CookieJar:
    """Cookies for one site; :attr:`header` is the ``Cookie`` request header ("" if none)."""

    __slots__ = ("_cookies", "header")

    def __init__(self) -> None:
        self._cookies: dict[str, str] = {}
        self.header = ""

    def update(self, set_cookies: Iterable[str]) -> None:
        """Apply a response's ``Set-Cookie`` header values."""
        changed = False
        for set_cookie in set_cookies:
            pair, *attributes = set_cookie.split(";")
            name, sep, value = pair.partition("=")
            if not sep:
                continue
            name, value = name.strip(), value.strip()
            if _deletes(value, attributes):
                changed |= self._cookies.pop(name, None) is not None
            elif self._cookies.get(name) != value:
                self._cookies[name] = value
                changed = True
        if changed:
            self.header = "; ".join(f"{k}={v}" for k, v in self._cookies.items())

    def __len__(self) -> int:
        return len(self._cookies)


def check_counter(peer: str, body: bytes, requests: int) -> None:
    """Raise :class:`RoundTripError` unless the last response's counter is ``requests``."""
    if body != str(requests).encode():
        raise RoundTripError(
            f"{peer}: the counter reached {body!r} after {requests} requests; the session "
            "cookie did not round-trip, so this peer's timing would be meaningless"
        )
