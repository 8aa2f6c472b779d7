"""Resilience: the retry loop, breakers, the deadline watchdog and fork safety."""
