"""The cookie provider: sessions sealed into the cookie."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest

import websession
from websession import ConfigurationError, Manager, SessionTooLarge
from websession.providers.base import Record
from websession.providers.cookie import CookieProvider
from websession.testing import SessionConformance

KEY = "k" * 32


class TestCookieConformance(SessionConformance):
    client_side = True

    @pytest.fixture
    def provider(self) -> CookieProvider:
        return CookieProvider(KEY)


def flip_byte(token: str, index: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw[index] ^= 0x01
    return base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")


def env(cookie: str | None = None, name: str = "gosessionid") -> dict[str, Any]:
    e: dict[str, Any] = {"REQUEST_METHOD": "GET", "wsgi.url_scheme": "http"}
    if cookie is not None:
        e["HTTP_COOKIE"] = f"{name}={cookie}"
    return e


def cookie_value(headers: list[tuple[str, str]], name: str = "gosessionid") -> str:
    (value,) = [v for k, v in headers if k == "Set-Cookie" and v.startswith(name + "=")]
    return value.split(";", 1)[0].split("=", 1)[1]


def save(manager: Manager, cookie: str | None = None, **values: Any) -> str:
    session = manager.session_start(env(cookie, manager.config.cookie_name))
    session.update(values)
    headers: list[tuple[str, str]] = []
    session.session_release(headers)
    return cookie_value(headers, manager.config.cookie_name)


def load(manager: Manager, cookie: str) -> dict[str, Any]:
    return dict(manager.session_start(env(cookie, manager.config.cookie_name)))


def test_seed_config_with_nested_json_string() -> None:
    # The seed README's cookie example, with its JSON repaired (the original is invalid).
    manager = Manager(
        "cookie",
        '{"cookieName":"gosessionid","enableSetCookie":false,"gclifetime":3600,'
        '"ProviderConfig":"{\\"cookieName\\":\\"gosessionid\\",'
        '\\"securityKey\\":\\"beegocookiehashkey\\"}"}',
    )
    token = save(manager, user="ann")  # enableSetCookie=false: the cookie IS the session
    assert load(manager, token) == {"user": "ann"}


def test_provider_cookie_options_decide_the_cookie() -> None:
    manager = Manager("cookie", {"ProviderConfig": {
        "cookieName": "beego", "securityKey": KEY, "secure": True, "maxage": 600,
    }})
    session = manager.session_start(env())
    session["x"] = 1
    headers: list[tuple[str, str]] = []
    session.session_release(headers)
    (cookie,) = [v for k, v in headers if k == "Set-Cookie"]
    assert cookie.startswith("beego=")
    assert "Max-Age=600" in cookie
    assert "; Secure" in cookie


def test_nobody_can_read_the_cookie() -> None:
    manager = Manager(CookieProvider(KEY))
    token = save(manager, password_hint="the-plain-text-secret")
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b"the-plain-text-secret" not in raw
    assert b"password_hint" not in raw


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # another last character
    lambda t: flip_byte(t, -1),  # a flipped bit in the tag
    lambda t: t[: len(t) // 2],  # truncated
    lambda t: t[:10] + ("A" if t[10] != "A" else "B") + t[11:],  # tampered nonce
    lambda t: "B" * len(t),  # garbage of the right shape
    lambda t: base64.urlsafe_b64encode(b"\x02" + base64.urlsafe_b64decode(t + "==")[1:])
    .decode().rstrip("="),  # unknown format byte
])
def test_tampered_or_truncated_cookie_is_an_empty_session(mangle: Any) -> None:
    manager = Manager(CookieProvider(KEY))
    token = save(manager, user="ann")
    session = manager.session_start(env(mangle(token)))
    assert dict(session) == {}
    headers: list[tuple[str, str]] = []
    session.session_release(headers)
    assert any("Max-Age=0" in v for k, v in headers if k == "Set-Cookie")


def test_foreign_cookie_from_another_key_or_name_is_an_empty_session() -> None:
    token = save(Manager(CookieProvider("other-key-" * 4)), user="ann")
    assert load(Manager(CookieProvider(KEY)), token) == {}
    named = CookieProvider(KEY)
    named.configure({"securityKey": KEY, "securityName": "other-app"})
    assert load(Manager(named), save(Manager(CookieProvider(KEY)), user="ann")) == {}


def test_key_rotation_first_seals_all_open() -> None:
    old = Manager(CookieProvider("old-key-" * 4))
    rotated = Manager(CookieProvider(["new-key-" * 4, "old-key-" * 4]))
    token = save(old, user="ann")
    assert load(rotated, token) == {"user": "ann"}
    resealed = save(rotated, token, n=1)
    assert load(rotated, resealed) == {"user": "ann", "n": 1}
    assert load(old, resealed) == {}  # sealed with the new key
    assert load(Manager(CookieProvider("new-key-" * 4)), resealed) == {"user": "ann", "n": 1}


@pytest.mark.parametrize("config", [
    {"cookieName": "gosessionid"},
    {"securityKey": ""},
    {"securityKey": "short"},
    {"securityKey": []},
    {"securityKey": [KEY, "short"]},
    {"securityKey": KEY, "maxage": -1},
    {"securityKey": KEY, "colour": "blue"},
])
def test_bad_keys_and_options_are_configuration_errors(config: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        Manager("cookie", {"ProviderConfig": config})


def test_expiry_is_inside_the_sealed_value() -> None:
    provider = CookieProvider(KEY)
    expired = provider.seal(Record(b"x", time.time() - 1, 1))
    assert provider.unseal(expired) is None
    live = provider.seal(Record(b"x", time.time() + 60, 7))
    record = provider.unseal(live)
    assert record is not None
    assert (record.payload, record.version) == (b"x", 7)


def test_idle_refresh_reseals_the_cookie() -> None:
    manager = Manager(CookieProvider(KEY), max_lifetime=1)
    token = save(manager, user="ann")
    time.sleep(0.3)  # past a tenth of the idle timeout: a read re-seals with a new deadline
    session = manager.session_start(env(token))
    assert session["user"] == "ann"
    headers: list[tuple[str, str]] = []
    session.session_release(headers)
    fresh = cookie_value(headers)
    assert fresh != token
    time.sleep(0.8)
    assert load(manager, token) == {}  # the old value's deadline passed
    assert load(manager, fresh) == {"user": "ann"}


def test_oversized_session_raises_session_too_large() -> None:
    manager = Manager(CookieProvider(KEY))
    session = manager.session_start(env())
    session["blob"] = "x" * 5000
    with pytest.raises(SessionTooLarge) as info:
        session.session_release([])
    assert info.value.size > 4093
    assert str(info.value.size) in str(info.value)
    assert isinstance(info.value, websession.WebSessionError)


def test_a_session_just_under_the_limit_fits() -> None:
    manager = Manager(CookieProvider(KEY))
    session = manager.session_start(env())
    session["blob"] = "x" * 2900
    headers: list[tuple[str, str]] = []
    session.session_release(headers)
    (cookie,) = [v for k, v in headers if k == "Set-Cookie"]
    assert len(cookie) <= 4093


def test_destroyed_cookie_value_still_opens_until_expiry() -> None:
    # Documented limitation: a client-held session cannot be revoked.
    manager = Manager(CookieProvider(KEY))
    token = save(manager, user="ann")
    session = manager.session_start(env(token))
    session.destroy()
    headers: list[tuple[str, str]] = []
    session.session_release(headers)
    assert any("Max-Age=0" in v for k, v in headers if k == "Set-Cookie")
    assert load(manager, token) == {"user": "ann"}
    assert manager.get_active_session() == 0
    assert manager.gc() == 0


def test_values_are_json_inside() -> None:
    provider = CookieProvider(KEY)
    manager = Manager(provider)
    record = provider.unseal(save(manager, when="now"))
    assert record is not None
    assert json.loads(record.payload[8:]) == {"when": "now"}
