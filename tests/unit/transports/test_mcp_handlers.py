"""ClientHandlers (the server's requests answered by the user's handlers) and InputLoop (the
2026-07-28 input_required rounds), over fake channels: no sockets, no processes."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any

import pytest

from sark_sync import ConfigurationError, ProtocolError, RPCError, ValidationError
from sark_sync._mcp_requests import ElicitationRequest, ElicitationResult, RootsRequest
from sark_sync.transports._mcp_handlers import (
    MAX_CONCURRENT,
    ClientHandlers,
    HandlerFailure,
    check_handler_options,
)
from sark_sync.transports._mcp_input import MAX_ROUNDS, InputLoop
from sark_sync.transports._mcp_modern import MODERN_VERSION, ParamHeaders, prepare
from sark_sync.wire import jsonrpc

FORM = {"message": "Name?", "requestedSchema": {"type": "object", "properties": {}}}


class Channel:
    """Records the answers a handler thread sends; ``wait(n)`` for the first n."""

    def __init__(self) -> None:
        self.answers: list[tuple[Any, ...]] = []
        self._changed = threading.Condition()

    def respond(self, request_id: Any, result: Any) -> None:
        self._add(("result", request_id, result))

    def respond_error(self, request_id: Any, code: int, message: str) -> None:
        self._add(("error", request_id, code, message))

    def _add(self, answer: tuple[Any, ...]) -> None:
        with self._changed:
            self.answers.append(answer)
            self._changed.notify_all()

    def wait(self, count: int) -> list[tuple[Any, ...]]:
        with self._changed:
            assert self._changed.wait_for(lambda: len(self.answers) >= count, 10.0), self.answers
            return list(self.answers)


def request(method: str, params: Any = None, request_id: Any = 1) -> jsonrpc.Request:
    return jsonrpc.Request(id=request_id, method=method, params=params)


def test_capabilities_are_those_of_the_handlers_given_at_each_version() -> None:
    assert ClientHandlers("s").capabilities("2025-11-25") == {}
    both = ClientHandlers("s", sampling=lambda r: {}, elicitation=lambda r: {},
                          roots=lambda r: [])
    assert both.capabilities("2025-11-25") == {
        "sampling": {}, "elicitation": {"form": {}}, "roots": {"listChanged": True}}
    assert both.capabilities(MODERN_VERSION)["elicitation"] == {"form": {}}
    assert both.capabilities("2025-06-18")["elicitation"] == {}
    assert ClientHandlers("s", roots=["file:///a"]).capabilities("2025-11-25") == {"roots": {}}


@pytest.mark.parametrize(("options", "message"), [
    ({"sampling": 3}, "sampling must be a callable or None, not int"),
    ({"roots": "file:///a"}, "roots must be a sequence of Root or file:// URIs, or a callable"),
    ({"roots": [5]}, "roots: a root must be a Root, a str or a dict, not int"),
    ({"handler_timeout": -1}, "handler_timeout must be > 0 seconds"),
    ({"handler_timeout": float("nan")}, "handler_timeout must be a finite number"),
])
def test_wrong_options_raise_the_given_error(options: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        ClientHandlers("s", **options)
    with pytest.raises(ValidationError, match=message):
        ClientHandlers("s", error=ValidationError, **options)


def test_check_handler_options_names_the_unknown_ones() -> None:
    assert check_handler_options({"roots": []}, where="f") == {"roots": []}
    with pytest.raises(ValidationError, match=r"f got unexpected option\(s\) a, b; it takes "
                                              "sampling, elicitation, roots, handler_timeout"):
        check_handler_options({"b": 1, "a": 2, "roots": []}, where="f")


def test_dispatch_declines_what_no_handler_serves() -> None:
    handlers, channel = ClientHandlers("s", roots=["file:///a"]), Channel()
    assert not handlers.dispatch(request("sampling/createMessage"), channel)
    assert not handlers.dispatch(request("elicitation/create"), channel)
    assert not handlers.dispatch(request("whatever"), channel)
    assert handlers.dispatch(request("roots/list"), channel)
    assert channel.wait(1) == [("result", 1, {"roots": [{"uri": "file:///a"}]})]
    handlers.close()


def test_a_handler_runs_on_a_named_handler_thread_and_answers_by_the_channel() -> None:
    names: list[str] = []

    def elicit(request: ElicitationRequest) -> ElicitationResult:
        names.append(threading.current_thread().name)
        return ElicitationResult.accept({"n": 1})

    handlers, channel = ClientHandlers("srv", elicitation=elicit), Channel()
    assert handlers.dispatch(request("elicitation/create", FORM, "e1"), channel)
    assert channel.wait(1) == [("result", "e1", {"action": "accept", "content": {"n": 1}})]
    handlers.close()
    assert names == ["sark-sync-mcp-srv-handler"]


def test_beyond_the_concurrency_bound_the_server_is_told_busy() -> None:
    entered, release = threading.Semaphore(0), threading.Event()

    def elicit(request: ElicitationRequest) -> ElicitationResult:
        entered.release()
        release.wait(10.0)
        return ElicitationResult.decline()

    handlers, channel = ClientHandlers("s", elicitation=elicit), Channel()
    try:
        for n in range(MAX_CONCURRENT):
            handlers.dispatch(request("elicitation/create", FORM, n), channel)
        for _ in range(MAX_CONCURRENT):
            assert entered.acquire(timeout=10.0)
        handlers.dispatch(request("elicitation/create", FORM, "extra"), channel)
        assert channel.wait(1) == [("error", "extra", -32603, f"sark-sync is busy: "
                                    f"{MAX_CONCURRENT} requests are running")]
    finally:
        release.set()
    answers = channel.wait(MAX_CONCURRENT + 1)
    assert sorted(a[1] for a in answers[1:]) == list(range(MAX_CONCURRENT))
    handlers.close()
    assert not [t for t in threading.enumerate() if t.name == "sark-sync-mcp-s-handler"]


def test_answer_bounds_a_handler_by_the_deadline_and_drops_its_late_result() -> None:
    release = threading.Event()
    handlers = ClientHandlers("s", elicitation=lambda r: release.wait(10.0) and {"action":
                                                                                 "cancel"})
    started = time.monotonic()
    with pytest.raises(HandlerFailure, match=r"did not answer within 0\.2s") as failure:
        handlers.answer("elicitation/create", FORM, time.monotonic() + 0.2)
    assert failure.value.code == -32603 and time.monotonic() - started < 5.0
    release.set()
    handlers.close()


def test_answer_maps_failures_to_json_rpc_codes() -> None:
    def boom(request: Any) -> Any:
        raise KeyError("token")

    handlers = ClientHandlers("s", elicitation=boom,
                              sampling=lambda r: {"content": 5, "model": "m"})
    with pytest.raises(HandlerFailure) as failure:
        handlers.answer("elicitation/create", FORM, None)
    assert (failure.value.code, failure.value.message) == (
        -32603, "the elicitation/create handler failed: KeyError: 'token'")
    with pytest.raises(HandlerFailure) as failure:
        handlers.answer("elicitation/create", {"message": 5}, None)
    assert failure.value.code == -32602
    with pytest.raises(HandlerFailure) as failure:
        handlers.answer("sampling/createMessage", {"messages": [], "maxTokens": 1}, None)
    assert failure.value.code == -32603 and "returned an invalid result" in failure.value.message
    with pytest.raises(HandlerFailure) as failure:
        handlers.answer("roots/list", None, None)
    assert failure.value.code == -32601
    handlers.close()


def test_a_handler_error_message_is_cut_short() -> None:
    def boom(request: Any) -> Any:
        raise ValueError("x" * 10_000)

    handlers = ClientHandlers("s", elicitation=boom)
    with pytest.raises(HandlerFailure) as failure:
        handlers.answer("elicitation/create", FORM, None)
    assert len(failure.value.message) < 300
    handlers.close()


def test_roots_from_a_callable_and_notify_rules() -> None:
    seen: list[RootsRequest] = []
    handlers = ClientHandlers("s", roots=lambda r: seen.append(r) or ["file:///x"])
    assert handlers.answer("roots/list", {}, None) == {"roots": [{"uri": "file:///x"}]}
    assert seen == [RootsRequest("s")]
    handlers.check_roots_change()
    with pytest.raises(ValidationError, match="has no roots"):
        ClientHandlers("s").check_roots_change()
    handlers.close()


def test_close_refuses_new_requests() -> None:
    handlers = ClientHandlers("s", elicitation=lambda r: {"action": "decline"})
    handlers.close()
    with pytest.raises(HandlerFailure, match="closing"):
        handlers.answer("elicitation/create", FORM, None)


# -- 2026-07-28: input_required ---------------------------------------------------------------


class Server:
    """A fake channel whose answers are scripted; records the params of each request."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.sent: list[Mapping[str, Any] | None] = []

    def request(self, method: str, params: Mapping[str, Any] | None, timeout: float) -> Any:
        assert method == "tools/call" and timeout > 0
        self.sent.append(params)
        return self.answers.pop(0)


def asks(key: str = "k", state: str | None = "st1") -> dict[str, Any]:
    result: dict[str, Any] = {"resultType": "input_required", "inputRequests": {
        key: {"method": "elicitation/create", "params": FORM}}}
    if state is not None:
        result["requestState"] = state
    return result


def loop(**options: Any) -> InputLoop:
    return InputLoop(ClientHandlers("srv", **options))


def test_input_required_is_answered_and_the_call_sent_again_with_the_answers() -> None:
    done = {"content": [{"type": "text", "text": "Hello Ada"}], "resultType": "complete"}
    server = Server(asks("k2", "st2"), done)
    inputs = loop(elicitation=lambda r: ElicitationResult.accept({"name": "Ada"}))
    params = {"name": "greet", "arguments": {}}
    result = inputs.resolve(server, "tools/call", params, asks("k1", "st1"),
                            time.monotonic() + 10)
    assert result is done
    assert server.sent == [
        {"name": "greet", "arguments": {},
         "inputResponses": {"k1": {"action": "accept", "content": {"name": "Ada"}}},
         "requestState": "st1"},
        {"name": "greet", "arguments": {},
         "inputResponses": {"k2": {"action": "accept", "content": {"name": "Ada"}}},
         "requestState": "st2"},
    ]


def test_a_complete_result_passes_untouched() -> None:
    assert loop().resolve(Server(), "tools/call", None, {"content": []}, 0.0) == {"content": []}


def test_a_server_asking_forever_ends_after_max_rounds() -> None:
    server = Server(*[asks() for _ in range(MAX_ROUNDS)])
    with pytest.raises(ProtocolError, match=f"'srv' asked for input more than {MAX_ROUNDS} "
                                            "times in one tools/call"):
        loop(elicitation=lambda r: ElicitationResult.decline()).resolve(
            server, "tools/call", {}, asks(), time.monotonic() + 10)
    assert len(server.sent) == MAX_ROUNDS


def test_a_request_without_a_handler_fails_the_call_with_method_not_found() -> None:
    with pytest.raises(RPCError, match="could not answer the elicitation/create that 'srv' "
                                       "asked for") as failure:
        loop().resolve(Server(), "tools/call", {}, asks(), time.monotonic() + 10)
    assert failure.value.code == -32601


@pytest.mark.parametrize("result", [
    {"resultType": "input_required"},
    {"resultType": "input_required", "inputRequests": []},
    {"resultType": "input_required", "inputRequests": {"k": {"params": {}}}},
    {"resultType": "input_required", "requestState": 5},
])
def test_a_malformed_input_required_result_is_a_protocol_error(result: Any) -> None:
    with pytest.raises(ProtocolError, match="malformed input_required result"):
        loop().resolve(Server(), "tools/call", {}, result, time.monotonic() + 10)


def test_state_alone_is_echoed_without_responses() -> None:
    server = Server({"content": []})
    loop().resolve(server, "tools/call", {"name": "t"},
                   {"resultType": "input_required", "requestState": "s"}, time.monotonic() + 5)
    assert server.sent == [{"name": "t", "requestState": "s"}]


def test_the_2026_envelope_declares_the_handlers_capabilities() -> None:
    tools = ParamHeaders()
    tools.inputs = loop(sampling=lambda r: {})
    params, _ = prepare("tools/call", {"name": "t"}, MODERN_VERSION, tools)
    assert params is not None
    assert params["_meta"]["io.modelcontextprotocol/clientCapabilities"] == {"sampling": {}}


def test_a_forked_child_gets_fresh_slots_and_forgets_the_parents_threads() -> None:
    release = threading.Event()
    handlers = ClientHandlers("s", elicitation=lambda r: release.wait(10.0) and {"action":
                                                                                 "cancel"})
    for _ in range(MAX_CONCURRENT):  # every slot held, as by parent threads at fork time
        assert handlers._slots.acquire(blocking=False)
    handlers._after_fork_in_child()  # what os.fork runs in the child
    release.set()
    assert handlers.answer("elicitation/create", FORM, None) == {"action": "cancel"}
    handlers.close()


def test_a_request_after_close_is_answered_an_error_at_once() -> None:
    handlers, channel = ClientHandlers("s", roots=lambda r: []), Channel()
    handlers.close()
    assert handlers.dispatch(request("roots/list", None, 7), channel)
    assert channel.answers == [("error", 7, -32603, "the client session is closing")]


@pytest.mark.parametrize(("message", "sent"), [
    ("login failed: password=hunter2 user=ada", "login failed: password=[secure] user=ada"),
    ("Authorization: Bearer abc.def", "Authorization: [secure]"),
    ("GET https://bob:pw@host/x failed", "GET https://[secure]@host/x failed"),
    ('{"api_key": "k1", "n": 2}', '{"api_key": "[secure]", "n": 2}'),
    ("no secret here: a=b", "no secret here: a=b"),
])
def test_what_looks_like_a_credential_never_reaches_the_server(message: str, sent: str) -> None:
    def boom(request: Any) -> Any:
        raise RuntimeError(message)

    handlers = ClientHandlers("s", elicitation=boom)
    with pytest.raises(HandlerFailure) as failure:
        handlers.answer("elicitation/create", FORM, None)
    assert failure.value.message == f"the elicitation/create handler failed: RuntimeError: {sent}"
    handlers.close()
