"""SQL benchmarks: the MySQL/MariaDB and PostgreSQL providers against their raw drivers.

``python -m bench.sql_bench`` runs, for each database that is reachable:

* rmw: the read-modify-write loop of ``python -m bench`` (an in-process WSGI client sends
  back the previous response's cookie; the application increments a counter in the
  session) through :class:`~websession.WSGISessionMiddleware`, against a raw driver loop
  that does the same work by hand on one connection: one ``SELECT``, decode the JSON,
  increment, encode, one upsert. They alternate over paired rounds; the verdict is the
  median of the per-round ratios (goal >= 0.9x of raw). A third loop, shown for
  information, runs the provider's own SQL through the bare driver: its conditional
  ``UPDATE`` (the compare-and-set that keeps concurrent requests from losing data) costs
  the server more than a blind upsert, so it separates that cost from websession's own;
* gc: one GC pass over 100,000 expired sessions next to 1,000 live ones, which must come
  out untouched (same IDs, payloads, deadlines and versions).

Servers: MariaDB on 127.0.0.1:3306 (root, database ``test``) and PostgreSQL on
127.0.0.1:5432 (database ``test``), or ``--mysql-dsn`` / ``--postgres-dsn``. Tables are
private to the benchmark (``websession_bench*``) and dropped afterwards.
"""

from __future__ import annotations

import argparse
import json
import platform
import secrets
import socket
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import websession
from websession.providers._sql import SQLProvider

from . import wsgi
from .results import Collector, add_argument
from .runner import Result, Settings, measure, package_version, parse_counts

__all__ = ["main"]

#: websession through the middleware must reach this fraction of the raw loop's rate.
GOAL = 0.9
MYSQL_DSN = "root:@tcp(127.0.0.1:3306)/test?charset=utf8mb4"
POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"
RMW_TABLE = "websession_bench"
RAW_TABLE = "websession_bench_raw"
SAME_SQL_TABLE = "websession_bench_same"
GC_TABLE = "websession_bench_gc"
IDLE = 3600.0
#: A session row as stored: ID, payload, expiry, version.
Row = tuple[str, bytes, float, int]


@dataclass(frozen=True, slots=True)
class Sizes:
    """How much each suite does."""

    rounds: int
    requests: int
    gc_expired: int
    gc_live: int


FULL = Sizes(rounds=31, requests=200, gc_expired=100_000, gc_live=1_000)
QUICK = Sizes(rounds=7, requests=100, gc_expired=10_000, gc_live=1_000)


class Database:
    """One server: how to reach it, its provider, and its raw-driver loop."""

    name: str
    host: str
    port: int

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def reachable(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=2):
                return True
        except OSError:
            return False

    def provider(self, table: str, **options: Any) -> SQLProvider:
        raise NotImplementedError

    def connect(self) -> Any:
        """A raw autocommit connection."""
        raise NotImplementedError

    def raw_statements(self, table: str) -> tuple[str, str, str]:
        """Create-table, read and upsert statements for the raw loop (``%s`` params); the table
        is the provider's, expiry index included, so both sides write the same rows."""
        raise NotImplementedError

    def drop(self, conn: Any, table: str) -> None:
        raise NotImplementedError

    def bulk_expired(self, conn: Any, table: str, rows: list[Row]) -> None:
        raise NotImplementedError

    def driver_version(self) -> str:
        raise NotImplementedError


class MySQL(Database):
    name = "mysql"
    host, port = "127.0.0.1", 3306

    def provider(self, table: str, **options: Any) -> SQLProvider:
        from websession.providers.mysql import MySQLProvider

        return MySQLProvider(self.dsn, table=table, **options)

    def connect(self) -> Any:
        import pymysql  # type: ignore[import-untyped, unused-ignore]

        from websession.providers.mysql import parse_dsn

        params = parse_dsn(self.dsn)
        return pymysql.connect(host=params.host, port=params.port, user=params.user or None,
                               password=params.password, database=params.database,
                               autocommit=True, ssl_disabled=True)

    def raw_statements(self, table: str) -> tuple[str, str, str]:
        return (
            f"CREATE TABLE IF NOT EXISTS `{table}` (sid VARBINARY(320) PRIMARY KEY, "
            "payload LONGBLOB NOT NULL, expires_at DOUBLE NOT NULL, version BIGINT NOT NULL, "
            f"KEY `{table}_expires_at` (expires_at)) ENGINE=InnoDB",
            f"SELECT payload, expires_at, version FROM `{table}` WHERE sid = %s "
            "AND expires_at > %s",
            f"INSERT INTO `{table}` (sid, payload, expires_at, version) "
            "VALUES (%s, %s, %s, %s) ON DUPLICATE KEY UPDATE payload = VALUES(payload), "
            "expires_at = VALUES(expires_at), version = VALUES(version)",
        )

    def drop(self, conn: Any, table: str) -> None:
        conn.cursor().execute(f"DROP TABLE IF EXISTS `{table}`")

    def bulk_expired(self, conn: Any, table: str, rows: list[Row]) -> None:
        cursor = conn.cursor()
        for start in range(0, len(rows), 5_000):  # multi-row INSERTs under max_allowed_packet
            cursor.executemany(
                f"INSERT INTO `{table}` (sid, payload, expires_at, version) "
                "VALUES (%s, %s, %s, %s)", rows[start:start + 5_000])

    def driver_version(self) -> str:
        return f"PyMySQL {package_version('PyMySQL')}"


class Postgres(Database):
    name = "postgresql"
    host, port = "127.0.0.1", 5432

    def provider(self, table: str, **options: Any) -> SQLProvider:
        from websession.providers.postgres import PostgresProvider

        return PostgresProvider(self.dsn, table=table, **options)

    def connect(self) -> Any:
        import psycopg

        return psycopg.connect(self.dsn, autocommit=True)

    def raw_statements(self, table: str) -> tuple[str, str, str]:
        return (
            f'CREATE TABLE IF NOT EXISTS "{table}" (sid varchar(320) COLLATE "C" PRIMARY KEY, '
            "payload bytea NOT NULL, expires_at double precision NOT NULL, "
            f'version bigint NOT NULL); CREATE INDEX IF NOT EXISTS "{table}_expires_at" '
            f'ON "{table}" (expires_at)',
            f'SELECT payload, expires_at, version FROM "{table}" WHERE sid = %s '
            "AND expires_at > %s",
            f'INSERT INTO "{table}" (sid, payload, expires_at, version) VALUES (%s, %s, %s, %s) '
            "ON CONFLICT (sid) DO UPDATE SET payload = EXCLUDED.payload, "
            "expires_at = EXCLUDED.expires_at, version = EXCLUDED.version",
        )

    def drop(self, conn: Any, table: str) -> None:
        conn.execute(f'DROP TABLE IF EXISTS "{table}"')

    def bulk_expired(self, conn: Any, table: str, rows: list[Row]) -> None:
        with conn.cursor() as cursor, cursor.copy(
            f'COPY "{table}" (sid, payload, expires_at, version) FROM STDIN'
        ) as copy:
            for row in rows:
                copy.write_row(row)

    def driver_version(self) -> str:
        return f"psycopg {package_version('psycopg')}"


# -- read-modify-write ----------------------------------------------------------------------


def _websession_timer(db: Database) -> tuple[Callable[[int], float], Callable[[], None]]:
    manager = websession.Manager(db.provider(RMW_TABLE),
                                 {"cookieName": "gosessionid", "gclifetime": 3600})
    app = websession.WSGISessionMiddleware(
        wsgi.counter_app("websession.session", save=False), manager)
    peer = wsgi.WSGIPeer("websession", app, manager.close)
    return (lambda requests: wsgi.run_wsgi(peer, requests)), peer.close


def _raw_timer(db: Database, conn: Any) -> Callable[[int], float]:
    _, select, upsert = db.raw_statements(RAW_TABLE)
    cursor = conn.cursor()

    def run(requests: int) -> float:
        sid = secrets.token_hex(16)  # one fresh client per round, as run_wsgi has
        counter = 0
        started = time.perf_counter()
        for _ in range(requests):
            now = time.time()
            cursor.execute(select, (sid, now))
            row = cursor.fetchone()
            data = json.loads(row[0]) if row else {}
            version = row[2] + 1 if row else 1
            counter = data.get("counter", 0) + 1
            data["counter"] = counter
            cursor.execute(upsert, (sid, json.dumps(data).encode(), now + IDLE, version))
        elapsed = time.perf_counter() - started
        if counter != requests:
            raise AssertionError(f"raw loop counted {counter} of {requests}")
        return elapsed

    return run


def _same_sql_timer(db: Database, conn: Any) -> tuple[Callable[[int], float], SQLProvider]:
    """The provider's own statements (conditional UPDATE included) on the bare driver."""
    provider = db.provider(SAME_SQL_TABLE)
    provider.count()  # creates its table
    statements = provider.statements
    cursor = conn.cursor()

    def run(requests: int) -> float:
        sid = secrets.token_hex(16)
        now = time.time()
        cursor.execute(statements.create, {"sid": sid, "payload": b"{}", "expires_at": now + IDLE,
                                           "version": 1, "now": now})
        counter = 0
        started = time.perf_counter()
        for _ in range(requests):
            now = time.time()
            cursor.execute(statements.read, {"sid": sid, "now": now})
            payload, _, version = cursor.fetchone()
            data = json.loads(payload)
            counter = data.get("counter", 0) + 1
            data["counter"] = counter
            cursor.execute(statements.update, {
                "sid": sid, "payload": json.dumps(data).encode(), "expires_at": now + IDLE,
                "version": version + 1, "expected": version, "now": now})
        elapsed = time.perf_counter() - started
        if counter != requests:
            raise AssertionError(f"same-SQL loop counted {counter} of {requests}")
        return elapsed

    return run, provider


def _rmw(db: Database, sizes: Sizes) -> bool:
    settings = Settings(rounds=sizes.rounds, requests=sizes.requests,
                        warmup=max(1, sizes.requests // 4))
    tables = (RMW_TABLE, RAW_TABLE, SAME_SQL_TABLE)
    conn = db.connect()
    for table in tables:
        db.drop(conn, table)
    create_raw, _, _ = db.raw_statements(RAW_TABLE)
    conn.cursor().execute(create_raw)
    ours, close = _websession_timer(db)
    same_sql, same_provider = _same_sql_timer(db, conn)
    try:
        ws, raw, same = measure(
            [("websession", ours), ("raw", _raw_timer(db, conn)), ("same SQL", same_sql)],
            settings)
    finally:
        close()
        same_provider.close()
        for table in tables:
            db.drop(conn, table)
        conn.close()
    return _report(db.name, ws, raw, same)


#: What ``main`` writes for ``bench.report``; the reporting functions add to it.
_collector = Collector("sql", "python -m bench.sql_bench", {})


def _paired(ours: Result, other: Result) -> list[float]:
    return [o / r for o, r in zip(ours.rates, other.rates, strict=True)]


def _report(name: str, ours: Result, raw: Result, same: Result) -> bool:
    ratios = _paired(ours, raw)
    paired = statistics.median(ratios)
    met = paired >= GOAL
    print(f"{name:<10} rmw  websession {ours.median:>7,.0f} req/s   raw driver "
          f"{raw.median:>7,.0f} req/s   (medians; best {ours.best:,.0f} / {raw.best:,.0f})")
    print(f"{'':<10}      ratio {paired:.3f}x (median of {len(ratios)} paired rounds, range "
          f"{min(ratios):.3f}-{max(ratios):.3f}; goal >= {GOAL:g}x)"
          f"{'' if met else '  BELOW GOAL'}")
    server = "MariaDB/MySQL" if name == "mysql" else "PostgreSQL"
    raw.name = "raw driver: SELECT + blind upsert"
    same.name = "raw driver: websession's SQL (conditional UPDATE)"
    _collector.throughput(
        f"{name}-rmw", f"{server} read-modify-write, WSGI", ours,
        [(raw, GOAL), (same, None)],
        round_trips={ours.name: 2, raw.name: 2, same.name: 2},
        notes="the server on 127.0.0.1; the raw loops do the same work by hand on one "
              "connection")
    print(f"{'':<10}      for information: the raw driver running websession's own SQL "
          f"(conditional UPDATE): {same.median:,.0f} req/s,")
    print(f"{'':<10}      {statistics.median(_paired(same, raw)):.3f}x of the raw upsert loop; "
          f"websession is {statistics.median(_paired(ours, same)):.3f}x of it")
    return met


# -- GC -------------------------------------------------------------------------------------


def _snapshot(db: Database, conn: Any, table: str) -> list[tuple[Any, ...]]:
    q = "`" if db.name == "mysql" else '"'
    cursor = conn.cursor()
    cursor.execute(f"SELECT sid, payload, expires_at, version FROM {q}{table}{q} "
                   f"WHERE expires_at > %s ORDER BY sid", (time.time(),))
    return [(bytes(sid) if not isinstance(sid, str) else sid.encode(), bytes(payload), e, v)
            for sid, payload, e, v in cursor.fetchall()]


def _gc(db: Database, sizes: Sizes) -> bool:
    conn = db.connect()
    db.drop(conn, GC_TABLE)
    provider = db.provider(GC_TABLE)
    try:
        provider.count()  # creates the table
        now = time.time()
        live = [(f"live{i:028x}", f'{{"user": {i}}}'.encode(), now + IDLE + i, 1 + i % 7)
                for i in range(sizes.gc_live)]
        # Expired over the last day; interleaved IDs, so neither the table nor its primary
        # key holds them in one run.
        dead = [(secrets.token_hex(16), b'{"user": 0}', now - 1 - (i * 86_400 / sizes.gc_expired),
                 1) for i in range(sizes.gc_expired)]
        started = time.perf_counter()
        db.bulk_expired(conn, GC_TABLE, dead + live)
        loaded = time.perf_counter() - started
        before = _snapshot(db, conn, GC_TABLE)
        started = time.perf_counter()
        removed = provider.gc()
        elapsed = time.perf_counter() - started
        after = _snapshot(db, conn, GC_TABLE)
        count = provider.count()
        intact = before == after and len(after) == sizes.gc_live
        ok = removed == sizes.gc_expired and count == sizes.gc_live and intact
        batch = getattr(provider, "gc_batch_size", 0)
        print(f"{db.name:<10} gc   {removed:,} expired removed in {elapsed:.2f} s "
              f"({removed / elapsed:,.0f} rows/s, {-(-removed // batch)} batches of "
              f"{batch:,}); {count:,} live left, {'untouched' if intact else 'CHANGED'}"
              f" (bulk load {loaded:.2f} s){'' if ok else '  FAILED'}")
        _collector.gc(db.name, removed, count, elapsed)
        return ok
    finally:
        provider.close()
        db.drop(conn, GC_TABLE)
        conn.close()


# -- main -----------------------------------------------------------------------------------


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.sql_bench",
        description="websession's SQL providers against raw driver loops, and their GC.",
    )
    parser.add_argument("--quick", action="store_true", help="a short run")
    parser.add_argument("--rounds", type=int, help="timed rounds per side")
    parser.add_argument("--requests", type=int, help="requests per round")
    parser.add_argument("--only", choices=("mysql", "postgresql"), help="one database only")
    parser.add_argument("--skip-gc", action="store_true", help="only the rmw suite")
    parser.add_argument("--mysql-dsn", default=MYSQL_DSN)
    parser.add_argument("--postgres-dsn", default=POSTGRES_DSN)
    parser.add_argument("--check", action="store_true",
                        help=f"exit with status 1 if a ratio is below {GOAL:g}x or GC fails")
    add_argument(parser)
    return parse_counts(parser, argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse(argv)
    base = QUICK if args.quick else FULL
    sizes = Sizes(rounds=args.rounds or base.rounds, requests=args.requests or base.requests,
                  gc_expired=base.gc_expired, gc_live=base.gc_live)
    databases: list[Database] = [MySQL(args.mysql_dsn), Postgres(args.postgres_dsn)]
    if args.only:
        databases = [db for db in databases if db.name == args.only]
    print(f"websession {package_version('websession')}; {platform.python_implementation()} "
          f"{platform.python_version()}; {sizes.rounds} rounds x {sizes.requests:,} requests "
          "per side, alternating; the verdict is the median of per-round ratios")
    all_met = True
    _collector.settings = {"rounds": sizes.rounds, "requests": sizes.requests,
                           "gc_expired": sizes.gc_expired, "gc_live": sizes.gc_live,
                           "quick": args.quick}
    for db in databases:
        if not db.reachable():
            print(f"{db.name:<10} skipped: nothing listens on {db.host}:{db.port}")
            _collector.extra[f"{db.name}_skipped"] = f"nothing listens on {db.host}:{db.port}"
            continue
        print(f"{db.name:<10} driver {db.driver_version()}")
        _collector.extra[f"{db.name}_driver"] = db.driver_version()
        all_met &= _rmw(db, sizes)
        if not args.skip_gc:
            all_met &= _gc(db, sizes)
    _collector.write(args.results)
    return 1 if args.check and not all_met else 0


if __name__ == "__main__":
    raise SystemExit(main())
