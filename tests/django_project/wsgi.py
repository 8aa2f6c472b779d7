"""The WSGI application of the test project, for gunicorn (``django_project.wsgi:application``).

With ``DJANGO_PROJECT_WARM_CLIENT=1`` the client is built at load time: under ``--preload``
that is in the master, so every forked worker must build its own.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_project.settings")

application = get_wsgi_application()

if os.environ.get("DJANGO_PROJECT_WARM_CLIENT") == "1":
    from sark_sync.contrib.django import get_client

    get_client().health()
