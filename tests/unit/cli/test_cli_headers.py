"""``sark-sync remote``'s headers: ``SARK_MCP_HEADERS`` lines, then ``--header`` flags, a later
one replacing an earlier one whatever the case of its name; a bad one named by where it came
from and its name, its value never quoted."""

from __future__ import annotations

import pytest

from sark_sync.cli._common import UsageError
from sark_sync.cli._servers import ENV_MCP_HEADERS, parse_headers

SECRET = "Bearer s3cret"


def test_flags_win_over_the_variable_name_by_name_whatever_the_case() -> None:
    environ = {ENV_MCP_HEADERS: "authorization: Bearer env\n\n  \nX-Tenant:  t1  \n"}
    headers = parse_headers([f"Authorization: {SECRET}", "x-extra: a:b"], environ)
    assert headers == {"X-Tenant": "t1", "Authorization": SECRET, "x-extra": "a:b"}


def test_no_variable_and_no_flag_is_no_header() -> None:
    assert parse_headers([], {}) == {}
    assert parse_headers([], {ENV_MCP_HEADERS: ""}) == {}


@pytest.mark.parametrize(("flags", "variable", "message"), [
    ([f"Authorization {SECRET}"], "",
     "--header 1 is not 'Name: value' with a valid header name"),
    ([f"Bad Name: {SECRET}"], "", "--header 1 is not 'Name: value' with a valid header name"),
    ([": x"], "", "--header 1 is not 'Name: value' with a valid header name"),
    ([], f"X-Ok: 1\nAuthorization: {SECRET}\x00",
     f"{ENV_MCP_HEADERS} line 2: the value of Authorization has a control character at "
     "index 13"),
    (["X-Ok: 1", "Authorization:"], "", "--header 2: the value of Authorization is empty"),
    ([f"Authorization: {SECRET}é"], "",
     "--header 1: the value of Authorization has a non-ASCII character at index 13"),
    (["accept: */*"], "", "--header 1: accept is set by the MCP transport itself"),
    (["MCP-Protocol-Version: 2025-11-25"], "",
     "--header 1: MCP-Protocol-Version is set by the MCP transport itself"),
    ([], "Mcp-Name: echo", f"{ENV_MCP_HEADERS} line 1: Mcp-Name is set by the MCP transport "
     "itself"),
    (["Mcp-Param-Region: eu"], "",
     "--header 1: Mcp-Param-Region is set by the MCP transport itself"),
])
def test_a_bad_header_is_a_usage_error_naming_where_it_came_from_never_its_value(
    flags: list[str], variable: str, message: str
) -> None:
    with pytest.raises(UsageError) as caught:
        parse_headers(flags, {ENV_MCP_HEADERS: variable})
    assert str(caught.value).startswith(message)
    assert "s3cret" not in str(caught.value)
