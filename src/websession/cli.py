"""The ``websession`` command: look at and look after a session store.

::

    websession --provider sqlite --config '{"providerConfig": "./sessions.db"}' check
    WEBSESSION_PROVIDER=file WEBSESSION_CONFIG=@websession.json websession list --json

Every command builds a :class:`~websession.Manager` from ``--provider`` and ``--config``
(the seed's JSON, or ``@path`` to a file holding it), or from ``WEBSESSION_PROVIDER`` and
``WEBSESSION_CONFIG``. Errors are one line on stderr and a non-zero exit status: 2 for a
bad configuration, 3 for an unreachable store, 4 for what the provider cannot do, 1 for
anything else. With ``rich`` installed (``websession[cli]``) and stdout a terminal, long
walks show a progress bar on stderr; otherwise output is plain lines.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TextIO

from ._manager import Manager
from ._ops import SessionInfo
from .exceptions import (
    ConfigurationError,
    StoreUnavailableError,
    UnsupportedOperationError,
    WebSessionError,
)
from .providers.base import ClientSideProvider

__all__ = ["main"]

EXIT_ERROR, EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_UNSUPPORTED = 1, 2, 3, 4
BATCH = 500


class _Progress:
    """A rich progress bar on stderr when stdout is a terminal; nothing otherwise."""

    def __init__(self, label: str, total: int | None) -> None:
        self._bar: Any = None
        if not sys.stdout.isatty():
            return
        try:
            from rich.console import Console
            from rich.progress import Progress
        except ImportError:  # the cli extra is optional: plain lines then
            return
        self._bar = Progress(console=Console(stderr=True), transient=True)
        self._task = self._bar.add_task(label, total=total)

    def __enter__(self) -> _Progress:
        if self._bar is not None:
            self._bar.start()
        return self

    def advance(self, done: int) -> None:
        """Mark ``done`` more items done."""
        if self._bar is not None:
            self._bar.advance(self._task, done)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def _walk(manager: Manager, label: str) -> Iterator[SessionInfo]:
    """Every live session, with a progress bar sized by the store's count."""
    total = manager.get_active_session() if sys.stdout.isatty() else None
    with _Progress(label, total) as progress:
        for page, _ in manager.pages(BATCH):
            yield from page
            progress.advance(len(page))


def _config_text(value: str) -> str:
    if value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as file:
                return file.read()
        except OSError as exc:
            raise ConfigurationError(f"cannot read the config file {value[1:]!r}: "
                                     f"{exc.strerror}") from exc
    return value


def _manager(args: argparse.Namespace) -> Manager:
    provider = args.provider or os.environ.get("WEBSESSION_PROVIDER")
    if not provider:
        raise ConfigurationError("no provider: give --provider NAME or set "
                                 "WEBSESSION_PROVIDER")
    config = args.config if args.config is not None else os.environ.get("WEBSESSION_CONFIG")
    return Manager(provider, _config_text(config) if config else None)


# -- the commands ---------------------------------------------------------------------


def _check(manager: Manager, args: argparse.Namespace, out: TextIO) -> int:
    print(f"config: ok (provider {args.provider_name})", file=out)
    if isinstance(manager.provider, ClientSideProvider):
        print("store: none (sessions are sealed into the cookie: nothing to reach)", file=out)
        return 0
    print(f"store: reachable, {manager.get_active_session()} live sessions", file=out)
    session = manager.get_session_store(None)
    nonce = uuid.uuid4().hex
    session["websession-check"] = nonce
    session.session_release([])
    try:
        info = manager.inspect(session.session_id())
    finally:
        session.destroy()
    if info is None or info.data.get("websession-check") != nonce:
        print("round-trip: FAILED (a session written could not be read back)", file=out)
        return EXIT_ERROR
    gone = manager.inspect(info.sid) is None
    print(f"round-trip: ok (write, read{', delete' if gone else ''})", file=out)
    return 0 if gone else EXIT_ERROR


def _count(manager: Manager, args: argparse.Namespace, out: TextIO) -> int:
    print(manager.get_active_session(), file=out)
    return 0


def _gc(manager: Manager, args: argparse.Namespace, out: TextIO) -> int:
    with _Progress("collecting expired sessions", None):
        removed = manager.gc()
    print(f"removed {removed} expired sessions", file=out)
    return 0


def _list(manager: Manager, args: argparse.Namespace, out: TextIO) -> int:
    walk = (iter(manager.sessions_of(args.user)) if args.user is not None
            else _walk(manager, "listing sessions"))
    first = next(walk, None)  # a provider that cannot list fails before any output
    if not args.json:
        print(f"{'ID':<12} {'CREATED (UTC)':<19}  {'EXPIRES (UTC)':<19}  {'SIZE':>7}  USER",
              file=out)
    for info in itertools.chain([first] if first else [], walk):
        if args.json:  # one object a line: a million sessions never sit in memory
            print(json.dumps({"id": info.sid, "created": info.created,
                              "expires": info.expires_at, "size": info.size,
                              "version": info.version, "user": info.user}), file=out)
        else:
            print(f"{info.sid[:8] + '…':<12} {_when(info.created)}  "
                  f"{_when(info.expires_at)}  {info.size:>7}  {info.user or '-'}", file=out)
    return 0


def _show(manager: Manager, args: argparse.Namespace, out: TextIO) -> int:
    info = manager.inspect(args.id)
    if info is None:
        print(f"websession: no live session {args.id!r}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps({"id": info.sid, "created": info.created, "expires": info.expires_at,
                          "size": info.size, "version": info.version, "user": info.user,
                          "data": info.data},
                         default=str, indent=2), file=out)
        return 0
    print(f"id:       {info.sid}\ncreated:  {_when(info.created)} UTC\n"
          f"expires:  {_when(info.expires_at)} UTC\nsize:     {info.size} bytes\n"
          f"version:  {info.version}\nuser:     {info.user or '-'}\ndata:", file=out)
    for key, value in info.data.items():
        print(f"  {key}: {value!r}", file=out)
    return 0


def _destroy(manager: Manager, args: argparse.Namespace, out: TextIO) -> int:
    missing = 0
    for sid in args.ids:
        if manager.inspect(sid) is None:
            print(f"no live session {sid}", file=out)
            missing += 1
            continue
        manager.get_session_store(sid).destroy()
        print(f"destroyed {sid}", file=out)
    return EXIT_ERROR if missing else 0


def _revoke(manager: Manager, args: argparse.Namespace, out: TextIO) -> int:
    revoked = manager.revoke_user(args.user, keep=args.keep)
    print(f"revoked {revoked} sessions of user {args.user}", file=out)
    return 0


def _migrate(manager: Manager, args: argparse.Namespace, out: TextIO) -> int:
    target = Manager(args.to, _config_text(args.to_config) if args.to_config else None)
    read = created = 0
    try:
        total = manager.get_active_session() if sys.stdout.isatty() else None
        with _Progress(f"migrating to {args.to}", total) as progress:
            for got, made, _ in manager.migrate(target, BATCH, dry_run=args.dry_run):
                read, created = read + got, created + made
                progress.advance(got)
    finally:
        target.close()
    if args.dry_run:
        print(f"would copy {read} sessions to {args.to} (dry run: nothing written)",
              file=out)
    else:
        print(f"copied {created} sessions to {args.to}; {read - created} were already "
              "there", file=out)
    return 0


def _stats(manager: Manager, args: argparse.Namespace, out: TextIO) -> int:
    stats: dict[str, Any] = {"live": manager.get_active_session()}
    if manager.can_list:
        sizes, oldest = 0, None
        for info in _walk(manager, "measuring sessions"):
            sizes += info.size
            oldest = info.created if oldest is None else min(oldest, info.created)
        stats["bytes"] = sizes
        stats["mean_size"] = round(sizes / stats["live"]) if stats["live"] else 0
        stats["oldest_created"] = oldest
    if args.json:
        print(json.dumps(stats), file=out)
        return 0
    print(f"live sessions: {stats['live']}", file=out)
    if "bytes" in stats:
        print(f"stored bytes:  {stats['bytes']} (mean {stats['mean_size']} a session)",
              file=out)
        if stats["oldest_created"] is not None:
            print(f"oldest:        created {_when(stats['oldest_created'])} UTC", file=out)
    return 0


Command = Callable[[Manager, argparse.Namespace, TextIO], int]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="websession", description="Look at and look after a websession store.")
    parser.add_argument("--provider", help="provider name (env WEBSESSION_PROVIDER)")
    parser.add_argument("--config", help="the seed's JSON config, or @FILE holding it "
                                         "(env WEBSESSION_CONFIG)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, run: Command, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(run=run)
        return sub

    command("check", _check, "config valid, store reachable, a session round-trips")
    command("count", _count, "the number of live sessions")
    command("gc", _gc, "remove expired sessions now")
    listing = command("list", _list, "every live session: ID prefix, created, expires, "
                      "size, user")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    listing.add_argument("--user", help="only this user's sessions")
    show = command("show", _show, "one session's data")
    show.add_argument("id")
    show.add_argument("--json", action="store_true")
    command("destroy", _destroy, "delete sessions by ID").add_argument("ids", nargs="+",
                                                                      metavar="ID")
    revoke = command("revoke", _revoke, "delete every session of a user")
    revoke.add_argument("--user", required=True)
    revoke.add_argument("--keep", metavar="ID", help="a session to keep")
    # A running application's counters live in its own process (Manager.stats(), the
    # Prometheus exporter); what a separate command can report is the store itself.
    migrate = command("migrate", _migrate, "copy every live session to another store "
                      "(IDs, data, expiry, user); re-run to finish an interrupted copy")
    migrate.add_argument("--to", required=True, metavar="NAME", help="the target provider")
    migrate.add_argument("--to-config", metavar="JSON", help="its config, or @FILE")
    migrate.add_argument("--dry-run", action="store_true", help="count, write nothing")
    command("stats", _stats, "live sessions, the bytes they take, the oldest"
            ).add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
    manager = None
    try:
        manager = _manager(args)
        args.provider_name = args.provider or os.environ.get("WEBSESSION_PROVIDER")
        status: int = args.run(manager, args, sys.stdout)
        return status
    except BrokenPipeError:
        # The reader left (`websession list | head`): not an error worth a message.
        # Python would complain again when flushing stdout at exit, so point it elsewhere.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except ConfigurationError as exc:
        return _fail(f"configuration error: {exc}", EXIT_CONFIG)
    except StoreUnavailableError as exc:
        return _fail(str(exc), EXIT_UNAVAILABLE)
    except UnsupportedOperationError as exc:
        return _fail(str(exc), EXIT_UNSUPPORTED)
    except WebSessionError as exc:
        return _fail(str(exc), EXIT_ERROR)
    except Exception as exc:  # a driver error no provider translated: still no traceback
        return _fail(f"{type(exc).__name__}: {exc}", EXIT_ERROR)
    finally:
        if manager is not None:
            with contextlib.suppress(Exception):
                manager.close()


def _fail(message: str, status: int) -> int:
    print(f"websession: {message}", file=sys.stderr)
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
