"""Operations benchmark: ``migrate`` between stores, ``revoke_user``, and listing.

* migrate: N sessions (100,000; ``--quick``: 20,000), one in ten bound to one of 1,000
  users, copied SQLite → Redis and PostgreSQL → Redis through ``Manager.migrate`` (what
  the ``websession migrate`` command runs), batches of 500: sessions per second, and the
  process's resident memory at the start and at its peak while copying (sampled every
  20 ms). Goal: ≥ 20,000 sessions/s with RSS within 50 MB of the start. The PostgreSQL
  source is filled by a timed SQLite → PostgreSQL migrate, reported too.
* revoke_user: one user with 1,000 sessions, on Redis, PostgreSQL, MariaDB and SQLite.
* list: every session walked with ``Manager.iter_sessions`` (the CLI's ``list``), on the
  stores the migrate filled.

Every store gets names of this run's own (a Redis key prefix, a table, a file), removed
afterwards. ``python -m bench.ops_bench [--quick] [--skip-mysql]``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from websession import Manager

from .results import Collector, add_argument

__all__ = ["drop_table", "main"]

REDIS = "127.0.0.1:6379"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL = "root:@tcp(127.0.0.1:3306)/test"
BATCH = 500
GOAL_RATE = 20_000
GOAL_RSS_MB = 50


def _rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class _PeakRSS:
    """The process's resident memory, sampled in a thread while a block runs."""

    def __init__(self) -> None:
        self.start = self.peak = _rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_mb())

    def __enter__(self) -> _PeakRSS:
        self.start = self.peak = _rss_mb()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mb())


def _fill_memory(n: int) -> Manager:
    """N sessions in a memory store, through the session API, one in ten bound."""
    manager = Manager("memory", {"maxLifetime": 3600})
    for i in range(n):
        session = manager.get_session_store(None)
        session["cart"] = [i, i + 1]
        session["name"] = f"visitor {i}"
        if i % 10 == 0:
            session.bind_user(f"user{i % 1000}")
        session.session_release([])
    return manager


def _migrate(source: Manager, target: Manager) -> tuple[int, float, _PeakRSS]:
    copied = 0
    with _PeakRSS() as rss:
        started = time.perf_counter()
        for _, created, _ in source.migrate(target, BATCH):
            copied += created
        seconds = time.perf_counter() - started
    return copied, seconds, rss


def _redis_manager(prefix: str) -> Manager:
    return Manager("redis", {"providerConfig": {"addr": REDIS, "prefix": prefix},
                             "maxLifetime": 3600})


def _drop_redis(prefix: str) -> None:
    import redis

    from websession.providers._redis_ops import INDEX_PREFIX

    with redis.Redis.from_url(f"redis://{REDIS}") as client:
        for pattern in (prefix + "*", INDEX_PREFIX + prefix + "*"):
            batch = []
            for key in client.scan_iter(match=pattern, count=5000):
                batch.append(key)
                if len(batch) >= 5000:
                    client.delete(*batch)
                    batch = []
            if batch:
                client.delete(*batch)


def drop_table(provider: str, table: str) -> None:
    """Drop ``table`` from the shared PostgreSQL (``postgresql``) or MariaDB server."""
    if provider == "postgresql":
        import psycopg

        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    else:
        import pymysql  # type: ignore[import-untyped, unused-ignore]

        conn = pymysql.connect(host="127.0.0.1", user="root", database="test")
        try:
            conn.cursor().execute(f"DROP TABLE IF EXISTS `{table}`")
        finally:
            conn.close()


@contextmanager
def _stores(skip_mysql: bool) -> Iterator[dict[str, Any]]:
    run = uuid.uuid4().hex[:8]
    names: dict[str, Any] = {"prefix": f"opsbench-{run}:", "table": f"ops_bench_{run}",
                             "dir": Path(tempfile.mkdtemp(prefix="ops-bench-"))}
    try:
        yield names
    finally:
        _drop_redis(names["prefix"])
        _drop_redis(names["prefix"] + "pg:")
        _drop_redis(names["prefix"] + "revoke:")
        drop_table("postgresql", names["table"])
        drop_table("postgresql", names["table"] + "_revoke")
        if not skip_mysql:
            drop_table("mysql", names["table"] + "_revoke")
        for path in sorted(names["dir"].rglob("*"), reverse=True):
            path.unlink() if path.is_file() else path.rmdir()
        names["dir"].rmdir()


def _line(rows: list[dict[str, Any]], name: str, value: float, unit: str, note: str = "") -> None:
    rows.append({"name": name, "value": value, "unit": unit, "note": note})
    print(f"{name:<52} {value:>12,.1f} {unit:<10} {note}", flush=True)


def _timed(action: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def _revoke(rows: list[dict[str, Any]], label: str, manager: Manager, sessions: int) -> None:
    user = f"revoke-{uuid.uuid4().hex[:6]}"
    for _ in range(sessions):
        session = manager.get_session_store(None)
        session.bind_user(user)
        session.session_release([])
    revoked, seconds = _timed(lambda: manager.revoke_user(user))
    assert revoked == sessions, (label, revoked)
    _line(rows, f"revoke_user of {sessions:,} sessions, {label}", seconds * 1000, "ms")


def run(n: int, skip_mysql: bool) -> list[dict[str, Any]]:
    """Run every scenario; return the figures."""
    rows: list[dict[str, Any]] = []
    with _stores(skip_mysql) as names:
        sqlite_config = {"providerConfig": str(names["dir"] / "sessions.db"), "maxLifetime": 3600}
        print(f"filling SQLite with {n:,} sessions...", flush=True)
        with _fill_memory(n) as memory, Manager("sqlite", sqlite_config) as sqlite:
            for _ in memory.migrate(sqlite, 5000):
                pass
        print(f"{'scenario':<52} {'figure':>12} unit", flush=True)
        with Manager("sqlite", sqlite_config) as sqlite, \
                _redis_manager(names["prefix"]) as redis_target:
            copied, seconds, rss = _migrate(sqlite, redis_target)
            assert copied == n, copied
            _line(rows, f"migrate {n:,} sessions SQLite → Redis", n / seconds, "sessions/s",
                  f"goal ≥ {GOAL_RATE:,}")
            _line(rows, "  RSS growth while migrating (SQLite → Redis)", rss.peak - rss.start,
                  "MB", f"start {rss.start:.0f} MB, peak {rss.peak:.0f} MB; goal ≤ {GOAL_RSS_MB}")
            counted, seconds = _timed(lambda: sum(1 for _ in redis_target.iter_sessions(BATCH)))
            assert counted == n, counted
            _line(rows, f"list {n:,} sessions, Redis", counted / seconds, "sessions/s",
                  f"{seconds:.2f} s")
            counted, seconds = _timed(lambda: sum(1 for _ in sqlite.iter_sessions(BATCH)))
            _line(rows, f"list {n:,} sessions, SQLite", counted / seconds, "sessions/s",
                  f"{seconds:.2f} s")

            pg_config = {"providerConfig": {"dsn": POSTGRES, "table": names["table"]},
                         "maxLifetime": 3600}
            with Manager("postgresql", pg_config) as postgres:
                copied, seconds, rss = _migrate(sqlite, postgres)
                assert copied == n, copied
                _line(rows, f"migrate {n:,} sessions SQLite → PostgreSQL", n / seconds,
                      "sessions/s", f"RSS +{rss.peak - rss.start:.0f} MB")
                counted, seconds = _timed(lambda: sum(1 for _ in postgres.iter_sessions(BATCH)))
                _line(rows, f"list {n:,} sessions, PostgreSQL", counted / seconds,
                      "sessions/s", f"{seconds:.2f} s")
                with _redis_manager(names["prefix"] + "pg:") as target:
                    copied, seconds, rss = _migrate(postgres, target)
                    assert copied == n, copied
                    _line(rows, f"migrate {n:,} sessions PostgreSQL → Redis", n / seconds,
                          "sessions/s", f"goal ≥ {GOAL_RATE:,}")
                    _line(rows, "  RSS growth while migrating (PostgreSQL → Redis)",
                          rss.peak - rss.start, "MB",
                          f"start {rss.start:.0f} MB, peak {rss.peak:.0f} MB; "
                          f"goal ≤ {GOAL_RSS_MB}")
                    copied, seconds, _ = _migrate(postgres, target)
                    _line(rows, "  rerun of the same migrate (nothing left to copy)",
                          n / seconds, "sessions/s", f"{copied} copied")

        revoke_targets: list[tuple[str, str, Any]] = [
            ("Redis", "redis", {"addr": REDIS, "prefix": names["prefix"] + "revoke:"}),
            ("PostgreSQL", "postgresql", {"dsn": POSTGRES, "table": names["table"] + "_revoke"}),
            ("SQLite", "sqlite", str(names["dir"] / "revoke.db")),
        ]
        if not skip_mysql:
            revoke_targets.append(("MariaDB", "mysql", {"dsn": MYSQL,
                                                        "table": names["table"] + "_revoke"}))
        for label, provider, config in revoke_targets:
            with Manager(provider, {"providerConfig": config}) as manager:
                _revoke(rows, label, manager, 1000)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(process peak RSS over the whole run, fills included: {peak:.0f} MB)")
    return rows


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ops_bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="20,000 sessions, not 100,000")
    parser.add_argument("--sessions", type=int, help="how many sessions to migrate and list")
    parser.add_argument("--skip-mysql", action="store_true", help="no MariaDB revoke figure")
    add_argument(parser)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark, print its figures and write its JSON results."""
    args = _parse(argv)
    n = args.sessions or (20_000 if args.quick else 100_000)
    rows = run(n, args.skip_mysql)
    collector = Collector("ops_bench", "python -m bench.ops_bench" + (" --quick" if args.quick
                                                                      else ""),
                          {"sessions": n, "batch": BATCH})
    collector.operations("ops", "Operations: migrate, list, revoke_user", rows,
                         notes=f"goals: migrate ≥ {GOAL_RATE:,} sessions/s with RSS within "
                               f"{GOAL_RSS_MB} MB of the start")
    collector.write(args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
