"""The LocalGateway: an embedded SARK gateway for development, tests and the demo."""
