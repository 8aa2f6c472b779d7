"""ToolList: when a hosted server's tools are listed again before the gateway answers 404.

``relist`` here is a plain function that stores what a server would list and counts its
calls: the rules are about when it is called and what its answer decides.
"""

from __future__ import annotations

import threading
from typing import Callable

import pytest

from sark_sync.testing.gateway._tool_calls import UpstreamFailure
from sark_sync.testing.stdio._tool_list import TOOLS_CHANGED, ToolList


def listing(tools: ToolList, names: list[str], calls: list[int]) -> Callable[[], None]:
    """A relist that stores ``names`` (as they are when it runs) and counts its calls."""

    def relist() -> None:
        calls.append(1)
        generation = tools.generation()
        tools.store([{"name": name} for name in names], generation)

    return relist


def test_a_fresh_listing_that_holds_the_tool_answers_without_listing() -> None:
    tools, calls = ToolList(), []
    tools.store([{"name": "echo"}], tools.generation())
    assert tools.has("echo", listing(tools, [], calls)) is True
    assert calls == []


def test_a_miss_lists_once_and_finds_a_tool_added_silently() -> None:
    tools, calls, names = ToolList(), [], ["echo"]
    tools.store([{"name": "echo"}], tools.generation())
    relist = listing(tools, names, calls)
    assert tools.has("late", relist) is False
    names.append("late")
    assert tools.has("late", relist) is True
    assert len(calls) == 2


def test_a_list_changed_makes_a_known_tool_be_looked_up_again() -> None:
    tools, calls = ToolList(), []
    tools.store([{"name": "old"}], tools.generation())
    tools.notified("notifications/message", {})  # not about tools: still fresh
    assert tools.has("old", listing(tools, ["old"], calls)) is True and calls == []
    tools.notified(TOOLS_CHANGED, {})
    assert tools.has("old", listing(tools, ["new"], calls)) is False
    assert calls == [1]


def test_a_change_during_a_listing_leaves_it_stale() -> None:
    tools = ToolList()
    generation = tools.generation()
    tools.notified(TOOLS_CHANGED, {})  # came while the listing was under way
    tools.store([{"name": "echo"}], generation)
    calls: list[int] = []
    assert tools.has("echo", listing(tools, ["echo"], calls)) is True
    assert calls == [1]


def test_a_failed_listing_keeps_a_known_tool_and_refuses_an_unknown_one_with_it() -> None:
    tools = ToolList()
    tools.store([{"name": "echo"}], tools.generation())
    tools.notified(TOOLS_CHANGED, {})

    def down() -> None:
        raise UpstreamFailure(502, "stdio server 'x' could not be restarted")

    assert tools.has("echo", down) is True  # the call meets the failure itself
    with pytest.raises(UpstreamFailure) as failed:
        tools.has("nosuch", down)
    assert failed.value.status == 502 and not failed.value.reached


def test_concurrent_misses_share_one_listing() -> None:
    tools, calls = ToolList(), []
    tools.notified(TOOLS_CHANGED, {})  # never listed fresh: every lookup needs a listing
    entered, release = threading.Event(), threading.Event()
    store = listing(tools, ["echo"], calls)

    def slow_relist() -> None:
        entered.set()
        assert release.wait(5)
        store()

    answers: list[bool] = []
    first = threading.Thread(target=lambda: answers.append(tools.has("echo", slow_relist)))
    first.start()
    assert entered.wait(5)
    second = threading.Thread(target=lambda: answers.append(tools.has("echo", slow_relist)))
    second.start()
    release.set()
    first.join(5)
    second.join(5)
    assert answers == [True, True] and calls == [1]
