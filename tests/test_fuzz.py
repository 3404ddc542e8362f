"""Property tests over random input (issue 9): the decoder never raises anything but
DecodeError, every storable value comes back with its exact type (anything else is a
SerializationError), and every configuration either is refused with a ConfigurationError
or makes only valid headers.

The example counts are bounded so the suite stays fast in ``make test``; set
``HYPOTHESIS_PROFILE=websession-long`` for 10,000 examples per property.
"""

from __future__ import annotations

import collections
import datetime as dt
import enum
import json
import os
import re
import string
import uuid
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from websession import ConfigurationError, JSONCodec, Manager, SerializationError
from websession.codecs import DecodeError

settings.register_profile(
    "websession-fast", max_examples=150, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "websession-long", max_examples=10_000, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "websession-fast"))
PROFILE = settings()

CODEC = JSONCodec()
TAGS = [" dict", " odict", " tuple", " datetime", " date", " time", " bytes", " bytearray",
        " frozenset", " set", " uuid", " decimal", " other", " "]
ZONES = [ZoneInfo(key) for key in ("UTC", "Europe/Paris", "America/New_York",
                                   "Australia/Lord_Howe", "Asia/Kolkata")]

# -- the decoder over random input -------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=6), inner, max_size=4)
        # one-key objects under every tag: what a damaged tagged value looks like
        | st.dictionaries(st.sampled_from(TAGS), inner, min_size=1, max_size=1)
    ),
    max_leaves=12,
)


def assert_decodes_or_refuses(data: bytes) -> None:
    try:
        value = CODEC.decode(data)
    except DecodeError:
        return
    assert type(value) is dict


@given(st.binary(max_size=200))
def test_decoder_over_random_bytes_raises_only_decode_error(data: bytes) -> None:
    assert_decodes_or_refuses(data)


@given(json_values)
def test_decoder_over_random_json_raises_only_decode_error(value: Any) -> None:
    assert_decodes_or_refuses(json.dumps({"k": value}).encode())
    assert_decodes_or_refuses(json.dumps(value).encode())


@given(st.builds(lambda depth, opener: opener[0] * depth + opener[1] * depth,
                 st.integers(0, 3000), st.sampled_from([("[", "]"), ('{"a":', "}")])))
def test_decoder_over_deep_nesting_raises_only_decode_error(text: str) -> None:
    assert_decodes_or_refuses(text.encode())
    assert_decodes_or_refuses(b'{"k":' + text.encode() + b"}")


# -- round trips -------------------------------------------------------------------------

keys = st.text(max_size=8)  # surrogates included: any str is a valid key
hashable_leaves = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.binary(max_size=8) | st.uuids() | st.dates()
    | st.decimals(allow_nan=False) | st.datetimes(timezones=st.none() | st.sampled_from(ZONES))
    | st.times(timezones=st.none() | st.sampled_from(ZONES))
)
hashables = st.recursive(
    hashable_leaves,
    lambda inner: st.tuples(inner, inner) | st.frozensets(inner, max_size=3),
    max_leaves=6,
)
storable = st.recursive(
    hashables | st.binary(max_size=8).map(bytearray)
    | st.datetimes(timezones=st.just(dt.timezone(dt.timedelta(hours=-3, minutes=-30)))),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(keys, inner, max_size=4)
        | st.dictionaries(st.text(max_size=4).map(lambda k: " " + k), inner, max_size=1)
        | st.dictionaries(keys, inner, max_size=3).map(collections.OrderedDict)
        | st.sets(hashables, max_size=3)
        | st.frozensets(hashables, max_size=3)
    ),
    max_leaves=16,
)


def assert_same(back: Any, value: Any) -> None:
    """Equal, with the same type all the way down (and the same zone and fold)."""
    assert type(back) is type(value), (back, value)
    if isinstance(value, dict):
        assert list(back) == list(value)
        for key in value:
            assert_same(back[key], value[key])
    elif isinstance(value, list | tuple):
        assert len(back) == len(value)
        for a, b in zip(back, value, strict=True):
            assert_same(a, b)
    elif isinstance(value, dt.datetime | dt.time):
        assert back == value and back.tzinfo == value.tzinfo and back.fold == value.fold
        assert back.replace(tzinfo=None) == value.replace(tzinfo=None)
    else:
        assert back == value


@given(st.dictionaries(keys, storable, max_size=5))
def test_storable_values_round_trip_with_their_exact_types(value: dict[str, Any]) -> None:
    data = CODEC.encode(value)
    data.decode("utf-8")
    assert_same(CODEC.decode(data), value)


class Level(enum.IntEnum):
    LOW = 1


class Tone(enum.StrEnum):
    DRY = "dry"


class Label(str):
    pass


class Pair(NamedTuple):
    a: int


unstorable = st.sampled_from([
    Level.LOW, Tone.DRY, Label("x"), Pair(1),
    collections.Counter("ab"), collections.defaultdict(int), object(), 1j, range(2),
    dt.timedelta(1), dt.datetime(2026, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1), "CET")),
])


@given(st.recursive(storable | unstorable, lambda inner: st.lists(inner, max_size=3)
                    | st.dictionaries(keys, inner, max_size=3), max_leaves=8))
def test_any_value_round_trips_exactly_or_is_refused_by_type(value: Any) -> None:
    try:
        data = CODEC.encode({"v": value})
    except SerializationError as exc:
        message = str(exc)
    else:
        assert_same(CODEC.decode(data)["v"], value)
        return
    assert message.startswith("session['v']") and "cannot store" in message, message


# -- configurations ----------------------------------------------------------------------

nasty_text = st.text(
    alphabet=st.sampled_from([*(string.ascii_letters + string.digits + "-_./;, =\"\\é\u2028"),
                              "\r", "\n", "\t", "\x00", "\x7f", "\ud800"]),
    max_size=16,
)
nasty_ints = (st.integers(-5, 5) | st.integers()
              | st.sampled_from([59, 3600, 400 * 86400, 400 * 86400 + 1, 10**9, 10**12, 2**63,
                                 10**400, -(10**400)]))
any_json = st.recursive(st.none() | st.booleans() | nasty_ints | st.floats() | nasty_text,
                        lambda inner: st.lists(inner, max_size=2)
                        | st.dictionaries(nasty_text, inner, max_size=2), max_leaves=4)
PREFIXED = ["sid", "__Host-sid", "__host-sid", "__HOST-x", "__Secure-sid", "__secure-s"]
TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
PRINTABLE = re.compile(r"[\x20-\x7e]*")
# Each key: values that are valid but odd, then values that are almost valid.
seconds = st.integers(1, 10**6) | nasty_ints
tokens = st.from_regex(TOKEN, fullmatch=True)
config_values = {
    "cookieName": st.sampled_from(PREFIXED) | tokens | nasty_text,
    "enableSetCookie": st.booleans(),
    "gclifetime": seconds,
    "maxLifetime": seconds,
    "absoluteLifetime": seconds,
    "disableHTTPOnly": st.booleans(),
    "secure": st.booleans(),
    "cookieLifeTime": seconds,
    "cookiePath": st.sampled_from(["/", "/app", ""])
    | st.from_regex(r"/[\x20-\x7e]{0,12}", fullmatch=True) | nasty_text.map(lambda t: "/" + t),
    "providerConfig": st.sampled_from(["", {}]) | st.fixed_dictionaries(
        {}, optional={"maxSessions": st.integers(0, 5) | nasty_ints}) | any_json,
    "domain": st.sampled_from(["example.com", ".example.com", ""])
    | st.from_regex(r"\.?[a-z0-9-]{1,5}(\.[a-z0-9-]{1,5}){0,2}", fullmatch=True) | nasty_text,
    "sessionIDLength": st.integers(16, 128) | nasty_ints,
    "sessionIDPrefix": st.sampled_from(["", "p-"]) | nasty_text,
    "cookieSameSite": st.integers(-1, 5) | st.sampled_from(["Lax", "strict", "None"]) | nasty_text,
    "EnableSidInHTTPHeader": st.booleans(),
    "SessionNameInHTTPHeader": st.sampled_from(["X-Sid", ""]) | tokens | nasty_text,
    "EnableSidInURLQuery": st.booleans(),
}
# Mostly values of the right type (the hard part is their content), sometimes anything.
well_typed = st.fixed_dictionaries({}, optional=config_values)
mixed = st.fixed_dictionaries(
    {}, optional={key: values | any_json for key, values in config_values.items()}
)
configs = st.one_of(well_typed, well_typed, mixed)


def check_headers(manager: Manager, headers: list[tuple[str, str]]) -> str | None:
    """Assert that every header is valid; return the session ID they carry, if any."""
    cfg = manager.config
    sid = None
    for name, value in headers:
        assert TOKEN.fullmatch(name), name
        assert PRINTABLE.fullmatch(value), (name, value)
        if name == "Set-Cookie":
            first, *attributes = value.split("; ")
            cookie_name, _, cookie_value = first.partition("=")
            assert cookie_name == cfg.cookie_name and ";" not in cookie_value
            for attribute in attributes:
                assert ";" not in attribute, value
                key, _, given = attribute.partition("=")
                allowed = {"Max-Age": r"\d+", "Expires": r"[A-Za-z]{3}, \d\d [A-Za-z]{3} \d{4} "
                           r"\d\d:\d\d:\d\d GMT", "Path": re.escape(cfg.cookie_path),
                           "Domain": re.escape(cfg.domain), "Secure": "", "HttpOnly": "",
                           "SameSite": "Lax|Strict|None"}
                assert key in allowed and re.fullmatch(allowed[key], given), attribute
            sid = cookie_value or sid
        elif name == cfg.session_name_in_http_header:
            sid = value or sid
    return sid


def request(manager: Manager, sid: str | None, secure: bool) -> dict[str, Any]:
    environ: dict[str, Any] = {"wsgi.url_scheme": "https" if secure else "http"}
    if sid:
        environ["HTTP_COOKIE"] = f"{manager.config.cookie_name}={sid}"
        header = manager.config.session_name_in_http_header
        if header:
            environ["HTTP_" + header.upper().replace("-", "_")] = sid
    return environ


@settings(max_examples=2 * PROFILE.max_examples)  # a wide space: twice the others
@given(configs, st.booleans(), st.booleans())
def test_a_config_is_refused_or_every_header_it_makes_is_valid(
    config: dict[str, Any], as_json: bool, secure: bool
) -> None:
    try:
        manager = Manager("memory", json.dumps(config) if as_json else config)
    except ConfigurationError:
        return
    session = manager.session_start(request(manager, None, secure))
    session["user"] = "ann"
    headers: list[tuple[str, str]] = []
    session.session_release(headers)
    sid = check_headers(manager, headers)
    for step in ("regenerate", "destroy"):
        session = manager.session_start(request(manager, sid, secure))
        if step == "regenerate":
            session.regenerate_id()
        else:
            session.destroy()
        headers = []
        session.session_release(headers)
        sid = check_headers(manager, headers) or sid


def test_the_strategies_reach_valid_configs() -> None:
    # A guard against a vacuous property: the generator must also make usable configs.
    made = 0

    @settings(max_examples=200, derandomize=True)
    @given(configs)
    def count(config: dict[str, Any]) -> None:
        nonlocal made
        try:
            Manager("memory", config)
        except ConfigurationError:
            return
        made += 1

    count()
    assert made >= 20, made


def test_storable_strategy_covers_every_tagged_type() -> None:
    seen: set[type] = set()

    def walk(value: Any) -> None:
        seen.add(type(value))
        if isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, list | tuple | set | frozenset):
            for item in value:
                walk(item)

    @settings(max_examples=200)
    @given(storable)
    def collect(value: Any) -> None:
        walk(value)

    collect()
    wanted = {dict, collections.OrderedDict, list, tuple, set, frozenset, bytes, bytearray,
              dt.datetime, dt.date, dt.time, uuid.UUID, Decimal}
    assert wanted <= seen, wanted - seen
