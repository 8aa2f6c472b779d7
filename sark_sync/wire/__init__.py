"""Wire codecs: SSE framing, JSON-RPC 2.0 and pagination. Pure: no I/O, no threads."""
