"""Private MariaDB and PostgreSQL servers for the restart tests.

Each runs from a fresh data directory on a free loopback port, so a test can crash and
restart it without disturbing the system servers other tests use. Missing binaries skip
the test, except under CI=true, where they fail it (as ``require_server`` does).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from tests.servers import unavailable

from websession import Manager, StoreUnavailableError
from websession.providers.base import BaseProvider
from websession.testing import Client

__all__ = [
    "MariaDBServer",
    "PostgresServer",
    "PrivateServer",
    "check_restart_recovery",
    "private_server",
]

# Debian installs each PostgreSQL major version under its own directory: take the newest.
PG_BIN = max(Path("/usr/lib/postgresql").glob("*/bin"),
             key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
             default=Path("/usr/lib/postgresql/15/bin"))
MARIADBD = Path("/usr/sbin/mariadbd")
START_TIMEOUT = 30.0




def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


class PrivateServer(ABC):
    """A database server this test owns: start it, crash or stop it, start it again."""

    name: str

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = root / "server.log"

    @abstractmethod
    def initialise(self) -> None:
        """Create the data directory (once)."""

    @abstractmethod
    def command(self) -> list[str]:
        """The server's command line."""

    @abstractmethod
    def ready(self) -> bool:
        """Whether the server accepts queries."""

    @property
    @abstractmethod
    def dsn(self) -> str:
        """A DSN for the provider, to the database the tests use."""

    def _popen_options(self) -> dict[str, Any]:
        return {}

    def start(self) -> None:
        """Start the server on its port and wait until it answers."""
        assert self.process is None, "already running"
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, **self._popen_options(),
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.tail()}")
            if _listening(self.port) and self.ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not start in {START_TIMEOUT:g} s:\n{self.tail()}")

    def stop(self, *, crash: bool = False) -> None:
        """Stop the server: a clean shutdown, or (``crash``) as if it had died."""
        process, self.process = self.process, None
        if process is None:
            return
        process.send_signal(self.crash_signal if crash else self.stop_signal)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        deadline = time.monotonic() + 10
        while _listening(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    crash_signal = signal.SIGKILL
    stop_signal = signal.SIGTERM

    def tail(self) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return self.log.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"


class MariaDBServer(PrivateServer):
    """A MariaDB server with grant tables off (anyone is root) and a ``test`` database."""

    name = "MariaDB"

    def initialise(self) -> None:
        """Run mariadb-install-db into ``root/data``."""
        installer = shutil.which("mariadb-install-db")
        if installer is None or not MARIADBD.exists():
            unavailable("mariadb-install-db and /usr/sbin/mariadbd are needed for the restart test")
        assert installer is not None
        user = ["--user=root"] if os.geteuid() == 0 else []
        with self.log.open("ab") as log:
            subprocess.run(
                [installer, "--no-defaults", f"--datadir={self.root / 'data'}",
                 "--auth-root-authentication-method=normal", "--skip-test-db", *user],
                stdout=log, stderr=subprocess.STDOUT, check=True, timeout=120,
            )

    def command(self) -> list[str]:
        """mariadbd on loopback only, small buffers, no binary log."""
        data = self.root / "data"
        return [
            str(MARIADBD), "--no-defaults", f"--datadir={data}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--socket={self.root / 'mysqld.sock'}",
            f"--pid-file={self.root / 'mysqld.pid'}", "--skip-grant-tables",
            "--innodb-buffer-pool-size=32M", "--skip-log-bin", "--skip-name-resolve",
            *(["--user=root"] if os.geteuid() == 0 else []),
        ]

    def ready(self) -> bool:
        """Connect, and create the ``test`` database if needed."""
        import pymysql  # type: ignore[import-untyped, unused-ignore]

        try:
            conn = pymysql.connect(host="127.0.0.1", port=self.port, user="root",
                                   connect_timeout=2, autocommit=True)
        except pymysql.err.MySQLError:
            return False
        try:
            conn.cursor().execute("CREATE DATABASE IF NOT EXISTS test")
        finally:
            conn.close()
        return True

    @property
    def dsn(self) -> str:
        """The Go DSN of the ``test`` database."""
        return f"root:@tcp(127.0.0.1:{self.port})/test"


class PostgresServer(PrivateServer):
    """A PostgreSQL 15 cluster with trust authentication; the database is ``postgres``."""

    name = "PostgreSQL"
    stop_signal = signal.SIGINT  # "fast" shutdown: sessions are ended, no waiting
    crash_signal = signal.SIGQUIT  # "immediate": no checkpoint, recovery at next start

    def _owner(self) -> str | None:
        # PostgreSQL refuses to run as root: run it as the postgres account, if we are root.
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            unavailable("running as root, the restart test needs a 'postgres' account")
        return "postgres"

    def _popen_options(self) -> dict[str, Any]:
        owner = self._owner()
        return {"user": owner} if owner else {}

    def initialise(self) -> None:
        """Run initdb into ``root/data``."""
        if not (PG_BIN / "initdb").exists() or not (PG_BIN / "postgres").exists():
            unavailable(f"initdb and postgres are needed in {PG_BIN} for the restart test")
        owner = self._owner()
        if owner:
            shutil.chown(self.root, owner)
            shutil.chown(self.log, owner)
        with self.log.open("ab") as log:
            subprocess.run(
                [str(PG_BIN / "initdb"), "-D", str(self.root / "data"), "-A", "trust",
                 "-U", "postgres", "--no-sync"],
                stdout=log, stderr=subprocess.STDOUT, check=True, timeout=120,
                **self._popen_options(),
            )

    def command(self) -> list[str]:
        """postgres on loopback only, its socket in the private directory."""
        return [
            str(PG_BIN / "postgres"), "-D", str(self.root / "data"), "-p", str(self.port),
            "-k", str(self.root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
        ]

    def ready(self) -> bool:
        """Connect to the ``postgres`` database."""
        import psycopg

        try:
            with psycopg.connect(self.dsn, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    @property
    def dsn(self) -> str:
        """The URL of the ``postgres`` database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@contextmanager
def private_server(kind: type[PrivateServer]) -> Iterator[PrivateServer]:
    """A started private server; stopped and deleted afterwards, whatever happened."""
    root = Path(tempfile.mkdtemp(prefix=f"websession-{kind.name.lower()}-"))
    server = kind(root)
    try:
        server.log.touch()
        server.initialise()
        server.start()
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)


# -- the restart scenario, the same for every SQL provider ---------------------------------

SESSIONS = 12
WRITERS = 4
RECOVERY_TIMEOUT = 30.0
RECOVERED_WITHIN = 2.0  # seconds from the server's return to the first saved request


def _blob(n: int) -> str:
    # A value whose every byte depends on n: a torn write could not pass for a whole one.
    return f"<{n}>" * 300


@dataclass
class _Race:
    """What the writers saw while the server went away and came back."""

    acked: dict[int, int] = field(default_factory=dict)  # session -> last saved n
    done: list[int] = field(default_factory=lambda: [0] * WRITERS)  # successes per writer
    unavailable: int = 0  # StoreUnavailableError seen
    restarted_at: float = 0.0  # when the server was back
    recovered_in: float = -1.0  # from then to the first successful request
    errors: list[BaseException] = field(default_factory=list)  # anything else

    def succeeded(self, writer: int) -> None:
        self.done[writer] += 1
        if self.restarted_at and self.recovered_in < 0:
            self.recovered_in = time.monotonic() - self.restarted_at

    def bump(self, session: Any, index: int) -> int:
        n = int(session["n"]) + 1
        assert session["blob"] == _blob(n - 1), f"session {index} holds a torn value"
        session["n"] = n
        session["blob"] = _blob(n)
        return n


def check_restart_recovery(server: PrivateServer, provider: BaseProvider, mode: str) -> _Race:
    """Writers hammer sessions while ``server`` crashes and restarts under one manager.

    Asserts that the outage surfaces only as :class:`StoreUnavailableError` (its cause a
    driver error the provider lists), that the same manager serves requests again within
    ``RECOVERED_WITHIN`` seconds of the server's return, and that every session holds
    either its last acknowledged write or the one that raced the crash, never a mix, and
    never nothing. Returns what the writers saw.
    """
    manager = Manager(provider, {"gclifetime": 3600})
    with asyncio.Runner() as runner:
        clients = [Client(manager, mode, runner if mode == "async" else None)
                   for _ in range(SESSIONS)]
        for client in clients:
            client.roundtrip(n=0, blob=_blob(0))
        race = _Race(acked=dict.fromkeys(range(SESSIONS), 0))
        if mode == "sync":
            _race_threads(server, provider, clients, race)
        else:
            runner.run(_race_tasks(server, provider, clients, race))
        assert not race.errors, race.errors
        assert race.unavailable > 0, "no request noticed the outage"
        # Pools drop dead connections and reconnect on demand: no backoff to sit out.
        assert 0 <= race.recovered_in < RECOVERED_WITHIN, race
        for index, client in enumerate(clients):
            data = client.data()
            assert data.get("blob") == _blob(data.get("n", -1)), f"session {index}: {data}"
            assert data["n"] in (race.acked[index], race.acked[index] + 1), (
                index, data["n"], race.acked[index])
        assert clients[0].active() == SESSIONS
        if mode == "async":
            runner.run(provider.aclose())
        else:
            provider.close()
    return race


def _check_outage(provider: BaseProvider, error: StoreUnavailableError) -> None:
    assert isinstance(error.__cause__, provider.unavailable_errors), repr(error.__cause__)


def _race_threads(server: PrivateServer, provider: BaseProvider, clients: list[Client],
                  race: _Race) -> None:
    stop = threading.Event()
    lock = threading.Lock()

    def writer(w: int) -> None:
        mine = range(w, SESSIONS, WRITERS)  # each session has one writer: acks are ordered
        while not stop.is_set():
            for index in mine:
                client = clients[index]
                try:
                    session = client.open()
                    n = race.bump(session, index)
                    client.release(session)
                    race.acked[index] = n
                    race.succeeded(w)
                except StoreUnavailableError as exc:
                    _check_outage(provider, exc)
                    with lock:
                        race.unavailable += 1
                    time.sleep(0.02)
                except BaseException as exc:
                    race.errors.append(exc)
                    return

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(WRITERS)]
    for thread in threads:
        thread.start()
    try:
        _wait_for_progress(race, 5)
        server.stop(crash=True)
        with pytest.raises(StoreUnavailableError) as outage:
            Client(clients[0].manager, "sync", None, clients[0].cookie).data()
        _check_outage(provider, outage.value)
        time.sleep(0.3)
        server.start()
        race.restarted_at = time.monotonic()
        _wait_for_progress(race, 5)
    finally:
        stop.set()
        for thread in threads:
            thread.join()


async def _race_tasks(server: PrivateServer, provider: BaseProvider, clients: list[Client],
                      race: _Race) -> None:
    stop = asyncio.Event()

    async def writer(w: int) -> None:
        while not stop.is_set():
            for index in range(w, SESSIONS, WRITERS):
                try:
                    session = clients[index].begin()
                    await session.aload()
                    n = race.bump(session, index)
                    await session.asession_release([])
                    race.acked[index] = n
                    race.succeeded(w)
                except StoreUnavailableError as exc:
                    _check_outage(provider, exc)
                    race.unavailable += 1
                    await asyncio.sleep(0.02)
                except BaseException as exc:
                    race.errors.append(exc)
                    return

    tasks = [asyncio.create_task(writer(w)) for w in range(WRITERS)]
    try:
        await _await_progress(race, 5)
        await asyncio.to_thread(server.stop, crash=True)
        probe = clients[0].begin()
        with pytest.raises(StoreUnavailableError) as outage:
            await probe.aload()
        _check_outage(provider, outage.value)
        await asyncio.sleep(0.3)
        await asyncio.to_thread(server.start)
        race.restarted_at = time.monotonic()
        await _await_progress(race, 5)
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def _progress_target(race: _Race, more: int) -> list[int]:
    return [done + more for done in race.done]


def _wait_for_progress(race: _Race, more: int) -> None:
    target = _progress_target(race, more)
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while any(d < t for d, t in zip(race.done, target, strict=True)) and not race.errors:
        assert time.monotonic() < deadline, f"no recovery in {RECOVERY_TIMEOUT:g} s: {race}"
        time.sleep(0.02)


async def _await_progress(race: _Race, more: int) -> None:
    target = _progress_target(race, more)
    deadline = time.monotonic() + RECOVERY_TIMEOUT
    while any(d < t for d, t in zip(race.done, target, strict=True)) and not race.errors:
        assert time.monotonic() < deadline, f"no recovery in {RECOVERY_TIMEOUT:g} s: {race}"
        await asyncio.sleep(0.02)
