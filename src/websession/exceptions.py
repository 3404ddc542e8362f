"""The exceptions websession raises; every one derives from :class:`WebSessionError`."""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "MissingDependencyError",
    "SerializationError",
    "SessionConflictError",
    "SessionModeError",
    "SessionTooLarge",
    "StoreUnavailableError",
    "UnknownProviderError",
    "UnsupportedOperationError",
    "WebSessionError",
]


class WebSessionError(Exception):
    """Base class of every error websession raises on purpose."""


class ConfigurationError(WebSessionError, ValueError):
    """A manager or provider configuration is malformed; the message names the key."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class UnknownProviderError(ConfigurationError, LookupError):
    """No provider is registered under the requested name."""

    def __init__(self, name: str, known: list[str]) -> None:
        listed = ", ".join(sorted(known)) or "none"
        super().__init__(
            f"unknown session provider {name!r} (registered: {listed}); "
            "register it with websession.register() or the 'websession.providers' entry point",
            key="provider",
        )
        self.name = name


class MissingDependencyError(WebSessionError, ImportError):
    """A provider's driver or an adapter's framework is not installed; the message names
    the extra to install. ``kind`` says what needs it ("session provider", "adapter")."""

    def __init__(self, provider: str, extra: str, module: str,
                 kind: str = "session provider") -> None:
        super().__init__(
            f"the {provider!r} {kind} needs {module!r}: pip install 'websession[{extra}]'"
        )
        self.extra = extra


class StoreUnavailableError(WebSessionError):
    """The session store cannot be reached; an application can answer 503.

    The driver's own exception is chained as ``__cause__``. Nothing was half-written:
    every write a provider does is a single atomic operation.
    """


class SessionConflictError(WebSessionError):
    """A save kept losing compare-and-set races and gave up after its retry budget."""


class SerializationError(WebSessionError, TypeError):
    """A session value cannot be encoded by the configured codec."""


class SessionTooLarge(WebSessionError):
    """A session kept in the cookie would exceed what browsers store (4093 bytes).

    Browsers drop such cookies silently, so this is raised instead; ``size`` is the
    length of the ``Set-Cookie`` value that would have been sent.
    """

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(
            f"the session cookie would be {size} bytes with its attributes; browsers keep "
            f"at most {limit}: store less in the session, or use a server-side provider"
        )
        self.size = size
        self.limit = limit


class SessionModeError(WebSessionError, TypeError):
    """A blocking call was made where only its async twin may run (or the reverse)."""


class UnsupportedOperationError(WebSessionError, NotImplementedError):
    """The provider cannot do what was asked (e.g. list sessions kept in cookies)."""
