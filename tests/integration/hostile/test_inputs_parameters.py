"""Call parameters JSON cannot carry fail before anything is sent (issue 11, item 4).

Against a real LocalGateway: 100,000 nested lists or dicts are a ValidationError, not a
RecursionError; a circular reference says so; with an authorizer the authorizer is not even
asked; and parameters nested within reach go through end to end.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
from support import paths

import sark_sync
from sark_sync.testing import LocalGateway

pytestmark = pytest.mark.timeout(30)

Make = Callable[..., sark_sync.GatewayClient]

TOO_DEEP = ("parameters are nested too deeply to encode as JSON (deeper than the interpreter's "
            "recursion limit): RecursionError")


def _nested(depth: int, make: Callable[[Any], Any]) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = make(value)
    return value


@pytest.mark.parametrize("make", [lambda v: [v], lambda v: {"k": v}], ids=["lists", "dicts"])
def test_parameters_nested_100000_deep_are_a_validation_error_and_nothing_is_sent(
    gateway: LocalGateway, make_client: Make, make: Callable[[Any], Any]
) -> None:
    client = make_client()
    deep = {"deep": _nested(100_000, make)}
    started = time.monotonic()
    for call in (lambda: client.invoke_tool("demo", "echo", deep),
                 lambda: client.submit("demo", "echo", deep),
                 lambda: client.invoke_many([sark_sync.ToolCall("demo", "echo", deep)])):
        with pytest.raises(sark_sync.ValidationError) as caught:
            call()
        assert str(caught.value) == TOO_DEEP
    assert time.monotonic() - started < 5
    assert gateway.requests == []


def test_circular_parameters_are_a_circular_reference_and_nothing_is_sent(
    gateway: LocalGateway, make_client: Make
) -> None:
    client = make_client()
    loop: dict[str, Any] = {}
    loop["again"] = [loop]
    with pytest.raises(sark_sync.ValidationError) as caught:
        client.invoke_tool("demo", "echo", {"loop": loop})
    assert str(caught.value) == "parameters contain a circular reference: ValueError"
    assert gateway.requests == []


def test_with_an_authorizer_too_deep_parameters_fail_before_the_authorizer_is_asked(
    gateway: LocalGateway, make_client: Make
) -> None:
    asked: list[object] = []

    def authorizer(request: object) -> dict[str, bool]:
        asked.append(request)
        return {"allow": True}

    client = make_client(authorizer=authorizer)
    with pytest.raises(sark_sync.ValidationError) as caught:
        client.invoke_tool("demo", "echo", {"deep": _nested(100_000, lambda v: [v])})
    assert str(caught.value) == TOO_DEEP
    assert (asked, gateway.requests) == ([], [])


def test_parameters_nested_within_reach_go_through_end_to_end(
    gateway: LocalGateway, make_client: Make
) -> None:
    nested = _nested(100, lambda v: {"k": [v]})
    result = make_client().invoke_tool("demo", "echo", {"n": nested})
    assert result.structured == {"n": nested}
    assert paths(gateway) == ["POST /api/v1/invoke"]
