"""The options of a GatewayClient, checked once when it is made.

Apart from the client so that the class reads as its operations. Every refusal is a
:class:`ConfigurationError` naming the argument and the rule, never quoting a credential nor a
URL (which may carry one). Every limit is a named constant of :mod:`sark_sync._config`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .._config import (
    MAX_RESPONSE_BYTES,
    MAX_SECONDS,
    MAX_WORKERS,
    BreakerPolicy,
    RestartPolicy,
    RetryPolicy,
    Timeouts,
    check_count,
    resolve_api_key,
    resolve_base_url,
)
from .._exceptions import ConfigurationError
from .._redact import Secret
from .._useragent import user_agent
from .._validation import describe
from ..transports import GatewayTransport, HTTPTransport

__all__ = ["ENV_TIMEOUT", "TRANSPORT_MODES", "Options", "env_timeout"]

#: Transport modes: "auto" picks per operation; the others allow only that transport.
TRANSPORT_MODES = ("auto", "http", "sse", "stdio")
#: The name of a gateway reached through a transport given by the caller, without a URL.
TRANSPORT_BASE_URL = "transport://gateway"
#: The default ``timeout`` (seconds for a whole call) when none is given; unset or empty: 30.
ENV_TIMEOUT = "SARK_TIMEOUT"


@dataclass(frozen=True)
class Options:
    """A client's checked settings."""

    base_url: str
    api_key: Secret | None
    timeouts: Timeouts
    retry: RetryPolicy
    breaker: BreakerPolicy
    restart: RestartPolicy
    max_workers: int
    transport_mode: str
    idempotency_keys: bool
    verify: bool | str | None
    max_response_bytes: int

    def http_transport(self) -> GatewayTransport:
        """The default gateway transport: HTTP to ``base_url`` (one per process)."""
        return HTTPTransport(
            self.base_url, api_key=self.api_key, timeouts=self.timeouts,
            max_workers=self.max_workers, user_agent=user_agent(), verify=self.verify,
            max_response_bytes=self.max_response_bytes)

    @classmethod
    def check(
        cls, base_url: str | None, *, api_key: str | None, timeout: float | Timeouts | None,
        retry: RetryPolicy | None, breaker: BreakerPolicy | None, restart: RestartPolicy | None,
        max_workers: int, transport_mode: str, idempotency_keys: bool,
        verify: bool | str | None, max_response_bytes: int,
        transport: GatewayTransport | None,
    ) -> Options:
        if transport is not None and not callable(getattr(transport, "send", None)):
            raise ConfigurationError("transport must have a send(request, *, deadline, "
                                     f"accept_statuses) method: {type(transport).__name__}")
        if transport is not None and base_url is None:
            # Only a name (breakers, errors, audit): the caller's transport does the talking.
            url = getattr(transport, "base_url", None)
            base_url = url if isinstance(url, str) and url else TRANSPORT_BASE_URL
        else:
            base_url = resolve_base_url(base_url)
        timeouts = Timeouts.coerce(timeout if timeout is not None else env_timeout())
        key = resolve_api_key(api_key)
        retry = retry if retry is not None else RetryPolicy()
        breaker = breaker if breaker is not None else BreakerPolicy()
        if not isinstance(retry, RetryPolicy) or not isinstance(breaker, BreakerPolicy):
            raise ConfigurationError("retry and breaker must be RetryPolicy and BreakerPolicy")
        if not isinstance(transport_mode, str) or transport_mode not in TRANSPORT_MODES:
            shown = repr(transport_mode[:32]) if isinstance(transport_mode, str) else \
                describe(transport_mode)
            raise ConfigurationError(
                f"transport_mode must be one of {', '.join(TRANSPORT_MODES)}: {shown}")
        if not isinstance(idempotency_keys, bool):
            raise ConfigurationError(
                f"idempotency_keys must be a bool, not {type(idempotency_keys).__name__}")
        return cls(
            base_url=base_url, api_key=Secret(key) if key is not None else None,
            timeouts=timeouts, retry=retry, breaker=breaker,
            restart=restart if restart is not None else RestartPolicy(),
            max_workers=check_count("max_workers", max_workers, 1, MAX_WORKERS),
            transport_mode=str.__str__(transport_mode), idempotency_keys=idempotency_keys,
            verify=_check_verify(verify),
            max_response_bytes=check_count("max_response_bytes", max_response_bytes, 1,
                                           MAX_RESPONSE_BYTES))


def env_timeout() -> float | None:
    """Seconds from ``SARK_TIMEOUT`` (None when unset or empty), checked as ``timeout=`` is:
    a :class:`ConfigurationError` names the variable and the rule (the value is a number, but
    a variable set by mistake to something else is not repeated)."""
    text = os.environ.get(ENV_TIMEOUT, "").strip()
    if not text:
        return None
    try:
        seconds = float(text)
        Timeouts.coerce(seconds)
    except (ValueError, ConfigurationError):
        raise ConfigurationError(
            f"{ENV_TIMEOUT} must be a number of seconds > 0 and at most {MAX_SECONDS:g} "
            f"({MAX_SECONDS / 3600:g} h)") from None
    return seconds


def _check_verify(verify: object) -> bool | str | None:
    """``verify`` as given if it is None, a bool, or the path of an existing CA bundle file
    or directory (requests would otherwise fail at the first call, with an OSError)."""
    if verify is None or isinstance(verify, bool):
        return verify
    if isinstance(verify, os.PathLike):
        verify = os.fspath(verify)
    if not isinstance(verify, str):
        raise ConfigurationError(
            f"verify must be a bool or a CA bundle path, not {type(verify).__name__}")
    path = str.__str__(verify)
    if not path or "\x00" in path or not os.path.exists(path):
        raise ConfigurationError("verify is not the path of an existing CA bundle file or "
                                 "directory")
    return path
