"""A Celery project for the tests of sark_sync.contrib.celery (see celery_app.py)."""
