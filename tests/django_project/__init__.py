"""A small Django project for the tests of sark_sync.contrib.django (tests/ is on sys.path,
so it is importable as ``django_project``): settings, URLs and views that call tools on behalf
of the request's user. Served by Django's test Client in-process and by gunicorn in a child.

:func:`configure` sets the process's Django up from :mod:`django_project.settings` without
``DJANGO_SETTINGS_MODULE``, so the rest of the suite (and pytest-django, which acts only where
Django is configured) never sees Django settings unless a Django test ran.
"""

from __future__ import annotations

import importlib

import django
from django.conf import settings as django_settings


def configure() -> None:
    """Configure Django from :mod:`django_project.settings` once per process."""
    if django_settings.configured:
        return
    project_settings = importlib.import_module("django_project.settings")
    django_settings.configure(**{name: getattr(project_settings, name)
                          for name in dir(project_settings) if name.isupper()})
    django.setup()
