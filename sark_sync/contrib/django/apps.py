"""The Django app of the integration (``"sark_sync.contrib.django"`` in ``INSTALLED_APPS``).

It has no models; installing it registers the system checks of :mod:`.checks`, so that
``manage.py check`` reports a missing or invalid ``SARK_SYNC`` as ``sark_sync.E00x`` errors
with a hint, rather than a view failing at its first call.
"""

from __future__ import annotations

from django.apps import AppConfig
from django.core import checks

from .checks import check_settings

__all__ = ["SarkSyncConfig"]


class SarkSyncConfig(AppConfig):  # type: ignore[misc]  # Django ships no type information
    name = "sark_sync.contrib.django"
    label = "sark_sync"
    verbose_name = "SARK sync client"

    def ready(self) -> None:
        checks.register(check_settings, "sark_sync")
