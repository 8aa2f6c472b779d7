"""The hostile-peer kit: servers and programs that misbehave on command.

- :mod:`hostile.http_peer`: a raw-socket HTTP/1.1 server on loopback whose every answer is a
  script of writes and pauses (trickled headers, endless ``100 Continue``, bodies that never
  end, 100,000-deep JSON, resets, pagination that lies).
- :mod:`hostile.stdio_peer`: an MCP stdio server program that misbehaves on command.

Imported as ``hostile`` (tests/ is on sys.path).
"""
