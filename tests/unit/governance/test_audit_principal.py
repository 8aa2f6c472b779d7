"""The principal id of audit events read from a user token: never raising, decoded once per
token through a bounded, thread-safe LRU (sark_sync.governance._principal)."""

from __future__ import annotations

import base64
import threading
from typing import Any

import pytest
from support import unsigned_jwt

from sark_sync.governance import _principal
from sark_sync.governance._principal import (
    MAX_CACHED_TOKEN_CHARS,
    PrincipalIdCache,
    principal_id_from_token,
)


def test_the_id_is_the_sub_claim_whatever_the_other_claims() -> None:
    assert principal_id_from_token(unsigned_jwt({"sub": "ada", "roles": "not-a-list"})) == "ada"


@pytest.mark.parametrize("token", [
    None, 42, b"a.b.c", "", "not-a-jwt", "a.b", "a.b.c.d", "a+b.c/d.e", "e30.!!!.c2ln",
    "e30.bm90IGpzb24.c2ln",  # "not json"
    unsigned_jwt(["sub", "ada"]), unsigned_jwt({"name": "ada"}), unsigned_jwt({"sub": ""}),
    unsigned_jwt({"sub": 7}),
    "e30." + base64.urlsafe_b64encode(b"\xff\xfe").rstrip(b"=").decode() + ".c2ln",
])
def test_anything_but_a_jwt_with_a_string_sub_gives_none(token: object) -> None:
    assert principal_id_from_token(token) is None


def test_a_token_is_decoded_once_while_it_is_cached() -> None:
    cache = PrincipalIdCache(4)
    token = unsigned_jwt({"sub": "ada"})
    assert [cache.get(token) for _ in range(5)] == ["ada"] * 5
    assert cache.decoded == 1 and len(cache) == 1


def test_a_malformed_token_is_remembered_as_none() -> None:
    cache = PrincipalIdCache(4)
    assert cache.get("garbage") is None and cache.get("garbage") is None
    assert cache.decoded == 1


def test_the_cache_is_bounded_and_forgets_the_least_recently_used() -> None:
    cache = PrincipalIdCache(3)
    tokens = [unsigned_jwt({"sub": f"user{i}"}) for i in range(4)]
    for token in tokens[:3]:
        cache.get(token)
    cache.get(tokens[0])  # now the most recently used
    cache.get(tokens[3])  # evicts tokens[1]
    assert len(cache) == 3 and cache.decoded == 4
    cache.get(tokens[0])
    cache.get(tokens[2])
    assert cache.decoded == 4
    assert cache.get(tokens[1]) == "user1" and cache.decoded == 5
    assert len(cache) == 3


def test_a_zero_size_cache_keeps_nothing() -> None:
    cache = PrincipalIdCache(0)
    token = unsigned_jwt({"sub": "ada"})
    assert cache.get(token) == cache.get(token) == "ada"
    assert len(cache) == 0 and cache.decoded == 2


def test_huge_tokens_are_decoded_but_never_kept() -> None:
    cache = PrincipalIdCache(4)
    token = unsigned_jwt({"sub": "ada", "pad": "x" * MAX_CACHED_TOKEN_CHARS})
    assert cache.get(token) == "ada" and len(cache) == 0


def test_a_non_string_token_is_none_and_not_decoded() -> None:
    cache = PrincipalIdCache(4)
    assert cache.get(None) is None and cache.get(123) is None
    assert cache.decoded == 0 and len(cache) == 0


@pytest.mark.parametrize("size", [-1, 1.5, True, "8"])
def test_the_size_must_be_an_int_from_zero(size: Any) -> None:
    with pytest.raises(ValueError, match="maxsize"):
        PrincipalIdCache(size)


def test_the_repr_shows_sizes_never_a_token() -> None:
    cache = PrincipalIdCache(8)
    token = unsigned_jwt({"sub": "ada"})
    cache.get(token)
    assert repr(cache) == "<PrincipalIdCache 1 of 8>"


def test_many_threads_share_the_cache_within_its_bound() -> None:
    cache = PrincipalIdCache(16)
    tokens = [unsigned_jwt({"sub": f"user{i}"}) for i in range(64)]
    start = threading.Barrier(8)
    wrong: list[str] = []

    def work(offset: int) -> None:
        start.wait()
        for round_ in range(200):
            index = (offset * 7 + round_) % len(tokens)
            if cache.get(tokens[index]) != f"user{index}":
                wrong.append(tokens[index])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    assert wrong == [] and len(cache) <= 16


def test_after_fork_replaces_the_lock() -> None:
    cache = PrincipalIdCache(4)
    held = cache._lock
    held.acquire()  # as if another thread of the parent held it at fork time
    try:
        cache.after_fork()
        assert cache.get(unsigned_jwt({"sub": "ada"})) == "ada"
    finally:
        held.release()


def test_the_default_size_is_small() -> None:
    assert PrincipalIdCache().maxsize == _principal.PRINCIPAL_CACHE_SIZE <= 1024
