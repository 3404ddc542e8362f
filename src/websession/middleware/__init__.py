"""WSGI and ASGI middleware that give every request its session and save it."""

from .asgi import ASGISessionMiddleware
from .wsgi import WSGISessionMiddleware

__all__ = ["ASGISessionMiddleware", "WSGISessionMiddleware"]
