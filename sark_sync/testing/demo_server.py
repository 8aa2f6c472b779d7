"""``python -m sark_sync.testing.demo_server``: run the demo MCP server on stdin/stdout."""
from sark_sync.testing.stdio._demo_server import main

if __name__ == "__main__":
    raise SystemExit(main())
