"""The ``websession`` command, run for real in a subprocess against real stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from bench.ops_bench import drop_table
from tests.servers import require_server

from websession import Manager

KEY = "0123456789abcdef0123456789abcdef"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m websession ARGS``, its output captured (so stdout is not a terminal)."""
    return subprocess.run([sys.executable, "-m", "websession", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})},
                          check=False)


def fill(provider: str, config: dict[str, Any], n: int, **extra: Any) -> list[str]:
    with Manager(provider, config) as manager:
        sids = []
        for i in range(n):
            session = manager.get_session_store(None)
            session["user"] = f"user{i}"
            for key, value in extra.items():
                session[key] = value
            session.session_release([])
            sids.append(session.session_id())
        return sids


@pytest.fixture(params=["sqlite", "file"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, dict[str, Any]]:
    path = tmp_path / ("s.db" if request.param == "sqlite" else "sessions")
    return str(request.param), {"providerConfig": str(path)}


def test_check_count_list_show_destroy_stats(store: tuple[str, dict[str, Any]]) -> None:
    provider, config = store
    opts = ["--provider", provider, "--config", json.dumps(config)]
    check = run(*opts, "check")
    assert check.returncode == 0, check.stderr
    assert check.stdout.splitlines() == [
        f"config: ok (provider {provider})", "store: reachable, 0 live sessions",
        "round-trip: ok (write, read, delete)"]
    sids = fill(provider, config, 12)
    assert run(*opts, "count").stdout == "12\n"

    listed = run(*opts, "list")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:2] == ["ID", "CREATED"]
    assert sorted(line.split()[0] for line in lines[1:]) == sorted(s[:8] + "…" for s in sids)
    rows = [json.loads(line) for line in run(*opts, "list", "--json").stdout.splitlines()]
    assert sorted(row["id"] for row in rows) == sorted(sids)
    assert all(row["created"] < row["expires"] and row["size"] > 0 for row in rows)

    shown = json.loads(run(*opts, "show", sids[3], "--json").stdout)
    assert shown["data"] == {"user": "user3"}
    assert "user: 'user3'" in run(*opts, "show", sids[3]).stdout

    destroyed = run(*opts, "destroy", sids[0], sids[1])
    assert destroyed.stdout.splitlines() == [f"destroyed {sids[0]}", f"destroyed {sids[1]}"]
    assert run(*opts, "count").stdout == "10\n"
    again = run(*opts, "destroy", sids[0])
    assert again.returncode == 1 and "no live session" in again.stdout
    missing = run(*opts, "show", sids[0])
    assert missing.returncode == 1 and "no live session" in missing.stderr

    stats = json.loads(run(*opts, "stats", "--json").stdout)
    assert stats["live"] == 10 and stats["mean_size"] == round(stats["bytes"] / 10) > 0


def test_gc_and_environment_configuration(store: tuple[str, dict[str, Any]]) -> None:
    provider, config = store
    fill(provider, {**config, "maxLifetime": 1}, 3)
    fill(provider, config, 2)
    time.sleep(1.2)
    env = {"WEBSESSION_PROVIDER": provider, "WEBSESSION_CONFIG": json.dumps(config)}
    gc = run("gc", env=env)
    assert (gc.returncode, gc.stdout) == (0, "removed 3 expired sessions\n")
    assert run("count", env=env).stdout == "2\n"


def test_a_reader_that_leaves_early_is_not_an_error(tmp_path: Path) -> None:
    config = {"providerConfig": str(tmp_path / "s.db")}
    fill("sqlite", config, 600)
    command = (f"{sys.executable} -m websession --provider sqlite "
               f"--config '{json.dumps(config)}' list --json | head -1")
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True,
                            timeout=60, check=False)
    assert json.loads(result.stdout)["id"]
    assert result.stderr == ""


def test_users_sessions_listed_and_revoked(tmp_path: Path) -> None:
    config = {"providerConfig": str(tmp_path / "s.db")}
    opts = ["--provider", "sqlite", "--config", json.dumps(config)]
    with Manager("sqlite", config) as manager:
        sids = []
        for user in ("ann", "ann", "bob"):
            session = manager.get_session_store(None)
            session.bind_user(user)
            session.session_release([])
            sids.append(session.session_id())
    listed = run(*opts, "list", "--user", "ann").stdout.splitlines()
    assert [line.split()[-1] for line in listed] == ["USER", "ann", "ann"]
    revoked = run(*opts, "revoke", "--user", "ann", "--keep", sids[1])
    assert revoked.stdout == "revoked 1 sessions of user ann\n"
    rows = [json.loads(line) for line in run(*opts, "list", "--json").stdout.splitlines()]
    assert sorted((row["id"], row["user"]) for row in rows) == sorted(
        [(sids[1], "ann"), (sids[2], "bob")])


def test_check_of_cookie_sessions_has_no_store_to_reach() -> None:
    config = json.dumps({"providerConfig": {"securityKey": KEY}})
    result = run("--provider", "cookie", "--config", config, "check")
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].startswith("store: none")


def test_config_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "websession.json"
    path.write_text(json.dumps({"providerConfig": str(tmp_path / "s.db")}))
    fill("sqlite", json.loads(path.read_text()), 4)
    assert run("--provider", "sqlite", "--config", f"@{path}", "count").stdout == "4\n"


@pytest.mark.parametrize(("args", "status", "message"), [
    (["--provider", "sqlite", "--config", "{bad", "count"], 2, "invalid JSON"),
    (["--provider", "nope", "count"], 2, "unknown session provider 'nope'"),
    (["count"], 2, "give --provider NAME or set WEBSESSION_PROVIDER"),
    (["--provider", "sqlite", "--config", "@/nonexistent/x.json", "count"], 2,
     "cannot read the config file"),
    (["--provider", "redis", "--config", '{"providerConfig": "127.0.0.1:1"}', "check"], 3,
     "unavailable"),
    (["--provider", "cookie", "--config",
      json.dumps({"providerConfig": {"securityKey": KEY}}), "list"], 4,
     "cannot be listed"),
])
def test_errors_are_one_line_and_a_status(args: list[str], status: int, message: str) -> None:
    result = run(*args, env={"WEBSESSION_PROVIDER": "", "WEBSESSION_CONFIG": ""})
    assert result.returncode == status, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("websession: ")
    # Nothing half-printed, except what `check` had verified before it failed.
    assert result.stdout in ("", "config: ok (provider redis)\n")


@pytest.fixture
def redis_config() -> Iterator[dict[str, Any]]:
    require_server("Redis", "127.0.0.1", 6379)
    prefix = f"cli-test-{uuid.uuid4().hex[:8]}:"
    yield {"providerConfig": {"addr": "127.0.0.1:6379", "prefix": prefix}}
    import redis

    with redis.Redis("127.0.0.1", 6379) as client:
        keys = list(client.scan_iter(f"{prefix}*"))
        if keys:
            client.delete(*keys)


def test_redis_check_count_gc(redis_config: dict[str, Any]) -> None:
    opts = ["--provider", "redis", "--config", json.dumps(redis_config)]
    check = run(*opts, "check")
    assert check.returncode == 0, check.stderr
    assert check.stdout.endswith("round-trip: ok (write, read, delete)\n")
    fill("redis", redis_config, 3)
    assert run(*opts, "count").stdout == "3\n"
    gc = run(*opts, "gc")
    assert gc.returncode == 0 and gc.stdout.startswith("removed ")


POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture(params=["redis", "postgresql", "mysql"])
def server_store(request: pytest.FixtureRequest) -> Iterator[tuple[str, dict[str, Any]]]:
    """A store on one of the shared servers, under names of this test's own."""
    provider = str(request.param)
    if provider == "redis":
        yield provider, request.getfixturevalue("redis_config")
        return
    table = f"cli_test_{uuid.uuid4().hex[:10]}"
    if provider == "postgresql":
        require_server("PostgreSQL", "127.0.0.1", 5432)
        dsn = POSTGRES
    else:
        require_server("MariaDB", "127.0.0.1", 3306)
        dsn = "root:@tcp(127.0.0.1:3306)/test"
    try:
        yield provider, {"providerConfig": {"dsn": dsn, "table": table}}
    finally:
        drop_table(provider, table)


def _logins(provider: str, config: dict[str, Any], users: list[str]) -> list[str]:
    with Manager(provider, config) as manager:
        sids = []
        for user in users:
            session = manager.get_session_store(None)
            session.bind_user(user)
            session["cart"] = [1, 2]
            session.session_release([])
            sids.append(session.session_id())
        return sids


def test_server_stores_count_list_users_and_revoke(
        server_store: tuple[str, dict[str, Any]]) -> None:
    provider, config = server_store
    opts = ["--provider", provider, "--config", json.dumps(config)]
    sids = _logins(provider, config, ["ann", "ann", "bob", "ann"])
    assert run(*opts, "count").stdout == "4\n"
    listed = run(*opts, "list", "--user", "ann")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert [line.split()[0] for line in lines[1:]] == [
        sid[:8] + "…" for sid in (sids[0], sids[1], sids[3])]  # oldest login first
    assert {line.split()[-1] for line in lines[1:]} == {"ann"}
    rows = [json.loads(line) for line in run(*opts, "list", "--json").stdout.splitlines()]
    assert sorted((row["id"], row["user"]) for row in rows) == sorted(
        zip(sids, ["ann", "ann", "bob", "ann"], strict=True))
    revoked = run(*opts, "revoke", "--user", "ann", "--keep", sids[1])
    assert (revoked.returncode, revoked.stdout) == (0, "revoked 2 sessions of user ann\n")
    assert run(*opts, "count").stdout == "2\n"
    remaining = [json.loads(line)["id"] for line in
                 run(*opts, "list", "--user", "ann", "--json").stdout.splitlines()]
    assert remaining == [sids[1]]
    stats = json.loads(run(*opts, "stats", "--json").stdout)
    assert stats["live"] == 2 and stats["bytes"] > 0


def test_migrate_into_and_out_of_server_stores(
        tmp_path: Path, server_store: tuple[str, dict[str, Any]]) -> None:
    provider, config = server_store
    source = {"providerConfig": str(tmp_path / "from.db")}
    back = {"providerConfig": str(tmp_path / "back.db")}
    fill("sqlite", source, 1100)
    ann = _logins("sqlite", source, ["ann", "ann"])
    into = ["--provider", "sqlite", "--config", json.dumps(source), "migrate",
            "--to", provider, "--to-config", json.dumps(config)]
    migrated = run(*into)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == f"copied 1102 sessions to {provider}; 0 were already there\n"
    assert run(*into).stdout == f"copied 0 sessions to {provider}; 1102 were already there\n"
    opts = ["--provider", provider, "--config", json.dumps(config)]
    assert run(*opts, "count").stdout == "1102\n"
    bound = [json.loads(line)["id"] for line in
             run(*opts, "list", "--user", "ann", "--json").stdout.splitlines()]
    assert sorted(bound) == sorted(ann)  # the binding came along
    out = run(*opts, "migrate", "--to", "sqlite", "--to-config", json.dumps(back))
    assert out.stdout == "copied 1102 sessions to sqlite; 0 were already there\n"
    with Manager("sqlite", source) as src, Manager("sqlite", back) as dst:
        before = {info.sid: info for info in src.iter_sessions()}
        after = {info.sid: info for info in dst.iter_sessions()}
        assert after.keys() == before.keys()
        for sid, info in before.items():  # data, creation, version, user; expiry to the ms
            copied = after[sid]
            assert (copied.data, copied.created, copied.version, copied.user) == (
                info.data, info.created, info.version, info.user)
            assert abs(copied.expires_at - info.expires_at) < 0.01


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "websession"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0 and "check" in result.stdout and "destroy" in result.stdout


def test_a_terminal_gets_a_progress_bar(tmp_path: Path) -> None:
    import pty

    config = {"providerConfig": str(tmp_path / "s.db")}
    fill("sqlite", config, 30)
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "websession", "--provider", "sqlite", "--config",
         json.dumps(config), "list"],
        stdout=follower, stderr=follower, env={**os.environ, "TERM": "xterm", "COLUMNS": "100"},
    ) as proc:
        os.close(follower)
        output = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command is done
                break
            if not chunk:
                break
            output += chunk
        assert proc.wait(timeout=60) == 0
    os.close(leader)
    text = output.decode()
    assert "listing sessions" in text  # rich's bar, on the terminal
    assert text.count("…") == 30  # and every session's line


def test_migrate_copies_everything_once_and_resumes(tmp_path: Path) -> None:
    source = {"providerConfig": str(tmp_path / "from.db")}
    target = {"providerConfig": str(tmp_path / "to.db")}
    sids = fill("sqlite", source, 1203, cart=[1, 2])
    with Manager("sqlite", source) as manager:
        session = manager.get_session_store(sids[0])
        session.bind_user("ann")
        session.session_release([])
        before = {info.sid: info for info in manager.iter_sessions()}
    opts = ["--provider", "sqlite", "--config", json.dumps(source), "migrate",
            "--to", "sqlite", "--to-config", json.dumps(target)]
    dry = run(*opts, "--dry-run")
    assert dry.stdout == "would copy 1203 sessions to sqlite (dry run: nothing written)\n"
    with Manager("sqlite", target) as manager:
        assert manager.get_active_session() == 0
    with Manager("sqlite", source) as src, Manager("sqlite", target) as dst:
        pages = src.migrate(dst, 100)
        for _ in range(5):  # five batches copied, then the process "dies"
            next(pages)
        pages.close()
        assert dst.get_active_session() == 500
    migrated = run(*opts)
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout == "copied 703 sessions to sqlite; 500 were already there\n"
    again = run(*opts)
    assert again.stdout == "copied 0 sessions to sqlite; 1203 were already there\n"
    with Manager("sqlite", target) as manager:
        after = {info.sid: info for info in manager.iter_sessions()}
        assert after == before  # IDs, data, creation, expiry, size, version and user
        assert [info.sid for info in manager.sessions_of("ann")] == [sids[0]]


def test_migrate_into_redis(tmp_path: Path, redis_config: dict[str, Any]) -> None:
    source = {"providerConfig": str(tmp_path / "from.db")}
    fill("sqlite", source, 40)
    opts = ["--provider", "sqlite", "--config", json.dumps(source), "migrate",
            "--to", "redis", "--to-config", json.dumps(redis_config)]
    assert run(*opts).stdout == "copied 40 sessions to redis; 0 were already there\n"
    assert run(*opts).stdout == "copied 0 sessions to redis; 40 were already there\n"
    with Manager("sqlite", source) as src, Manager("redis", redis_config) as dst:
        for info in src.iter_sessions():
            copied = dst.inspect(info.sid)
            assert copied is not None
            assert (copied.data, copied.created) == (info.data, info.created)
            assert abs(copied.expires_at - info.expires_at) < 1
