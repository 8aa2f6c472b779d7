"""What the LocalGateway saw: every request, in arrival order, for tests to assert on.

A :class:`RecordedRequest` is an immutable value; :class:`RequestLog` appends under a lock and
hands out snapshots, so a test can read ``gw.requests`` while clients are still running.
Header values are kept exactly as received (a test may check that a client sent its API key),
but the repr of a recording shows credentials as ``[secure]`` so they never reach a log or a
pytest failure message by accident.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

__all__ = ["RecordedHeaders", "RecordedRequest", "RequestLog"]

#: Header names whose values are credentials (lower case).
SECRET_HEADERS = frozenset({"authorization", "x-api-key", "proxy-authorization", "cookie"})


class RecordedHeaders(Mapping[str, str]):
    """A read-only, case-insensitive view of request headers with their original names.

    Iteration yields the names as the client spelt them; a header sent several times maps to
    its values joined by ``", "``. :meth:`items_raw` gives every (name, value) pair in order.
    """

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        self._pairs = tuple(pairs)
        merged: dict[str, tuple[str, str]] = {}
        for name, value in self._pairs:
            key = name.lower()
            if key in merged:
                merged[key] = (merged[key][0], f"{merged[key][1]}, {value}")
            else:
                merged[key] = (name, value)
        self._merged = merged

    def __getitem__(self, name: str) -> str:
        return self._merged[name.lower()][1]

    def __iter__(self) -> Iterator[str]:
        return (original for original, _ in self._merged.values())

    def __len__(self) -> int:
        return len(self._merged)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._merged

    def items_raw(self) -> tuple[tuple[str, str], ...]:
        """Every header line as received, in order."""
        return self._pairs

    def __repr__(self) -> str:
        shown = {
            original: "[secure]" if key in SECRET_HEADERS else value
            for key, (original, value) in self._merged.items()
        }
        return f"RecordedHeaders({shown!r})"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the gateway received it.

    ``path`` excludes the query string and is not percent-decoded; ``query`` maps each
    parameter to its last value; ``body`` holds the bytes read (empty when the body was
    refused as too large); ``received_at`` is a ``time.monotonic()`` reading.
    """

    method: str
    path: str
    query: dict[str, str]
    headers: RecordedHeaders
    body: bytes
    received_at: float
    request_id: str = field(default="")

    def json(self) -> object:
        """Decode the body as JSON (raises ``ValueError`` when it is not)."""
        return json.loads(self.body)


class RequestLog:
    """A thread-safe, append-only list of :class:`RecordedRequest`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[RecordedRequest] = []

    def append(self, request: RecordedRequest) -> None:
        with self._lock:
            self._items.append(request)

    def snapshot(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
