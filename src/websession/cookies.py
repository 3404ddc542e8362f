"""Reading the session cookie from a ``Cookie`` header and building ``Set-Cookie``."""

from __future__ import annotations

import re
import time
from email.utils import formatdate

__all__ = ["dump_cookie", "parse_cookie"]

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VALUE = re.compile(r'[\x21\x23-\x2b\x2d-\x3a\x3c-\x5b\x5d-\x7e]*')
_SAMESITE = {"lax": "Lax", "strict": "Strict", "none": "None"}


def parse_cookie(header: str, name: str) -> str | None:
    """Return the value of the first cookie called ``name`` in a ``Cookie`` header.

    Browsers send the most specific path first, so the first match is the one that counts.
    Surrounding double quotes are removed; nothing is unescaped.
    """
    target = name + "="
    if header.startswith(target):  # the common case: our cookie first, or alone
        end = header.find(";")
        value = header[len(target) : end if end >= 0 else None].strip()
    elif target not in header:
        return None
    else:
        for part in header.split(";"):
            key, sep, value = part.partition("=")
            if sep and key.strip() == name:
                value = value.strip()
                break
        else:
            return None
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value


def dump_cookie(
    name: str,
    value: str,
    *,
    max_age: int | None = None,
    path: str = "/",
    domain: str | None = None,
    secure: bool = False,
    httponly: bool = True,
    samesite: str | None = "Lax",
) -> str:
    """Build a ``Set-Cookie`` header value.

    ``max_age=None`` makes a browser-session cookie; ``max_age=0`` deletes the cookie
    (both ``Max-Age=0`` and an ``Expires`` in the past are sent, for old clients).
    """
    if not _TOKEN.fullmatch(name):
        raise ValueError(f"invalid cookie name {name!r}")
    if not _VALUE.fullmatch(value):
        raise ValueError(f"invalid cookie value for {name!r}")
    parts = [f"{name}={value}"]
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
        expires = 0.0 if max_age <= 0 else time.time() + max_age
        parts.append("Expires=" + formatdate(expires, usegmt=True))
    if path:
        parts.append(f"Path={path}")
    if domain:
        parts.append(f"Domain={domain}")
    if secure:
        parts.append("Secure")
    if httponly:
        parts.append("HttpOnly")
    if samesite:
        normal = _SAMESITE.get(samesite.lower())
        if normal is None:
            raise ValueError(f"SameSite must be Lax, Strict or None, not {samesite!r}")
        parts.append(f"SameSite={normal}")
    return "; ".join(parts)
