"""A small Django site for the Django adapter's tests: its settings (configured once per
process, only if nobody configured Django before) and its views.

The stock ``SessionMiddleware``, ``AuthenticationMiddleware`` and ``MessageMiddleware``
run with ``SESSION_ENGINE = "websession.django"``; users live in a SQLite file of this
process's own. Tests choose the provider with ``override_settings(WEBSESSION=...)``.
"""

from __future__ import annotations

import asyncio
import json
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import django  # type: ignore[import-untyped]
import psycopg
import redis
from django.conf import settings  # type: ignore[import-untyped]
from tests.servers import require_server

__all__ = ["PASSWORD", "STORES", "configure", "create_user", "store", "urlpatterns"]

#: The stores every scenario runs on (the issue's "Redis, SQLite and PostgreSQL at least").
STORES = ("redis", "sqlite", "postgresql")
REDIS = ("127.0.0.1", 6379)
POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/test"

PASSWORD = "correct horse"
#: How long the concurrency views work between reading the session and setting their
#: key, as a handler waiting on a database would: so concurrent requests really overlap.
WORK_SECONDS = 0.05

_lock = threading.Lock()
_ready = False


def configure() -> None:
    """Configure Django for these tests (once) and create the users' tables."""
    global _ready
    with _lock:
        if _ready:
            return
        if not settings.configured:
            scratch = Path(tempfile.mkdtemp(prefix="websession-django-"))
            settings.configure(
                DEBUG=False,
                SECRET_KEY="websession-tests-not-secret",
                ALLOWED_HOSTS=["*"],
                INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes",
                                "django.contrib.messages", "django.contrib.sessions"],
                MIDDLEWARE=["django.contrib.sessions.middleware.SessionMiddleware",
                            "django.contrib.auth.middleware.AuthenticationMiddleware",
                            "django.contrib.messages.middleware.MessageMiddleware"],
                ROOT_URLCONF="tests.django_site",
                DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3",
                                       "NAME": str(scratch / "users.sqlite3")}},
                SESSION_ENGINE="websession.django",
                WEBSESSION={"provider": "memory"},
                MESSAGE_STORAGE="django.contrib.messages.storage.session.SessionStorage",
                PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
                DEFAULT_AUTO_FIELD="django.db.models.AutoField",
                USE_TZ=True,
            )
        django.setup()
        from django.core.management import call_command  # type: ignore[import-untyped]

        call_command("migrate", verbosity=0)
        _ready = True


@contextmanager
def store(kind: str, scratch: Path) -> Iterator[dict[str, Any]]:
    """``settings.WEBSESSION`` for a fresh store of ``kind`` (memory, sqlite, redis or
    postgresql), emptied afterwards. Servers missing: skip, or fail under ``CI=true``."""
    tag = uuid.uuid4().hex[:12]
    if kind == "memory":
        yield {"provider": "memory"}
    elif kind == "sqlite":
        yield {"provider": "sqlite",
               "config": {"providerConfig": {"path": str(scratch / f"{tag}.sqlite3")}}}
    elif kind == "redis":
        require_server("Redis", *REDIS)
        prefix = f"wsdjango:{tag}:"
        yield {"provider": "redis", "config": {"providerConfig": {
            "save_path": f"{REDIS[0]}:{REDIS[1]}", "key_prefix": prefix}}}
        with redis.Redis(*REDIS) as client:
            keys = list(client.scan_iter(match=prefix + "*"))
            if keys:
                client.delete(*keys)
    elif kind == "postgresql":
        require_server("PostgreSQL", "127.0.0.1", 5432)
        table = f"wsdjango_{tag}"
        yield {"provider": "postgresql",
               "config": {"providerConfig": {"dsn": POSTGRES_DSN, "table": table}}}
        with psycopg.connect(POSTGRES_DSN, autocommit=True) as conn:
            conn.execute(f'DROP TABLE IF EXISTS "{table}"')
    else:
        raise ValueError(kind)


def create_user(username: str) -> Any:
    """A user with :data:`PASSWORD` (created if absent)."""
    from django.contrib.auth import get_user_model  # type: ignore[import-untyped]

    model = get_user_model()
    user = model.objects.filter(username=username).first()
    if user is None:
        user = model.objects.create_user(username, password=PASSWORD)
    return user


# -- views ----------------------------------------------------------------------------------


def _json(data: object, status: int = 200) -> Any:
    from django.http import HttpResponse  # type: ignore[import-untyped]

    return HttpResponse(json.dumps(data, default=str), status=status,
                        content_type="application/json")


def _data(request: Any) -> dict[str, Any]:
    return dict(request.session.items())


def show(request: Any) -> Any:
    """Read-only: the session's data and key."""
    return _json({"key": request.session.session_key, "data": _data(request),
                  "user": request.user.get_username()})


def set_value(request: Any, key: str) -> Any:
    """Set ``key`` to the query's ``value`` (default 1)."""
    request.session[key] = request.GET.get("value", "1")
    return _json({"ok": True})


def burst(request: Any, i: int) -> Any:
    """Read the session, work a little, then set this request's own key."""
    request.session.get("start")
    time.sleep(WORK_SECONDS)
    request.session[f"k{i:02d}"] = i
    return _json({"ok": True})


def interrupted(request: Any) -> Any:
    """Read the session, let "another request" log it out, then change it."""
    from websession.django import SessionStore

    request.session.get("a")
    SessionStore(request.session.session_key).flush()
    request.session["b"] = 2
    return _json({"ok": True})


def cycle(request: Any) -> Any:
    """``cycle_key()`` and nothing else."""
    request.session.cycle_key()
    return _json({"key": request.session.session_key})


def expiry(request: Any, seconds: int) -> Any:
    """``set_expiry(seconds)`` and mark the session."""
    request.session["expiring"] = True
    request.session.set_expiry(seconds)
    return _json({"age": request.session.get_expiry_age()})


def login_view(request: Any) -> Any:
    """``django.contrib.auth``'s authenticate and login, from the query string."""
    from django.contrib.auth import authenticate, login

    user = authenticate(request, username=request.GET["username"],
                        password=request.GET.get("password", PASSWORD))
    if user is None:
        return _json({"ok": False}, status=403)
    login(request, user)
    return _json({"ok": True, "key": request.session.session_key})


def logout_view(request: Any) -> Any:
    """``django.contrib.auth``'s logout."""
    from django.contrib.auth import logout

    logout(request)
    return _json({"ok": True})


def change_password(request: Any) -> Any:
    """Change the logged-in user's password; keep this session (``update_session_auth_hash``)
    unless ``?keep=0``."""
    from django.contrib.auth import update_session_auth_hash

    user = request.user
    user.set_password(request.GET["password"])
    user.save()
    if request.GET.get("keep", "1") == "1":
        update_session_auth_hash(request, user)
    return _json({"ok": True})


def add_message(request: Any) -> Any:
    """``messages.info`` (stored in the session: ``SessionStorage``)."""
    from django.contrib import messages  # type: ignore[import-untyped]

    messages.info(request, request.GET.get("text", "hello"))
    return _json({"ok": True})


def read_messages(request: Any) -> Any:
    """The pending messages, consumed."""
    from django.contrib import messages

    return _json([str(m) for m in messages.get_messages(request)])


async def async_view(request: Any) -> Any:
    """Django's async session API: read, set, and optionally cycle the key."""
    session = request.session
    count = int(await session.aget("count", 0)) + 1
    await session.aset("count", count)
    if "cycle" in request.GET:
        await session.acycle_key()
    await asyncio.sleep(0)
    return _json({"count": count, "key": session.session_key})


def _patterns() -> list[Any]:
    from django.urls import path  # type: ignore[import-untyped]

    return [
        path("show", show),
        path("set/<str:key>", set_value),
        path("burst/<int:i>", burst),
        path("expiry/<int:seconds>", expiry),
        path("cycle", cycle),
        path("interrupted", interrupted),
        path("login", login_view),
        path("logout", logout_view),
        path("password", change_password),
        path("messages/add", add_message),
        path("messages/read", read_messages),
        path("async", async_view),
    ]


urlpatterns = _patterns()
