"""The producing side of the worker tests, run as its own process (as a web process is):
sends tasks to a worker's queue over the real broker and reads their results from the real
result backend, then prints them as one JSON document on stdout.

    python -m celery_project.produce echo QUEUE '[[1], [2]]'          # the tasks' values
    python -m celery_project.produce --errors raise_public_error QUEUE '[["NotFoundError"]]'

With ``--errors`` each task must fail, and the exception read back from the JSON backend is
compared with the catalogue's original (type, every attribute, ``str``, ``repr``, ``args``):
the document lists the names that came back the same. Broker and backend come from
``SARK_TEST_CELERY_BROKER`` / ``SARK_TEST_CELERY_BACKEND``. A process of its own because
Celery's producer keeps pooled connections and pollers for the life of the process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from celery import Celery

#: Seconds to wait for each result.
RESULT_TIMEOUT = 60.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--errors", action="store_true")
    parser.add_argument("task")
    parser.add_argument("queue")
    parser.add_argument("calls", type=json.loads)
    options = parser.parse_args()
    app = Celery("sark_celery_tests", broker=os.environ["SARK_TEST_CELERY_BROKER"],
                 backend=os.environ["SARK_TEST_CELERY_BACKEND"], set_as_current=False)
    app.conf.update(task_serializer="json", result_serializer="json", accept_content=["json"],
                    result_accept_content=["json"])
    name = "celery_project.celery_app." + options.task
    results = [app.send_task(name, args=args, queue=options.queue) for args in options.calls]
    if not options.errors:
        json.dump([result.get(timeout=RESULT_TIMEOUT) for result in results], sys.stdout)
        return 0
    from error_catalogue import PUBLIC, assert_same, build

    same = []
    for (error_name,), result in zip(options.calls, results):
        copy = result.get(timeout=RESULT_TIMEOUT, propagate=False)
        assert result.state == "FAILURE", (error_name, result.state)
        assert_same(copy, build(next(cls for cls in PUBLIC if cls.__name__ == error_name)))
        same.append(error_name)
    json.dump(same, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
