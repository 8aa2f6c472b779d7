"""Integrations with web frameworks and task queues: ``sark_sync.contrib.django``,
``sark_sync.contrib.flask`` and ``sark_sync.contrib.celery``.

Each is an extra (``python -m pip install ".[django]"`` in a clone ...) and imports its
framework, so nothing here is imported by ``import sark_sync``: a production install that
uses none of them never loads them.
"""
