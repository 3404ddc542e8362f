"""Codecs: exact round trips, clear errors, and no pickle unless signed."""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from websession import ConfigurationError, JSONCodec, SerializationError, SignedPickleCodec
from websession.codecs import DecodeError
from websession.testing import SAMPLE


def test_json_round_trips_tagged_types_exactly() -> None:
    codec = JSONCodec()
    back = codec.decode(codec.encode(SAMPLE))
    assert back == SAMPLE
    assert all(type(back[k]) is type(v) for k, v in SAMPLE.items())


def test_json_escapes_user_dicts_that_look_like_tags() -> None:
    codec = JSONCodec()
    value: dict[str, Any] = {"a": {" bytes": "not base64!"}, "b": {" tuple": [1]}}
    assert codec.decode(codec.encode(value)) == value


def test_json_output_is_plain_json() -> None:
    assert JSONCodec().encode({"n": 1, "s": "é"}) == '{"n":1,"s":"é"}'.encode()


@pytest.mark.parametrize("value", [object(), {1: "int key"}, lambda: 0])
def test_unencodable_values_raise_serialization_error(value: Any) -> None:
    with pytest.raises(SerializationError):
        JSONCodec().encode({"v": value})


def test_circular_value_raises_serialization_error() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(SerializationError):
        JSONCodec().encode({"v": loop})


@pytest.mark.parametrize("data", [b"", b"\xff\xfe", b"[1]", b'{"a":', b'{" bytes":"!!"}'])
def test_damaged_json_raises_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        JSONCodec().decode(data)


def test_signed_pickle_round_trip_and_rotation() -> None:
    old = SignedPickleCodec("o" * 32)
    new = SignedPickleCodec(["n" * 32, "o" * 32])
    value = {"obj": complex(1, 2)}
    assert new.decode(old.encode(value)) == value
    assert new.decode(new.encode(value)) == value
    with pytest.raises(DecodeError):
        old.decode(new.encode(value))


def test_signed_pickle_never_unpickles_unsigned_data() -> None:
    class Boom:
        def __reduce__(self) -> Any:
            return (pytest.fail, ("unpickled attacker data",))

    codec = SignedPickleCodec("k" * 32)
    forged = b"\x00" * 32 + pickle.dumps(Boom())
    with pytest.raises(DecodeError):
        codec.decode(forged)


def test_signed_pickle_needs_a_long_key() -> None:
    with pytest.raises(ConfigurationError):
        SignedPickleCodec("short")
    with pytest.raises(ConfigurationError):
        SignedPickleCodec([])
