"""The curated public surface of sark_sync: ``__all__``, the exception tree, no shadowing."""

from __future__ import annotations

import builtins
import concurrent.futures
import inspect
import re
import types

import pytest

import sark_sync
from sark_sync import _exceptions


def _public_names() -> set[str]:
    return {
        name
        for name, value in vars(sark_sync).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    } | {"__version__"}


def test_all_is_sorted() -> None:
    assert sark_sync.__all__ == sorted(sark_sync.__all__)


def test_all_has_no_duplicates() -> None:
    assert len(sark_sync.__all__) == len(set(sark_sync.__all__))


def test_all_equals_the_public_names_of_the_package() -> None:
    # Names defined in sark_sync/__init__.py without a leading "_" (modules excepted) are
    # public whether or not they are listed; `from __future__ import annotations` binds one.
    assert set(sark_sync.__all__) == _public_names()


@pytest.mark.parametrize("name", sorted(set(sark_sync.__all__) - {"__version__"}))
def test_every_exported_name_is_a_sark_sync_class_or_function_under_its_own_name(
    name: str,
) -> None:
    value = getattr(sark_sync, name)
    assert inspect.isclass(value) or inspect.isfunction(value), type(value)
    assert value.__name__ == name  # no alias: the name a user imports is the one in tracebacks
    assert value.__module__.startswith("sark_sync.")


def test_version_is_a_dotted_string() -> None:
    assert re.fullmatch(r"\d+\.\d+\.\d+([.-]?\w+)?", sark_sync.__version__)


def test_no_exported_name_shadows_a_builtin() -> None:
    assert set(sark_sync.__all__) & set(dir(builtins)) == set()


# (class, what it must subclass besides itself), from the tree in _exceptions.__doc__.
EXCEPTION_TREE = [
    (sark_sync.GatewayError, (Exception,)),
    (sark_sync.ConfigurationError, (sark_sync.GatewayError, ValueError)),
    (sark_sync.ValidationError, (sark_sync.ConfigurationError, ValueError)),
    (sark_sync.ClientClosedError, (sark_sync.GatewayError, RuntimeError)),
    (sark_sync.TransportNotAvailableError, (sark_sync.GatewayError,)),
    (sark_sync.TransportError, (sark_sync.GatewayError,)),
    (sark_sync.ConnectionFailed, (sark_sync.TransportError, ConnectionError)),
    (sark_sync.TransportTimeout, (sark_sync.TransportError, TimeoutError)),
    (sark_sync.ProtocolError, (sark_sync.TransportError,)),
    (sark_sync.ProcessStartError, (sark_sync.TransportError, OSError)),
    (sark_sync.ProcessExitedError, (sark_sync.TransportError,)),
    (sark_sync.SessionExpiredError, (sark_sync.TransportError,)),
    (sark_sync.RPCError, (sark_sync.GatewayError,)),
    (sark_sync.CapabilityNotSupported, (sark_sync.GatewayError,)),
    (sark_sync.CallCancelled, (sark_sync.GatewayError, concurrent.futures.CancelledError)),
    (sark_sync.DeadlineExceeded, (sark_sync.GatewayError, TimeoutError)),
    (sark_sync.CircuitOpenError, (sark_sync.GatewayError,)),
    (sark_sync.AuthorizationDenied, (sark_sync.GatewayError, PermissionError)),
    (sark_sync.AuthorizationUnavailable, (sark_sync.GatewayError,)),
    (sark_sync.ToolExecutionError, (sark_sync.GatewayError,)),
    (sark_sync.APIError, (sark_sync.GatewayError,)),
    (sark_sync.BadRequestError, (sark_sync.APIError,)),
    (sark_sync.AuthenticationError, (sark_sync.APIError,)),
    (sark_sync.NotFoundError, (sark_sync.APIError, LookupError)),
    (sark_sync.IdempotencyConflictError, (sark_sync.APIError,)),
    (sark_sync.PayloadTooLargeError, (sark_sync.APIError,)),
    (sark_sync.RateLimitError, (sark_sync.APIError,)),
    (sark_sync.ServerError, (sark_sync.APIError,)),
    (sark_sync.UpstreamError, (sark_sync.ServerError,)),
    (sark_sync.ServiceUnavailableError, (sark_sync.ServerError,)),
    (sark_sync.UpstreamTimeoutError, (sark_sync.ServerError,)),
]


@pytest.mark.parametrize(
    ("cls", "supers"), EXCEPTION_TREE, ids=[cls.__name__ for cls, _ in EXCEPTION_TREE]
)
def test_exception_subclasses_its_parents_and_builtin(cls: type, supers: tuple[type, ...]) -> None:
    assert all(issubclass(cls, parent) for parent in supers), cls.__mro__


def test_exception_table_covers_every_exported_exception() -> None:
    exported = {
        value for value in (getattr(sark_sync, n) for n in sark_sync.__all__)
        if isinstance(value, type) and issubclass(value, BaseException)
    }
    assert exported == {cls for cls, _ in EXCEPTION_TREE}


@pytest.mark.parametrize(
    ("cls", "not_a"),
    [
        (sark_sync.AuthorizationDenied, sark_sync.APIError),
        (sark_sync.AuthorizationUnavailable, sark_sync.AuthorizationDenied),
        (sark_sync.AuthorizationUnavailable, PermissionError),
        (sark_sync.DeadlineExceeded, sark_sync.TransportError),
        (sark_sync.CircuitOpenError, sark_sync.TransportError),
        (sark_sync.ToolExecutionError, sark_sync.APIError),
        (sark_sync.RateLimitError, sark_sync.ServerError),
    ],
)
def test_exception_is_not_caught_by_an_unrelated_branch(cls: type, not_a: type) -> None:
    assert not issubclass(cls, not_a)


def _docstring_tree() -> dict[str, tuple[str, ...]]:
    """class name -> (parent name, builtin name?) as drawn in the module docstring."""
    lines = _exceptions.__doc__.split("::", 1)[1].split("\n\n", 2)[1].splitlines()
    parsed: dict[str, tuple[str, ...]] = {}
    stack: list[str] = []
    root_column = len(lines[0]) - len(lines[0].lstrip())
    for line in lines:
        match = re.search(r"(\w+)(?: \((\w+)\))?", line)
        assert match is not None, line
        depth = (match.start(1) - root_column) // 4
        del stack[depth:]
        bases = tuple(stack[-1:]) + ((match.group(2),) if match.group(2) else ())
        parsed[match.group(1)] = bases or ("Exception",)
        stack.append(match.group(1))
    return parsed


def test_exception_bases_are_exactly_those_drawn_in_the_docstring() -> None:
    drawn = _docstring_tree()
    actual = {
        cls.__name__: tuple(base.__name__ for base in cls.__bases__) for cls, _ in EXCEPTION_TREE
    }
    assert actual == drawn
