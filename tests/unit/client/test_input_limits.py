"""Every public argument is checked where it is given, against a named limit, and a refused
credential or URL is never quoted (issue 11: items 3, 4, 11).

Construction raises :class:`ConfigurationError`; a call's argument :class:`ValidationError`,
before any request (the fake gateway's MockTransport records none). Messages are pinned whole
where the rule is the point, so a looser check or a leakier message fails here.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Iterator, Mapping
from typing import Any, Callable

import pytest
from mock_gateway import INVOKE, FakeGateway

from sark_sync import (
    BreakerPolicy,
    ConfigurationError,
    GatewayClient,
    RetryPolicy,
    Timeouts,
    ToolCall,
    ValidationError,
)
from sark_sync._config import (
    MAX_ATTEMPTS,
    MAX_BACKOFF_MULTIPLIER,
    MAX_FAILURE_THRESHOLD,
    MAX_RESPONSE_BYTES,
    MAX_SECONDS,
    MAX_URL_LENGTH,
    MAX_WORKERS,
    resolve_api_key,
    resolve_base_url,
)
from sark_sync._validation import (
    HEADER_RULE,
    MAX_HEADER_VALUE_LENGTH,
    MAX_PAGE,
    header_value_problem,
    validate_header_value,
    validate_name,
)

URL = "http://gateway.test"
SECRET = "Sup3rS3cretKey"


@pytest.fixture
def gateway() -> FakeGateway:
    return FakeGateway()


@pytest.fixture
def client(gateway: FakeGateway) -> Iterator[GatewayClient]:
    with gateway.client() as made:
        yield made


def _nothing_sent(gateway: FakeGateway) -> None:
    assert gateway.requests == []


def _shown(error: BaseException) -> str:
    """Everything a user could see of an error: str, repr and the formatted traceback."""
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    return str(error) + repr(error) + "".join(lines)


# -- item 3: header values ---------------------------------------------------------------------

BAD_KEYS = [
    (" " + SECRET, "starts with whitespace"),
    (SECRET + " ", "ends with whitespace"),
    (SECRET + "\n", "ends with whitespace"),
    ("\t" + SECRET, "starts with whitespace"),
    (SECRET[:4] + "\u20ac" + SECRET[4:], "has a non-ASCII character at index 4"),
    (SECRET[:4] + "\u00e9" + SECRET[4:], "has a non-ASCII character at index 4"),
    (SECRET[:5] + "\x00" + SECRET[5:], "has a control character at index 5"),
    (SECRET[:5] + "\x7f" + SECRET[5:], "has a control character at index 5"),
    (SECRET[:5] + "\r\nX-Evil: 1", "has a control character at index 5"),
    (SECRET[:5] + "\tx", "has a control character at index 5"),
    (SECRET * 600, f"is longer than {MAX_HEADER_VALUE_LENGTH} characters"),
]


@pytest.mark.parametrize(("key", "problem"), BAD_KEYS, ids=[p for _, p in BAD_KEYS])
def test_a_bad_api_key_is_refused_at_construction_saying_what_is_wrong_never_the_key(
    key: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        GatewayClient(URL, api_key=key)
    assert type(caught.value) is ConfigurationError
    assert caught.value.message == f"api_key {problem}; {HEADER_RULE}"
    assert SECRET[:4] not in _shown(caught.value)
    assert caught.value.__cause__ is None and caught.value.__context__ is None


ENV_KEYS = [(key, problem) for key, problem in BAD_KEYS if "\x00" not in key]  # no NUL in environ


@pytest.mark.parametrize(("key", "problem"), ENV_KEYS, ids=[p for _, p in ENV_KEYS])
def test_a_bad_sark_api_key_variable_is_named_as_the_source(
    monkeypatch: pytest.MonkeyPatch, key: str, problem: str
) -> None:
    monkeypatch.setenv("SARK_API_KEY", key)
    with pytest.raises(ConfigurationError) as caught:
        resolve_api_key(None)
    assert caught.value.message == (
        f"the environment variable SARK_API_KEY {problem}; {HEADER_RULE}")
    assert SECRET[:4] not in _shown(caught.value)


def test_a_key_with_inner_spaces_and_the_longest_allowed_length_is_accepted() -> None:
    assert resolve_api_key("a key with spaces") == "a key with spaces"
    longest = "k" * MAX_HEADER_VALUE_LENGTH
    assert resolve_api_key(longest) == longest


def test_header_value_problem_names_the_first_bad_position_only() -> None:
    assert header_value_problem("ab\x01c\u20ac") == "has a control character at index 2"
    assert header_value_problem("visible ASCII ~!") is None
    assert header_value_problem("") == "is empty"


@pytest.mark.parametrize("argument", ["user_token", "idempotency_key"])
@pytest.mark.parametrize(("value", "problem"), BAD_KEYS, ids=[p for _, p in BAD_KEYS])
def test_a_bad_header_argument_of_a_call_is_refused_before_any_request(
    gateway: FakeGateway, client: GatewayClient, argument: str, value: str, problem: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        client.invoke_tool("demo", "echo", {}, **{argument: value})  # type: ignore[arg-type]
    assert caught.value.message == f"{argument} {problem}; {HEADER_RULE}"
    assert SECRET[:4] not in _shown(caught.value)
    _nothing_sent(gateway)


def test_a_bad_user_token_is_refused_before_the_authorizer_reads_it(gateway: FakeGateway) -> None:
    asked: list[object] = []
    with gateway.client(authorizer=lambda request: asked.append(1)) as client:
        with pytest.raises(ValidationError, match=r"^user_token has a non-ASCII character"):
            client.invoke_tool("demo", "echo", user_token="eyJ\u00e9." + SECRET)
    assert (gateway.requests, asked) == ([], [])


# -- item 4: parameters JSON cannot carry ---------------------------------------------------------


def _nested(depth: int, make: Callable[[Any], Any]) -> Any:
    value: Any = "leaf"
    for _ in range(depth):
        value = make(value)
    return value


@pytest.mark.parametrize("make", [lambda v: [v], lambda v: {"k": v}], ids=["lists", "dicts"])
def test_parameters_nested_100000_deep_are_a_validation_error(
    gateway: FakeGateway, client: GatewayClient, make: Callable[[Any], Any]
) -> None:
    with pytest.raises(ValidationError) as caught:
        client.invoke_tool("demo", "echo", {"deep": _nested(100_000, make)})
    assert caught.value.message == (
        "parameters are nested too deeply to encode as JSON (deeper than the interpreter's "
        "recursion limit): RecursionError")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    _nothing_sent(gateway)


def test_circular_parameters_are_reported_as_a_circular_reference(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    loop: dict[str, Any] = {"password": SECRET}
    loop["self"] = loop
    as_list: list[Any] = []
    as_list.append(as_list)
    for parameters in ({"a": loop}, {"a": as_list}):
        with pytest.raises(ValidationError) as caught:
            client.invoke_tool("demo", "echo", parameters)
        assert caught.value.message == "parameters contain a circular reference: ValueError"
        assert SECRET not in _shown(caught.value)
    _nothing_sent(gateway)


def test_nan_is_still_reported_as_nan_or_infinity(client: GatewayClient) -> None:
    with pytest.raises(ValidationError, match=r"^parameters contain NaN or infinity: ValueError$"):
        client.invoke_tool("demo", "echo", {"x": math.nan})


# -- item 11: limits on numbers -------------------------------------------------------------------


def test_every_limit_is_the_documented_value() -> None:
    assert (MAX_SECONDS, MAX_ATTEMPTS, MAX_BACKOFF_MULTIPLIER, MAX_FAILURE_THRESHOLD,
            MAX_WORKERS, MAX_RESPONSE_BYTES, MAX_URL_LENGTH, MAX_HEADER_VALUE_LENGTH,
            MAX_PAGE) == (86_400.0, 100, 100.0, 10_000, 1_024, 2**30, 2_048, 8_192, 1_000_000)


def test_a_per_call_timeout_above_24h_is_refused_before_any_request(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    with pytest.raises(ValidationError) as caught:
        client.invoke_tool("demo", "echo", timeout=1e10)
    assert caught.value.message == (
        "timeout must be at most 86400 seconds (24 h), got 10000000000.0")
    _nothing_sent(gateway)


@pytest.mark.parametrize(
    ("value", "message"),
    [(True, "timeout must be a number of seconds, not bool"),
     (math.nan, "timeout must be finite, got nan"),
     (-math.inf, "timeout must be finite, got -inf"),
     (-0.0, "timeout must be > 0, got 0.0"),
     (0, "timeout must be > 0, got 0"),
     (10**5000, "timeout must be at most 86400 seconds (24 h), got an int of 16610 bits"),
     ("5", "timeout must be a number of seconds, not str")],
    ids=["bool", "nan", "-inf", "negative-zero", "zero", "huge-int", "str"],
)
def test_every_per_call_timeout_is_checked_with_a_validation_error(
    gateway: FakeGateway, client: GatewayClient, value: object, message: str
) -> None:
    calls: list[Callable[[], object]] = [
        lambda: client.invoke_tool("demo", "echo", timeout=value),  # type: ignore[arg-type]
        lambda: client.submit("demo", "echo", timeout=value),  # type: ignore[arg-type]
        lambda: client.invoke_many([ToolCall("demo", "echo", timeout=value)]),  # type: ignore[arg-type]
        lambda: client.health(timeout=value),  # type: ignore[arg-type]
        lambda: client.list_servers(timeout=value),  # type: ignore[arg-type]
        lambda: client.iter_servers(timeout=value),  # type: ignore[arg-type]
        lambda: client.list_tools("demo", timeout=value),  # type: ignore[arg-type]
        lambda: client.iter_tools(timeout=value),  # type: ignore[arg-type]
        lambda: client.get_server("demo", timeout=value),  # type: ignore[arg-type]
    ]
    for call in calls:
        with pytest.raises(ValidationError) as caught:
            call()
        assert caught.value.message == message
    _nothing_sent(gateway)


def test_the_longest_timeout_is_accepted_and_a_hair_more_refused() -> None:
    assert Timeouts(deadline=86_400).deadline == 86_400
    with pytest.raises(ConfigurationError, match=r"^Timeouts.read must be at most 86400 seconds"):
        Timeouts(read=86_400.001)


@pytest.mark.parametrize(
    ("build", "message"),
    [(lambda: RetryPolicy(attempts=101),
      "RetryPolicy.attempts (1 disables retries) must be an int from 1 to 100, got 101"),
     (lambda: RetryPolicy(retry_after_max=86_401),
      "RetryPolicy.retry_after_max must be at most 86400 seconds (24 h), got 86401"),
     (lambda: RetryPolicy(backoff_max=1e300),
      "RetryPolicy.backoff_max must be at most 86400 seconds (24 h), got 1e+300"),
     (lambda: RetryPolicy(backoff_multiplier=101),
      "RetryPolicy.backoff_multiplier must be a number from 1 to 100, got 101"),
     (lambda: RetryPolicy(statuses=503),  # type: ignore[arg-type]
      "RetryPolicy.statuses must be a collection of 4xx/5xx status codes (ints)"),
     (lambda: RetryPolicy(statuses=[[503]]),  # type: ignore[arg-type]
      "RetryPolicy.statuses must be a collection of 4xx/5xx status codes (ints)"),
     (lambda: RetryPolicy(jitter="no"),  # type: ignore[arg-type]
      "RetryPolicy.jitter must be a bool, not str"),
     (lambda: BreakerPolicy(failure_threshold=10_001),
      "BreakerPolicy.failure_threshold must be an int from 1 to 10,000, got 10001"),
     (lambda: BreakerPolicy(recovery_timeout=1e10),
      "BreakerPolicy.recovery_timeout must be at most 86400 seconds (24 h), got 10000000000.0"),
     (lambda: BreakerPolicy(enabled=0),  # type: ignore[arg-type]
      "BreakerPolicy.enabled must be a bool, not int"),
     (lambda: GatewayClient(URL, max_workers=5_000_000),
      "max_workers must be an int from 1 to 1,024, got 5000000"),
     (lambda: GatewayClient(URL, max_response_bytes=2**30 + 1),
      "max_response_bytes must be an int from 1 to 1,073,741,824, got 1073741825"),
     (lambda: GatewayClient(URL, idempotency_keys="yes"),  # type: ignore[arg-type]
      "idempotency_keys must be a bool, not str"),
     (lambda: GatewayClient(URL, transport_mode=["http"]),  # type: ignore[arg-type]
      "transport_mode must be one of auto, http, sse, stdio: a list"),
     (lambda: GatewayClient(URL, verify="/nonexistent/ca.pem"),
      "verify is not the path of an existing CA bundle file or directory"),
     (lambda: GatewayClient(URL, verify=1),  # type: ignore[arg-type]
      "verify must be a bool or a CA bundle path, not int")],
    ids=["attempts", "retry_after_max", "backoff_max", "multiplier", "statuses-int",
         "statuses-unhashable", "jitter", "threshold", "recovery", "enabled", "max_workers",
         "max_response_bytes", "idempotency_keys", "transport_mode", "verify-path",
         "verify-int"],
)
def test_construction_refuses_values_above_their_maximum_or_of_the_wrong_type(
    build: Callable[[], object], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        build()
    assert type(caught.value) is ConfigurationError
    assert caught.value.message == message


def test_the_largest_allowed_values_are_accepted() -> None:
    policy = RetryPolicy(attempts=100, backoff_multiplier=100, retry_after_max=86_400)
    assert (policy.attempts, policy.backoff_multiplier) == (100, 100.0)
    client = GatewayClient(URL, max_workers=1_024, max_response_bytes=2**30)
    assert client.max_workers == 1_024
    client.close()


# -- item 11: URLs --------------------------------------------------------------------------------

BAD_URLS = [
    ("http://[::1", "gateway URL cannot be parsed: unbalanced brackets or an invalid IPv6 host"),
    ("http://[zz::1]/", "gateway URL cannot be parsed: unbalanced brackets or an invalid IPv6 "
                        "host"),
    ("http://[127.0.0.1]/", "gateway URL cannot be parsed: unbalanced brackets or an invalid "
                            "IPv6 host"),
    ("http://gw.test:99999", "gateway URL has an invalid port: ports are 1 to 65535"),
    ("http://gw.test:65536", "gateway URL has an invalid port: ports are 1 to 65535"),
    ("http://gw.test:0", "gateway URL has an invalid port: ports are 1 to 65535"),
    ("http://gw.test:8o8o", "gateway URL has an invalid port: ports are 1 to 65535"),
    (f"http://admin:{SECRET}@gw.test", "gateway URL must not carry credentials "
                                       "(user:password@); use api_key="),
    (f"http://{SECRET}@gw.test", "gateway URL must not carry credentials "
                                 "(user:password@); use api_key="),
    ("http://@gw.test", "gateway URL must not carry credentials (user:password@); use api_key="),
    ("ws://gw.test", "gateway URL must be http:// or https:// with a host, got scheme 'ws' and "
                     "host 'gw.test'"),
    (" http://gw.test", "gateway URL has whitespace or a control character at index 0"),
    ("http://gw.test/\n", "gateway URL has whitespace or a control character at index 15"),
    ("http://gw\ttest", "gateway URL has whitespace or a control character at index 9"),
    ("http://gw.test\x00.evil", "gateway URL has whitespace or a control character at index 14"),
    ("http://gw.test\u3000", "gateway URL has whitespace or a control character at index 14"),
    ("http://gw%2e.test", "gateway URL has an invalid host: letters, digits, '.', '-' and '_', "
                          "or an IP address"),
    ("http://gw.test/?", "gateway URL must not have a query or fragment (host 'gw.test')"),
    ("http://gw.test/" + "p" * MAX_URL_LENGTH, "gateway URL is longer than 2048 characters"),
]


@pytest.mark.parametrize(("url", "message"), BAD_URLS, ids=[u[:24] for u, _ in BAD_URLS])
def test_a_bad_gateway_url_is_a_configuration_error_that_never_quotes_it(
    url: str, message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        GatewayClient(url)
    assert type(caught.value) is ConfigurationError
    assert caught.value.message == message
    assert SECRET not in _shown(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None or caught.value.__suppress_context__


@pytest.mark.parametrize(
    "url", ["http://[::1]:8080", "https://gw.test:1/base", "http://127.0.0.1:65535",
            "http://b\u00fccher.example", "http://gw.test.", "http://my_host:80/"])
def test_good_gateway_urls_are_accepted(url: str) -> None:
    assert resolve_base_url(url) == url.rstrip("/")


# -- item 11: names -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [lambda c: c.invoke_tool(["x"], "echo"), lambda c: c.invoke_tool("demo", {"t"}),
     lambda c: c.submit(["x"], "echo"), lambda c: c.breaker_for(["x"]),
     lambda c: c.invoke_many([ToolCall(["x"], "echo")]),  # type: ignore[arg-type]
     lambda c: c.get_server({}),
     lambda c: c.list_tools(["x"]), lambda c: c.iter_tools(["x"])],
    ids=["invoke_tool-server", "invoke_tool-tool", "submit", "breaker_for", "invoke_many",
         "get_server", "list_tools", "iter_tools"],
)
def test_an_unhashable_name_is_a_validation_error_not_a_type_error(
    gateway: FakeGateway, client: GatewayClient, call: Callable[[GatewayClient], object]
) -> None:
    with pytest.raises(ValidationError,
                       match=r"^(server|tool) name must be a str, not (list|set|dict)$"):
        call(client)
    _nothing_sent(gateway)


# -- hostile inputs no item names -----------------------------------------------------------------


class LyingStr(str):
    """A str that claims to be another name everywhere it is formatted, compared or hashed."""

    def __str__(self) -> str:
        return "../../admin"

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return "../../admin"

    def __eq__(self, other: object) -> bool:
        return True

    def __hash__(self) -> int:
        return 0


def test_a_str_subclass_is_used_as_the_plain_str_it_holds() -> None:
    name = validate_name(LyingStr("demo"), "server")
    assert (type(name), name) == (str, "demo")
    token = validate_header_value(LyingStr("token"), "user_token")
    assert (type(token), token) == (str, "token")


def test_a_lying_str_subclass_url_and_key_are_read_as_their_plain_value() -> None:
    client = GatewayClient(LyingStr("http://gw.test"), api_key=LyingStr("k"))
    assert (type(client.base_url), client.base_url) == (str, "http://gw.test")
    assert type(client._api_key.reveal()) is str  # type: ignore[union-attr]
    client.close()


class ExplodingMapping(Mapping[str, Any]):
    """A mapping whose iteration raises an error that quotes a secret."""

    def __getitem__(self, key: str) -> Any:
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        raise RuntimeError(f"cannot list {SECRET}")

    def __len__(self) -> int:
        return 1


def test_a_mapping_whose_iteration_raises_is_a_validation_error_without_its_message(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    with pytest.raises(ValidationError) as caught:
        client.invoke_tool("demo", "echo", ExplodingMapping())
    assert caught.value.message == "parameters could not be read: iterating them raised " \
                                   "RuntimeError"
    assert SECRET not in _shown(caught.value)
    _nothing_sent(gateway)


def test_a_read_only_mapping_is_sent_as_an_object(gateway: FakeGateway,
                                                  client: GatewayClient) -> None:
    from types import MappingProxyType

    gateway.add("POST", INVOKE, json={"success": True, "result": {"content": []}})
    client.invoke_tool("demo", "echo", MappingProxyType({"a": 1}))
    [request] = gateway.requests
    assert request.body is not None and b'"parameters":{"a":1}' in request.body
    assert request.json() == {"server": "demo", "tool": "echo", "parameters": {"a": 1}}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"page": 10**30}, "page must be an int from 1 to 1,000,000, got an int of 100 bits"),
     ({"page": 1_000_001}, "page must be an int from 1 to 1,000,000, got 1000001"),
     ({"page_size": True}, "page_size must be an int from 1 to 1,000, got True"),
     ({"page": 2.0}, "page must be an int from 1 to 1,000,000, got 2.0")],
    ids=["huge", "one-too-many", "bool", "float"],
)
def test_huge_or_odd_page_numbers_are_refused_before_any_request(
    gateway: FakeGateway, client: GatewayClient, kwargs: dict[str, Any], message: str
) -> None:
    for call in (client.list_servers, client.list_tools):
        with pytest.raises(ValidationError) as caught:
            call(**kwargs)
        assert caught.value.message == message
    _nothing_sent(gateway)


def test_a_name_of_10000_characters_is_refused_with_a_shortened_message(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    with pytest.raises(ValidationError) as caught:
        client.invoke_tool("a" * 10_000, "echo")
    assert caught.value.message.startswith("invalid server name '" + "a" * 64 + "...': ")
    assert len(caught.value.message) < 250
    _nothing_sent(gateway)


@pytest.mark.parametrize("name", ["d\u0435mo", "dem\u03bf", "\uff44emo", "demo\u200b"],
                         ids=["cyrillic-e", "greek-o", "fullwidth-d", "zero-width-space"])
def test_a_server_name_with_unicode_lookalikes_is_refused(
    gateway: FakeGateway, client: GatewayClient, name: str
) -> None:
    with pytest.raises(ValidationError, match=r"^invalid server name "):
        client.invoke_tool(name, "echo")
    _nothing_sent(gateway)


def test_an_iterable_of_calls_that_raises_is_a_validation_error(
    gateway: FakeGateway, client: GatewayClient
) -> None:
    def calls() -> Iterator[ToolCall]:
        yield ToolCall("demo", "echo")
        raise OSError(f"disk full near {SECRET}")

    with pytest.raises(ValidationError) as caught:
        client.invoke_many(calls())
    assert caught.value.message == "invoke_many could not iterate its calls: item 1 raised OSError"
    assert SECRET not in _shown(caught.value)
    _nothing_sent(gateway)


@pytest.mark.parametrize(("calls", "kind"), [("abc", "str"), (5, "int"), ({"a": 1}, "dict")])
def test_invoke_many_takes_an_iterable_of_tool_calls(client: GatewayClient, calls: object,
                                                     kind: str) -> None:
    with pytest.raises(ValidationError) as caught:
        client.invoke_many(calls)  # type: ignore[arg-type]
    assert caught.value.message == f"invoke_many takes an iterable of ToolCall, not {kind}"


def test_an_int_subclass_that_lies_about_its_value_is_read_as_its_real_value() -> None:
    class Lying(int):
        def __le__(self, other: object) -> bool:
            return True

        def __ge__(self, other: object) -> bool:
            return True

        def __int__(self) -> int:
            return 1

    with pytest.raises(ConfigurationError, match=r"^max_workers must be an int from 1 to 1,024, "
                                                 r"got 5000000$"):
        GatewayClient(URL, max_workers=Lying(5_000_000))
