"""What a LocalGateway serves, and the events that say when it changes.

Design: :class:`Catalogue` joins the :class:`~._registry.Registry` (servers and tools), the
:class:`~..stdio._hosting.StdioHosting` (the processes behind stdio servers) and the
:class:`~._events.EventLog`, so that every change of the catalogue publishes its event in one
place, after the change succeeded:

- ``server_registered`` {server} when a server enters the catalogue (a stdio server at once,
  before its process starts, since it is listed from then on);
- ``server_unregistered`` {server} when it leaves (and when a stdio server added to a running
  gateway is taken out again because its process could not start);
- ``server_health`` {server, status} when a server's health changes: a stdio server's as its
  host reports it (:mod:`..stdio._hosting`), another's through :meth:`Catalogue.set_health`.

The gateway serialises :meth:`Catalogue.add_stdio_server` with its own start and stop.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ..stdio._hosting import StdioHost, StdioHosting
from ._events import EventLog
from ._registry import Registry

__all__ = ["Catalogue"]


class Catalogue:
    """The registry, the stdio hosts and the catalogue events of one gateway."""

    def __init__(self, registry: Registry, hosting: StdioHosting, events: EventLog) -> None:
        self.registry = registry
        self.hosting = hosting
        self.events = events

    def add_server(self, name: str, **options: Any) -> dict[str, Any]:
        info = self.registry.add_server(name, **options)
        self.events.publish("server_registered", {"server": name})
        return info

    def add_stdio_server(
        self,
        name: str,
        command: Sequence[str],
        *,
        running: bool,
        env: Mapping[str, str] | None,
        cwd: str | os.PathLike[str] | None,
        inherit_env: bool,
        sensitivity_level: str,
        authorized_teams: Iterable[str],
        startup_timeout: float,
        call_timeout: float,
    ) -> dict[str, Any]:
        """Register and host a stdio server, starting it at once when ``running``."""
        host = StdioHost(
            name, command, env=env, cwd=cwd, inherit_env=inherit_env,
            startup_timeout=startup_timeout, call_timeout=call_timeout,
            on_tools=self.registry.set_upstream_tools, on_health=self.health_changed,
        )
        self.registry.add_server(
            name, transport="stdio", sensitivity_level=sensitivity_level,
            authorized_teams=authorized_teams, health_status="unknown",
            server_url=f"stdio://local/{name}", upstream=host,
        )
        self.hosting.add(host)
        self.events.publish("server_registered", {"server": name})
        if running:
            try:
                host.start()
            except BaseException:
                self.hosting.pop(name)
                self.registry.remove_server(name)
                self.events.publish("server_unregistered", {"server": name})
                raise
        return self.registry.get_server(name)

    def remove_server(self, name: str) -> None:
        self.registry.remove_server(name)
        host = self.hosting.pop(name)
        if host is not None:
            host.close()
        self.events.publish("server_unregistered", {"server": name})

    def set_health(self, name: str, status: str) -> None:
        if self.registry.set_health(name, status):
            self.health_changed(name, status)

    def health_changed(self, server: str, status: str) -> None:
        self.events.publish("server_health", {"server": server, "status": status})
