"""The memory provider: the conformance suite, plus what is specific to it."""

from __future__ import annotations

import time

import pytest

from websession import Manager
from websession.providers.base import Record
from websession.providers.memory import MemoryProvider
from websession.testing import ProviderConformance, ScanConformance, UserConformance


class TestMemoryConformance(ProviderConformance, ScanConformance, UserConformance):
    @pytest.fixture
    def provider(self) -> MemoryProvider:
        return MemoryProvider()


def test_lru_bound_evicts_least_recently_used() -> None:
    provider = MemoryProvider(max_sessions=3)
    later = time.time() + 60
    for sid in "abcd":
        assert provider.create(sid * 32, Record(b"x", later, 1))
    assert provider.read("a" * 32) is None  # evicted
    assert provider.read("b" * 32) is not None  # now most recently used
    assert provider.create("e" * 32, Record(b"x", later, 1))
    assert provider.read("c" * 32) is None
    assert provider.read("b" * 32) is not None
    assert provider.count() == 3


def test_max_sessions_from_provider_config() -> None:
    manager = Manager("memory", '{"ProviderConfig": "{\\"maxSessions\\": 2}"}')
    assert isinstance(manager.provider, MemoryProvider)
    assert manager.provider.max_sessions == 2


def test_gc_removes_only_expired_sessions() -> None:
    provider = MemoryProvider()
    now = time.time()
    for i in range(10_000):
        provider.create(f"{i:032x}", Record(b"live", now + 3600, 1))
    for i in range(10_000, 10_010):
        provider.create(f"{i:032x}", Record(b"dead", now + 0.05, 1))
    time.sleep(0.1)
    assert provider.gc() == 10
    assert provider.count() == 10_000
    assert provider.gc() == 0


def test_gc_ignores_entries_of_refreshed_sessions() -> None:
    provider = MemoryProvider()
    sid = "f" * 32
    provider.create(sid, Record(b"x", time.time() + 0.05, 1))
    assert provider.touch(sid, time.time() + 3600)
    time.sleep(0.1)
    assert provider.gc() == 0
    assert provider.read(sid) is not None


def test_expiry_heap_stays_bounded_under_rewrites() -> None:
    provider = MemoryProvider()
    sid = "e" * 32
    provider.create(sid, Record(b"x", time.time() + 60, 1))
    for version in range(1, 5000):
        assert provider.update(sid, Record(b"x", time.time() + 60, version + 1), version)
    assert len(provider._heap) <= 2 * 1 + 64 + 1
