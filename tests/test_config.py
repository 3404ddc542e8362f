"""ManagerConfig: the seed's JSON, Python names, and errors that say where and what."""

from __future__ import annotations

import json

import pytest

import websession
from websession import ConfigurationError, Manager, ManagerConfig, WebSessionError, parse_config

# The seed README's own examples, verbatim: not valid JSON.
SEED_FILE_EXAMPLE = '{"cookieName":"gosessionid","gclifetime":3600,"ProviderConfig","./tmp"}'
SEED_COOKIE_EXAMPLE = (
    '{"cookieName":"gosessionid","enableSetCookie":false,gclifetime":3600,'
    '"ProviderConfig":"{\\"cookieName\\":\\"gosessionid\\",\\"securityKey\\":\\"beegocookiehashkey\\"}"}'
)


def test_seed_json_keys_match_case_insensitively() -> None:
    cfg = parse_config(
        '{"COOKIENAME":"sid","GcLifeTime":60,"maxlifetime":30,"ProviderConfig":"./tmp",'
        '"providerconfig2":1}'.replace(',"providerconfig2":1', "")
    )
    assert (cfg.cookie_name, cfg.gc_lifetime, cfg.max_lifetime) == ("sid", 60, 30)
    assert cfg.provider_config == "./tmp"


def test_every_seed_key_is_understood() -> None:
    cfg = parse_config(json.dumps({
        "cookieName": "gosessionid", "enableSetCookie": False, "gclifetime": 10,
        "maxLifetime": 20, "disableHTTPOnly": True, "secure": True, "cookieLifeTime": 30,
        "providerConfig": "x", "domain": "example.com", "sessionIDLength": 20,
        "sessionIDPrefix": "p-", "cookieSameSite": 3, "EnableSidInHTTPHeader": True,
        "SessionNameInHTTPHeader": "Beegosessionid", "EnableSidInURLQuery": True,
    }))
    assert cfg == ManagerConfig(
        cookie_name="gosessionid", enable_set_cookie=False, gc_lifetime=10, max_lifetime=20,
        disable_http_only=True, secure=True, cookie_life_time=30, provider_config="x",
        domain="example.com", session_id_length=20, session_id_prefix="p-",
        cookie_same_site="Strict", enable_sid_in_http_header=True,
        session_name_in_http_header="Beegosessionid", enable_sid_in_url_query=True,
        codec=cfg.codec,
    )


def test_dict_python_names_and_keyword_overrides() -> None:
    cfg = parse_config({"cookie_name": "a", "gclifetime": 5}, cookie_name="b", max_lifetime=2)
    assert (cfg.cookie_name, cfg.gc_lifetime, cfg.max_lifetime) == ("b", 5, 2)
    again = parse_config(cfg, secure=True)
    assert again.cookie_name == "b" and again.secure


def test_max_lifetime_defaults_to_gc_lifetime_as_in_the_seed() -> None:
    assert parse_config('{"gclifetime": 120}').idle_timeout == 120
    assert parse_config('{"gclifetime": 120, "maxLifetime": 30}').idle_timeout == 30


@pytest.mark.parametrize(("text", "line", "column", "expected"), [
    (SEED_FILE_EXAMPLE, 1, 63, "Expecting ':' delimiter"),
    (SEED_COOKIE_EXAMPLE, 1, 53, "Expecting property name enclosed in double quotes"),
    ('{\n  "cookieName": "x",\n  "gclifetime": 3600,\n}', 4, 1, "Expecting property name"),
])
def test_invalid_json_says_where_and_what(text: str, line: int, column: int,
                                          expected: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Manager("memory", text)
    message = str(info.value)
    assert f"line {line}, column {column}" in message
    assert expected in message
    assert isinstance(info.value, WebSessionError)


def test_unknown_key_names_the_closest() -> None:
    with pytest.raises(ConfigurationError, match=r"'cookieNme'.*did you mean 'cookieName'"):
        parse_config('{"cookieNme": "x"}')
    with pytest.raises(ConfigurationError, match="did you mean 'gc_lifetime'"):
        parse_config({"gc_lifetme": 3})


@pytest.mark.parametrize(("config", "key"), [
    ('{"gclifetime": 0}', "gclifetime"),
    ('{"gclifetime": "3600"}', "gclifetime"),
    ('{"gclifetime": 36.5}', "gclifetime"),
    ('{"secure": "yes"}', "secure"),
    ('{"maxLifetime": -1}', "maxLifetime"),
    ('{"sessionIDLength": 8}', "sessionIDLength"),
    ('{"sessionIDPrefix": "../"}', "sessionIDPrefix"),
    ('{"cookieSameSite": 9}', "cookieSameSite"),
    ('{"cookieSameSite": "sometimes"}', "cookieSameSite"),
    ('{"cookieSameSite": "None"}', "cookieSameSite"),
    ('{"cookieName": "a b"}', "cookieName"),
    ('{"cookieName": "__Host-s"}', "secure"),
    ('{"cookieName": "__Host-s", "secure": true, "domain": "x.com"}', "domain"),
    ('{"EnableSidInHTTPHeader": true}', "SessionNameInHTTPHeader"),
    ('{"absoluteLifetime": 0}', "absoluteLifetime"),
])
def test_bad_values_name_their_key(config: str, key: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        parse_config(config)
    assert str(info.value).startswith(key)
    assert info.value.key == key


def test_duplicate_key_in_two_spellings_is_an_error() -> None:
    with pytest.raises(ConfigurationError, match="given twice"):
        parse_config('{"ProviderConfig": "a", "providerConfig": "b"}')


def test_same_site_accepts_go_integers_and_names() -> None:
    assert parse_config({"cookieSameSite": 0}).cookie_same_site == "Lax"
    assert parse_config({"cookieSameSite": 2}).cookie_same_site == "Lax"
    assert parse_config({"cookieSameSite": "strict"}).cookie_same_site == "Strict"
    assert parse_config({"cookieSameSite": 4, "secure": True}).cookie_same_site == "None"


def test_non_object_json_and_wrong_types_are_rejected() -> None:
    with pytest.raises(ConfigurationError, match="must be an object"):
        parse_config("[1, 2]")
    with pytest.raises(ConfigurationError, match="JSON string, a mapping"):
        parse_config(42)  # type: ignore[arg-type]


def test_unknown_provider_lists_registered_ones() -> None:
    with pytest.raises(websession.UnknownProviderError, match=r"'nosuch'.*memory"):
        Manager("nosuch")
