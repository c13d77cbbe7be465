"""Choose a store by URL: a registry of schemes, like ``limits.storage_from_string``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from ..errors import ConfigurationError
from .base import BaseStore
from .memory import MemoryStore
from .redis import RedisStore
from .sqlite import SQLiteStore

__all__ = [
    "build_from_url",
    "known_schemes",
    "register_in",
    "register_store",
    "store_from_url",
]

_T = TypeVar("_T")

StoreFactory = Callable[..., BaseStore]

_SCHEMES: dict[str, StoreFactory] = {
    "memory": MemoryStore,
    "sqlite": SQLiteStore,
    "redis": RedisStore,
    "rediss": RedisStore,
}


def known_schemes() -> list[str]:
    """The URL schemes :func:`store_from_url` understands, sorted."""
    return sorted(_SCHEMES)


def register_store(scheme: str, cls: StoreFactory) -> None:
    """Make ``store_from_url("<scheme>://...")`` build ``cls(url, **options)``.

    Registering a scheme again replaces the previous class.

    Raises:
        ConfigurationError: the scheme is not a valid URL scheme or ``cls`` is not callable.
    """
    register_in(_SCHEMES, scheme, cls, register="register_store")


def register_in(
    schemes: dict[str, Callable[..., _T]],
    scheme: str,
    factory: Callable[..., _T],
    *,
    register: str,
) -> None:
    """``schemes[scheme] = factory`` after checking both: the URL registries of budget
    stores and cache stores share this.

    Raises:
        ConfigurationError: the scheme is not a valid URL scheme or ``factory`` is not callable.
    """
    valid = (
        isinstance(scheme, str)
        and scheme.isascii()
        and scheme[:1].isalpha()
        and all(ch.isalnum() or ch in "+-." for ch in scheme)
    )
    if not valid:
        raise ConfigurationError(f"a store scheme is letters, digits, '+-.', got {scheme!r}")
    if not callable(factory):
        raise ConfigurationError(f"{register} needs a class or factory, got {factory!r}")
    schemes[scheme.lower()] = factory


def store_from_url(url: str, **options: Any) -> BaseStore:
    """Build the store a URL names: ``memory://``, ``sqlite:///path.db``, ``redis://...``.

    Args:
        url: the store URL; its scheme picks the store class.
        **options: keyword arguments of that class (``clock``, ``prefix``, ...).

    Raises:
        ConfigurationError: unknown scheme, malformed URL or unknown option.
    """
    return build_from_url(
        url,
        _SCHEMES,
        options,
        what="store",
        examples="'memory://', 'sqlite:///spend.db' or 'redis://127.0.0.1:6379/0'",
        register="register_store",
    )


def build_from_url(
    url: str,
    schemes: dict[str, Callable[..., _T]],
    options: dict[str, Any],
    *,
    what: str,
    examples: str,
    register: str,
) -> _T:
    """``schemes[<url's scheme>](url, **options)``: the URL registries of budget stores and
    cache stores share this.

    Raises:
        ConfigurationError: a malformed URL, an unknown scheme or an option the factory
            does not take.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigurationError(f"a {what} URL looks like {examples}, got {url!r}")
    scheme = url.partition("://")[0].lower()
    factory = schemes.get(scheme)
    if factory is None:
        raise ConfigurationError(
            f"unknown {what} scheme {scheme!r} in {url!r}; known schemes: "
            f"{', '.join(sorted(schemes))} (add one with {register})"
        )
    _check_options(factory, options)
    return factory(url, **options)


def _check_options(factory: Callable[..., Any], options: dict[str, Any]) -> None:
    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # builtins and some callables have no signature
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    accepted = {name for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    unknown = sorted(set(options) - accepted)
    if unknown:
        name = getattr(factory, "__name__", repr(factory))
        raise ConfigurationError(
            f"{name} does not take {', '.join(unknown)}; its options are "
            f"{', '.join(sorted(accepted)) or 'none'}"
        )
