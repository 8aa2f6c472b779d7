"""Fork detection: a child process never uses its parent's sockets, threads or locks.

Celery prefork and ``gunicorn --preload`` create a client in the parent and fork workers that
inherit it. Sharing the parent's pooled sockets corrupts both sides' streams (TLS above all),
the parent's executor threads do not exist in the child, and a lock held by another parent
thread at fork time stays locked forever in the child.

Two mechanisms, so that neither can be missed:

- ``os.register_at_fork(after_in_child=...)`` runs in the child right after ``fork()``, while
  it is single-threaded, and tells every live owner to drop (never close: the parent still
  uses them) its resources and replace its locks. One exception: a local server's pipes are
  closed in the child, since only the child's copies close and a copy left open would keep
  the server from seeing EOF on its stdin when the parent closes it (no parent thread exists
  in the child, so nothing of ours is reading them there);
- each owner also records its pid and compares it on use, for forks that bypass the hook
  (``os.fork`` always runs it; a raw ``fork()`` from C code may not).

Owners are held weakly, so registering never keeps a client alive.
"""

from __future__ import annotations

import os
import weakref
from typing import Protocol

__all__ = ["ForkAware", "register"]


class ForkAware(Protocol):
    def _after_fork_in_child(self) -> None: ...


_owners: weakref.WeakSet[ForkAware] = weakref.WeakSet()


def register(owner: ForkAware) -> None:
    """Call ``owner._after_fork_in_child()`` in every child forked while ``owner`` lives."""
    _owners.add(owner)


def _reinit_in_child() -> None:
    for owner in list(_owners):
        owner._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_in_child)
