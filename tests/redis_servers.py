"""Private Redis servers for the tests: one server, a cluster, a Sentinel set-up.

Each is a real ``redis-server`` started on free loopback ports, in a directory of its
own, and stopped — killed if need be — by :meth:`Servers.close`, which fixtures call in
their teardown whatever happened. Without ``redis-server``/``redis-cli`` the tests that
need them skip, or fail under ``CI=true`` (the rule of :mod:`tests.servers`).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from tests.servers import unavailable

__all__ = [
    "HOST",
    "ClusterServers",
    "CommandLog",
    "RedisServer",
    "SentinelServers",
    "Servers",
    "free_port",
    "private_server",
    "require_redis_binaries",
    "wait_for",
]

HOST = "127.0.0.1"


def require_redis_binaries() -> None:
    """Skip (or, under ``CI=true``, fail) unless redis-server and redis-cli are installed."""
    missing = [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]
    if not missing:
        return
    unavailable(f"{' and '.join(missing)} not installed: private Redis servers cannot start")


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port(*, cluster_bus: bool = False) -> int:
    """A free loopback port; with ``cluster_bus``, one whose bus port (+10000) is free too."""
    for _ in range(500):
        port = random.randint(20000, 29999)
        if _bindable(port) and (not cluster_bus or _bindable(port + 10000)):
            return port
    raise RuntimeError("no free loopback port found")


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``check`` until it is true; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


class RedisServer:
    """One ``redis-server`` process (or a sentinel) on a loopback port."""

    def __init__(self, directory: Path, port: int, *args: str, sentinel: bool = False) -> None:
        self.directory = directory
        self.port = port
        self.args = args
        self.sentinel = sentinel
        self.process: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.log = directory / "redis.log"

    def start(self) -> RedisServer:
        """Start the process and wait until it answers PING."""
        command = ["redis-server"]
        if self.sentinel:
            # A sentinel rewrites its config file: it must be a file of its own.
            conf = self.directory / "sentinel.conf"
            if not conf.exists():
                conf.write_text("\n".join(self.args) + "\n")
            command += [str(conf), "--sentinel"]
        command += [
            "--port", str(self.port), "--bind", HOST, "--dir", str(self.directory),
            "--logfile", str(self.log), "--daemonize", "no",
        ]
        if not self.sentinel:
            command += ["--save", "", *self.args]
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for(self._answers, 10, f"redis-server on port {self.port}")
        except TimeoutError:
            self.stop(kill=True)
            raise RuntimeError(f"redis-server on port {self.port} did not start:\n"
                               f"{self.log_tail()}") from None
        return self

    def _answers(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise TimeoutError(f"redis-server on port {self.port} exited")
        with self.client() as client:
            try:
                return bool(client.ping())
            except redis.exceptions.AuthenticationError:
                return True  # it answers, if only to ask for a password

    def client(self, **kwargs: Any) -> redis.Redis:
        """A fresh client of this server (close it after use)."""
        # No retries: a server that is not up yet must say so at once.
        options = {"socket_timeout": 5, "retry": Retry(NoBackoff(), 0), **kwargs}
        return redis.Redis(HOST, self.port, **options)

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's log, for failure messages."""
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def stop(self, *, kill: bool = False) -> None:
        """Stop the server: SIGKILL (a crash) if ``kill``, else SIGTERM then SIGKILL."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


@contextlib.contextmanager
def private_server(directory: Path) -> Iterator[RedisServer]:
    """A started ``redis-server`` of its own in ``directory``; killed afterwards whatever
    happened (skipped, or failed under ``CI=true``, without the binaries)."""
    require_redis_binaries()
    server = RedisServer(directory, free_port())
    try:
        yield server.start()
    finally:
        server.stop(kill=True)


class CommandLog:
    """What clients send one server, through ``MONITOR``: one entry per command, that is
    per round trip. Commands that Lua scripts run are listed apart, in :attr:`scripted`."""

    def __init__(self, server: RedisServer) -> None:
        self._marker = server.client()
        self._marker.ping()  # its connection hand-shake must not show in the log
        self._client = server.client(socket_timeout=10)
        client: Any = self._client  # monitor() is untyped in redis-py
        self._monitor = client.monitor()
        self._monitor.__enter__()
        self.scripted: list[str] = []

    def take(self) -> list[str]:
        """Names of the commands received since the last call, in order."""
        marker = uuid.uuid4().hex
        self._marker.echo(marker)
        sent: list[str] = []
        self.scripted = []
        while True:
            entry = self._monitor.next_command()
            name, _, rest = str(entry["command"]).partition(" ")
            if name.upper() == "ECHO" and marker in rest:
                return sent
            (self.scripted if entry["client_type"] == "lua" else sent).append(name.upper())

    def close(self) -> None:
        """Stop monitoring."""
        self._monitor.__exit__()
        self._client.close()
        self._marker.close()


class Servers:
    """A group of servers stopped together; the base of the set-ups below."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.servers: list[RedisServer] = []

    def add(self, name: str, port: int, *args: str, sentinel: bool = False) -> RedisServer:
        """Start one more server, in ``directory/name``."""
        server = RedisServer(self.directory / name, port, *args, sentinel=sentinel)
        self.servers.append(server)
        return server.start()

    def close(self) -> None:
        """Stop every server (kill those that do not stop)."""
        for server in reversed(self.servers):
            server.stop()


class ClusterServers(Servers):
    """A Redis Cluster of ``masters`` masters and no replicas, made by
    ``redis-cli --cluster create``."""

    def __init__(self, directory: Path, masters: int = 3) -> None:
        super().__init__(directory)
        try:
            self._start(masters)
        except BaseException:
            self.close()  # a half-made cluster must not outlive the failed set-up
            raise

    def _start(self, masters: int) -> None:
        self.masters = [
            self.add(f"node{i}", free_port(cluster_bus=True), "--cluster-enabled", "yes",
                     "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000",
                     "--appendonly", "no")
            for i in range(masters)
        ]
        addresses = [f"{HOST}:{server.port}" for server in self.masters]
        result = subprocess.run(
            ["redis-cli", "--cluster", "create", *addresses, "--cluster-replicas", "0",
             "--cluster-yes"],
            capture_output=True, text=True, timeout=60, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed:\n{result.stdout}"
                               f"\n{result.stderr}")
        for server in self.masters:
            wait_for(partial(self._ok, server), 20, f"cluster state ok on {server.port}")

    @staticmethod
    def _ok(server: RedisServer) -> bool:
        with server.client() as client:
            info = client.execute_command("CLUSTER", "INFO")
        text = info.decode() if isinstance(info, bytes) else str(info)
        return "cluster_state:ok" in text

    @property
    def seeds(self) -> str:
        """beego's address list of the cluster's nodes."""
        return ";".join(f"{HOST}:{server.port}" for server in self.masters)


class SentinelServers(Servers):
    """A master, one replica and three sentinels watching them as ``mymaster``."""

    master_name = "mymaster"

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        try:
            self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> None:
        # No delay before a full sync (5 s by default): either may serve one after a failover.
        no_delay = ("--repl-diskless-sync-delay", "0")
        self.master = self.add("master", free_port(), *no_delay)
        self.replica = self.add("replica", free_port(), *no_delay, "--replicaof", HOST,
                                str(self.master.port))
        wait_for(self._replica_linked, 20, "the replica to sync with the master")
        settings = [
            f"sentinel monitor {self.master_name} {HOST} {self.master.port} 2",
            f"sentinel down-after-milliseconds {self.master_name} 1000",
            f"sentinel failover-timeout {self.master_name} 3000",
            f"sentinel parallel-syncs {self.master_name} 1",
            # Known from the start, not from the master's INFO some seconds later.
            f"sentinel known-replica {self.master_name} {HOST} {self.replica.port}",
        ]
        self.sentinels = [
            self.add(f"sentinel{i}", free_port(), *settings, sentinel=True) for i in range(3)
        ]
        for sentinel in self.sentinels:
            # Look at the servers every 200 ms, not 10 s: a demoted master is then seen as
            # the new replica at once (Redis 7's test hook; older ones lack it).
            with sentinel.client() as client, contextlib.suppress(redis.ResponseError):
                client.execute_command("SENTINEL", "DEBUG", "INFO-PERIOD", 200)
        wait_for(self._watched, 30, "the sentinels to see the master and the replica")

    def _replica_linked(self) -> bool:
        with self.replica.client() as client:
            info = client.info("replication")
        return bool(info.get("master_link_status") == "up")

    def _watched(self) -> bool:
        for sentinel in self.sentinels:
            with sentinel.client() as client:
                state = client.execute_command("SENTINEL", "MASTER", self.master_name)
                replicas = client.execute_command("SENTINEL", "REPLICAS", self.master_name)
            if "s_down" in _pairs(state).get("flags", ""):
                return False
            if not any(_pairs(r).get("flags") == "slave"
                       and _pairs(r).get("master-link-status") == "ok" for r in replicas):
                return False  # not yet a replica it could promote
        return True

    @property
    def addresses(self) -> str:
        """beego's address list of the sentinels."""
        return ";".join(f"{HOST}:{sentinel.port}" for sentinel in self.sentinels)

    def master_port(self) -> int:
        """The master's port as the first sentinel reports it."""
        with self.sentinels[0].client() as client:
            _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                             self.master_name)
        return int(port)

    def roles(self) -> tuple[RedisServer, RedisServer]:
        """(master, replica) as they are now."""
        port = self.master_port()
        if port == self.master.port:
            return self.master, self.replica
        return self.replica, self.master

    def replicate(self, timeout: float = 20) -> None:
        """Wait until the replica is linked and has every write the master acknowledged."""
        master, replica = self.roles()

        def caught_up() -> bool:
            with replica.client() as client:
                if client.info("replication").get("master_link_status") != "up":
                    return False
            with master.client() as client:
                return int(client.execute_command("WAIT", 1, 500)) >= 1

        wait_for(caught_up, timeout, "the replica to catch up")

    def failover(self, timeout: float = 20) -> int:
        """Force a failover and wait until every sentinel and the new master agree;
        return the new master's port."""
        old = self.master_port()
        # After an earlier failover the old master needs a moment to be a good replica.
        wait_for(self._watched, 30, "a replica the sentinels could promote")
        with self.sentinels[0].client() as client:
            client.execute_command("SENTINEL", "FAILOVER", self.master_name)
        new_server = self.replica if old == self.master.port else self.master

        def switched() -> bool:
            for sentinel in self.sentinels:
                with sentinel.client() as client:
                    _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                                     self.master_name)
                if int(port) != new_server.port:
                    return False
            with new_server.client() as client:
                return bool(client.info("replication").get("role") == "master")

        wait_for(switched, timeout, "the failover to complete")
        # Sentinel demotes the old master only 8 s after it reports the wrong role (so a
        # flapping server is not reconfigured back and forth); do what it will do, now.
        old_server = self.master if new_server is self.replica else self.replica
        with old_server.client() as client:
            client.execute_command("REPLICAOF", HOST, new_server.port)
        return new_server.port


def _pairs(reply: Any) -> dict[str, str]:
    """A flat [name, value, ...] reply (or a dict, by redis-py version) as a dict."""
    if isinstance(reply, dict):
        items = list(reply.items())
    else:
        items = list(zip(reply[::2], reply[1::2], strict=True))
    return {
        (k.decode() if isinstance(k, bytes) else str(k)):
        (v.decode() if isinstance(v, bytes) else str(v))
        for k, v in items
    }
