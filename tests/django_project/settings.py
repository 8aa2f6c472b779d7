"""Settings of the test project: the integration app, its middleware, and no database.

``SARK_SYNC`` leaves ``BASE_URL`` and ``API_KEY`` out on purpose: they come from
``SARK_GATEWAY_URL``/``SARK_API_KEY`` (the gunicorn run) or from ``override_settings`` (the
in-process tests), and ``manage.py check`` without either reports ``sark_sync.E001``.
"""

SECRET_KEY = "tests-only-not-a-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["sark_sync.contrib.django"]
MIDDLEWARE = ["sark_sync.contrib.django.middleware.GatewayErrorMiddleware"]
ROOT_URLCONF = "django_project.urls"
DATABASES: dict[str, object] = {}
USE_TZ = True
LOGGING_CONFIG = None
SARK_SYNC = {
    # Fast retries: the tests look at which calls succeed, not how long apart retries are.
    "RETRY": {"backoff_base": 0.01, "backoff_max": 0.05},
}
