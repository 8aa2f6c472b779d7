"""Errors that travel: every public exception, built with every context field it takes,
comes back from ``pickle`` and from Celery's JSON result backend (real Celery and kombu code,
no broker) as itself, with every attribute, ``retryable`` and ``retry_after`` included."""

from __future__ import annotations

import inspect
import json
import pickle
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from celery.backends.base import Backend
from error_catalogue import CONTEXT, EXTRA, OPENED, PUBLIC, assert_same, build
from kombu.utils import json as kombu_json

import sark_sync
from sark_sync import GatewayError, RetryPolicy, _exceptions
from sark_sync.resilience import Retrying, mark_sent, mark_unsent
from sark_sync.resilience._retrying import retryable


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    """The result backend of a Celery app that stores results as JSON (Celery's default),
    kept in memory: the encoding is Celery's and kombu's own, no broker is needed."""
    app = Celery("travel", backend="cache+memory://", set_as_current=False)
    app.conf.result_serializer = "json"
    app.conf.accept_content = ["json"]
    yield app.backend
    app.close()


def celery_json(backend: Backend, error: BaseException) -> BaseException:
    """What Celery does to a task's exception with the JSON serializer: prepare it (type,
    module, args), write it as JSON with kombu, read it back, rebuild it."""
    stored = kombu_json.dumps(backend.prepare_exception(error, serializer="json"))
    rebuilt: BaseException = backend.exception_to_python(kombu_json.loads(stored))
    return rebuilt


def test_every_public_exception_is_covered_with_every_argument_it_takes() -> None:
    tree = {value for value in vars(_exceptions).values()
            if isinstance(value, type) and issubclass(value, GatewayError)}
    assert set(PUBLIC) == tree  # every class of the tree is public, so tested here
    for cls in PUBLIC:
        taken = {name for name, parameter in inspect.signature(cls).parameters.items()
                 if parameter.kind is inspect.Parameter.KEYWORD_ONLY}
        given = set(CONTEXT) | set(EXTRA.get(cls, {}))
        assert taken <= given, (cls.__name__, taken - given)


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_rebuilt_from_its_args_alone(cls: type[GatewayError]) -> None:
    error = build(cls)
    assert_same(cls(*error.args), error)


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_pickled(cls: type[GatewayError]) -> None:
    error = build(cls)
    assert_same(pickle.loads(pickle.dumps(error)), error)


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_args_are_plain_json(cls: type[GatewayError]) -> None:
    # Plain json (no kombu encoder): any JSON result backend stores them whole, never the
    # repr Celery falls back to for an argument it cannot encode.
    error = build(cls)
    assert json.loads(json.dumps(error.args)) == list(error.args)


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_through_celerys_json_result_encoding(backend: Backend,
                                              cls: type[GatewayError]) -> None:
    error = build(cls)
    assert_same(celery_json(backend, error), error)


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_through_a_stored_task_failure(backend: Backend, cls: type[GatewayError]) -> None:
    """The whole path of a failed task's result: stored by the backend as JSON, read by an
    ``AsyncResult``, re-raised by ``get()``."""
    error = build(cls)
    task_id = str(uuid.uuid4())
    backend.mark_as_failure(task_id, error)
    result = backend.app.AsyncResult(task_id, backend=backend)
    assert result.state == "FAILURE"
    assert_same(result.result, error)
    with pytest.raises(cls) as raised:
        result.get(timeout=5, propagate=True)
    assert_same(raised.value, error)
    result.forget()


def test_circuit_open_error_and_rpc_error_come_back_as_themselves(backend: Backend) -> None:
    circuit, rpc = build(sark_sync.CircuitOpenError), build(sark_sync.RPCError)
    circuit_copy, rpc_copy = celery_json(backend, circuit), celery_json(backend, rpc)
    assert type(circuit_copy) is sark_sync.CircuitOpenError
    assert (circuit_copy.breaker, circuit_copy.opened_at, circuit_copy.probe_at,
            circuit_copy.failures) == ("http://gw.test/inventory", OPENED,
                                       OPENED + timedelta(seconds=30), 5)
    assert type(rpc_copy) is sark_sync.RPCError
    assert (rpc_copy.code, rpc_copy.rpc_message, rpc_copy.data) == (
        -32602, "invalid params", EXTRA[sark_sync.RPCError]["data"])


def test_the_marks_of_the_retry_rule_travel() -> None:
    """``retryable`` depends on how far the exchange got and on the loop's statuses: both
    travel, so the copy says what the original says."""
    final = mark_sent(sark_sync.ProtocolError("answer for another request"), retryable=False)
    unsent = mark_unsent(sark_sync.ProtocolError("never sent"))
    sent = mark_sent(sark_sync.ProtocolError("cut short"))
    for error, expected in [(final, False), (unsent, True), (sent, True)]:
        for copy in (pickle.loads(pickle.dumps(error)), type(error)(*error.args)):
            assert copy.retryable is error.retryable is expected


def test_the_statuses_of_the_loop_travel() -> None:
    policy = RetryPolicy(attempts=1, statuses=frozenset({500}))
    loop = Retrying(policy, retryable=lambda error: retryable(error, idempotent=True,
                                                              policy=policy))
    error = sark_sync._exceptions.error_for_status(500, "answered 500")

    def attempt() -> None:
        raise error

    with pytest.raises(sark_sync.ServerError):
        loop.call(attempt)
    copies = [pickle.loads(pickle.dumps(error)), type(error)(*json.loads(json.dumps(error.args)))]
    assert [copy.retryable for copy in copies] == [True, True]
    assert sark_sync._exceptions.error_for_status(500, "answered 500").retryable is False


def test_setting_args_replaces_the_message_and_keeps_the_context() -> None:
    # As an event stream does when it adds why it gave up to the last error.
    error = sark_sync.UpstreamError("upstream_error: down", status_code=502, server="s")
    error.args = ("upstream_error: down (gave up after 3 attempts)",)
    assert (error.message, error.status_code, error.server) == (
        "upstream_error: down (gave up after 3 attempts)", 502, "s")
    assert error.args[0] == error.message


def test_a_nested_error_keeps_its_own_context(backend: Backend) -> None:
    copy = celery_json(backend, build(sark_sync.DeadlineExceeded))
    assert isinstance(copy, sark_sync.DeadlineExceeded)
    last = copy.last_error
    assert type(last) is sark_sync.RateLimitError
    assert (last.retry_after, last.attempts, last.retryable) == (7.0, 2, True)


def test_args_are_always_current() -> None:
    error = sark_sync.UpstreamError("upstream_error: down", status_code=502)
    error._with(server="inventory", attempts=2)
    assert error.args == ("upstream_error: down",
                          {"status_code": 502, "server": "inventory", "attempts": 2})
    assert GatewayError("plain").args == ("plain",)


def test_a_state_sets_only_attributes_the_error_has() -> None:
    """A result backend is storage someone else may write: its state can neither add an
    attribute, nor replace the message, nor make sark_sync construct a foreign class."""
    state = {"status_code": 503, "message": "replaced", "__class__": "x", "evil": 1,
             "retry_after": {"__sark__": "error", "type": "os:system", "args": ["echo hi"]}}
    error = sark_sync.ServiceUnavailableError("unavailable", state)
    assert error.message == "unavailable" and error.status_code == 503
    assert "evil" not in vars(error) and type(error) is sark_sync.ServiceUnavailableError
    stand_in: Any = error.retry_after
    assert type(stand_in) is Exception  # a plain stand-in, nothing was run
    assert str(stand_in) == "system: echo hi"


def test_a_state_that_is_not_a_mapping_is_ignored() -> None:
    # Celery stores the repr of an argument it cannot encode: the error is still rebuilt.
    stored: Any = "{'retry_after': <object>}"
    error = sark_sync.RateLimitError("rate_limited", stored)
    assert (error.message, error.retry_after) == ("rate_limited", None)


def test_data_nested_past_any_recursion_limit_still_travels() -> None:
    data: Any = "bottom"
    for _ in range(50_000):
        data = [data]
    error = sark_sync.RPCError("invalid params", code=-32602, data=data)
    copy = type(error)(*json.loads(json.dumps(error.args)))
    depth, inner = 0, copy.data
    while isinstance(inner, list):
        depth, inner = depth + 1, inner[0]
    assert inner == "<nested too deeply>" and 60 <= depth <= 70


def test_a_value_json_cannot_hold_travels_as_its_repr() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return "<Opaque>"

    error = sark_sync.RPCError("invalid params", code=-32602, data={"thing": Opaque()})
    assert type(error)(*error.args).data == {"thing": "<Opaque>"}


@pytest.mark.parametrize("cls", PUBLIC, ids=lambda cls: cls.__name__)
def test_retryable_is_the_retry_rule_for_an_idempotent_call(cls: type[GatewayError]) -> None:
    error = build(cls)
    assert error.retryable is retryable(error, idempotent=True, policy=RetryPolicy())
