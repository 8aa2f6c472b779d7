"""Local MCP servers over stdio: hosting them in the LocalGateway, and the demo server."""
