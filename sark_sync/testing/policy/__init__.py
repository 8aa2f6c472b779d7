"""The LocalGateway's policy: the built-in rules, their enforcement and test tokens."""
