"""Real third-party components for the tests: the tools venv, the servers built on them, and
the pytest plugin (``realcomp.fixtures``) that hands them to the tests."""
