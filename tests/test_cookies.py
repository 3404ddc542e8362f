"""Cookie parsing and Set-Cookie building."""

from __future__ import annotations

import pytest

from websession.cookies import dump_cookie, parse_cookie


@pytest.mark.parametrize(("header", "expected"), [
    ("sid=abc", "abc"),
    ("a=1; sid=abc; b=2", "abc"),
    ('sid="abc"', "abc"),
    ("xsid=no; sid=yes", "yes"),
    ("sid=first; sid=second", "first"),
    ("other=1", None),
    ("", None),
    ("sid", None),
])
def test_parse_cookie(header: str, expected: str | None) -> None:
    assert parse_cookie(header, "sid") == expected


def test_dump_cookie_defaults_are_secure() -> None:
    assert dump_cookie("sid", "abc") == "sid=abc; Path=/; HttpOnly; SameSite=Lax"


def test_dump_cookie_all_attributes() -> None:
    value = dump_cookie("sid", "abc", max_age=60, domain="example.com", secure=True,
                        samesite="strict")
    assert value.startswith("sid=abc; Max-Age=60; Expires=")
    assert value.endswith("; Path=/; Domain=example.com; Secure; HttpOnly; SameSite=Strict")


def test_dump_cookie_deletion() -> None:
    value = dump_cookie("sid", "", max_age=0)
    assert "Max-Age=0" in value and "Expires=Thu, 01 Jan 1970 00:00:00 GMT" in value


@pytest.mark.parametrize(("name", "value"), [("s id", "x"), ("sid", "a;b"), ("sid", "a b")])
def test_dump_cookie_rejects_injection(name: str, value: str) -> None:
    with pytest.raises(ValueError, match="invalid cookie"):
        dump_cookie(name, value)
