"""The files of docs/integrations/servers.md, served as written by real gunicorn and uWSGI
processes on 127.0.0.1 against a LocalGateway (``app.py``, ``gunicorn.conf.py``,
``gunicorn_gevent.conf.py``, ``uwsgi.ini`` are the page's blocks, written to ``tmp_path``).
Each claim of the page has its test:

- gthread workers forked from a ``--preload`` master: 200 requests, 16 at a time, no error;
- sync workers re-forked by ``--max-requests 25``: each new worker builds its own client;
- sync ``--timeout``: a client timeout below it answers 504 and the worker lives; above it,
  gunicorn kills the worker; gthread's ``--timeout`` does not cut a request;
- a gevent worker: the deadline cuts a slow call while the worker serves other requests;
- gevent without ``--preload``, and with ``--preload`` after the config file's
  ``monkey.patch_all()``: calls are cooperative (200 calls of a 0.2 s tool, 16 at a time, in
  one worker, far below the 40 s they take one by one); ``--preload`` without the early patch
  hangs the worker (the documented unsupported case);
- uWSGI with the page's ini (``lazy-apps``) and without ``lazy-apps`` (preforking), stopped
  by SIGTERM thanks to ``die-on-term``;
- after SIGTERM, every gunicorn worker that served a request closed its client as it exited
  (not checked under uWSGI: there a worker sometimes exits without running Python's exit
  hooks, as the page says).
"""

from __future__ import annotations

import re
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import pytest
from servers_support import answers, clean_env, free_port, get, listening_socket, load, serve
from support import API_KEY, child_env

from sark_sync.testing import LocalGateway

ROOT = Path(__file__).resolve().parents[3]
PAGE = ROOT / "docs" / "integrations" / "servers.md"
_BLOCK = re.compile(r"^```(?P<lang>\w+)\n(?P<body>.*?)^```$", re.S | re.M)
#: The page's files: the first line of a block names it (``# app.py``, ``; uwsgi.ini``).
FILES = ("app.py", "gunicorn.conf.py", "gunicorn_gevent.conf.py", "uwsgi.ini")
UWSGI = Path(sys.executable).with_name("uwsgi")


def page_files() -> dict[str, str]:
    found = {}
    for match in _BLOCK.finditer(PAGE.read_text(encoding="utf-8")):
        body = match.group("body")
        name = body.splitlines()[0].lstrip("#; ").strip()
        if name in FILES:
            found[name] = body
    assert sorted(found) == sorted(FILES)
    return found


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """tmp_path holding the page's files."""
    for name, body in page_files().items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    return tmp_path


def _catalogue(delay: float) -> Callable[[LocalGateway], None]:
    def populate(gateway: LocalGateway) -> None:
        gateway.add_server("demo")

        @gateway.tool("demo")
        def echo(parameters: dict[str, Any]) -> Any:
            if delay:
                time.sleep(delay)  # scenario: a tool this slow, for concurrency
            return parameters

        @gateway.tool("demo")
        def slow(parameters: dict[str, Any]) -> Any:
            time.sleep(6)  # scenario: a tool slower than the timeouts under test
            return parameters

    return populate


def _env(gateway: LocalGateway, **extra: str) -> dict[str, str]:
    return clean_env(**child_env(SARK_GATEWAY_URL=gateway.url, SARK_API_KEY=API_KEY, **extra))


@contextmanager
def gunicorn(site: Path, gateway: LocalGateway, *options: str, ready: bool = True,
             expect_returncode: int | None = 0, **env: str) -> Iterator[tuple[str, Any]]:
    """(base URL, master) of ``gunicorn *options app:app`` in ``site``, bound to a socket
    listening here on 127.0.0.1 port 0; without ``-c``, with an empty config file."""
    if "-c" not in options:  # not the page's ./gunicorn.conf.py, which gunicorn reads by default
        (site / "empty.conf.py").write_text("")
        options = ("-c", "empty.conf.py", *options)
    listener = listening_socket()
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    log = site / "gunicorn.log"
    argv = [sys.executable, "-m", "gunicorn", *options,
            "--bind", f"fd://{listener.fileno()}", "app:app"]
    is_ready = (lambda: answers(f"{base}/echo/ready")) if ready else \
        (lambda: "Booting worker" in log.read_text())
    try:
        with serve(argv, env=_env(gateway, **env), log=log, cwd=site,
                   pass_fds=(listener.fileno(),), ready=is_ready,
                   expect_returncode=expect_returncode) as server:
            listener.close()
            yield base, server
    finally:
        listener.close()


#: Appended to the page's app.py: each GatewayClient.close() leaves a file ``closed-{pid}``.
MARK_CLOSES = """

from sark_sync import GatewayClient

_close = GatewayClient.close


def _marking_close(self):
    here = os.path.dirname(os.path.abspath(__file__))
    open(os.path.join(here, f"closed-{os.getpid()}"), "w").close()
    _close(self)


GatewayClient.close = _marking_close
"""


def _mark_closes(site: Path) -> None:
    app = site / "app.py"
    app.write_text(app.read_text() + MARK_CLOSES)


def _closed(site: Path) -> set[int]:
    """The pids whose client was closed (see :data:`MARK_CLOSES`)."""
    return {int(path.name.split("-")[1]) for path in site.glob("closed-*")}


def _add_slow_route(site: Path) -> None:
    """Append to the page's app.py a route ``/slow`` calling the 6 s tool."""
    app = site / "app.py"
    app.write_text(app.read_text() + '''

@app.get("/slow")
def slow():
    sark.invoke_tool("demo", "slow", {})
    return {"pid": os.getpid()}
''')


def _invokes(gateway: LocalGateway) -> int:
    return sum(1 for r in gateway.requests if r.path == "/api/v1/invoke")


def _pids(bodies: list[dict[str, Any]]) -> Counter[int]:
    return Counter(body["pid"] for body in bodies)


ECHO = "/echo/r{i}"


@pytest.mark.slow
@pytest.mark.fork
def test_gthread_workers_of_a_preloaded_master_serve_without_error(
        site: Path, make_gateway: Any) -> None:
    gateway = make_gateway(_catalogue(0))
    _mark_closes(site)
    with gunicorn(site, gateway, "-c", "gunicorn.conf.py") as (base, server):
        bodies = load(base, 200, 16, path=ECHO)
    assert server.pid not in _pids(bodies) and len(_pids(bodies)) >= 2
    assert _invokes(gateway) == 201  # and the readiness probe's
    assert set(_pids(bodies)) <= _closed(site)  # at the workers' exit, after SIGTERM


@pytest.mark.slow
@pytest.mark.fork
def test_sync_workers_reforked_by_max_requests_build_their_own_client(
        site: Path, make_gateway: Any) -> None:
    gateway = make_gateway(_catalogue(0))
    with gunicorn(site, gateway, "-c", "gunicorn.conf.py", "-k", "sync", "--threads", "1",
                  "--workers", "2", "--max-requests", "25", "--max-requests-jitter", "0",
                  ) as (base, server):
        bodies = load(base, 200, 8, path=ECHO)
    pids = _pids(bodies)
    assert len(pids) >= 8 and max(pids.values()) <= 25 and server.pid not in pids
    assert "WORKER TIMEOUT" not in (site / "gunicorn.log").read_text()


@pytest.mark.slow
@pytest.mark.fork
def test_a_client_timeout_below_the_sync_workers_timeout_answers_504(
        site: Path, make_gateway: Any) -> None:
    gateway = make_gateway(_catalogue(0))
    _add_slow_route(site)
    options = ("-k", "sync", "--workers", "1", "--timeout", "4")
    with gunicorn(site, gateway, *options, SARK_TIMEOUT="2") as (base, _):
        pid = get(f"{base}/echo/x")[1]["pid"]
        started = time.monotonic()
        status, body = get(f"{base}/slow")
        took = time.monotonic() - started
        assert (status, body["error"]["code"]) == (504, "upstream_timeout")
        assert 1.9 < took < 3.5
        assert get(f"{base}/echo/x")[1]["pid"] == pid  # the same worker
    assert "WORKER TIMEOUT" not in (site / "gunicorn.log").read_text()

    with gunicorn(site, gateway, *options) as (base, _):  # the default 30 s
        pid = get(f"{base}/echo/x")[1]["pid"]
        started = time.monotonic()
        status, body = get(f"{base}/slow")
        took = time.monotonic() - started
        assert status == 500 and "Internal Server Error" in body["body"]
        assert 3.9 < took < 6
        assert get(f"{base}/echo/x")[1]["pid"] != pid  # a new worker
    assert "WORKER TIMEOUT" in (site / "gunicorn.log").read_text()

    # gthread: --timeout does not cut a request a thread is serving.
    with gunicorn(site, gateway, "--threads", "2", "--workers", "1", "--timeout", "4"
                  ) as (base, _):
        started = time.monotonic()
        assert get(f"{base}/slow")[0] == 200
        assert time.monotonic() - started > 5.9
    assert "WORKER TIMEOUT" not in (site / "gunicorn.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("options", [
    ("-k", "gevent", "--workers", "1"),
    ("-c", "gunicorn_gevent.conf.py", "--workers", "1"),  # --preload, patched in the master
], ids=["gevent", "gevent-preload-patched"])
def test_a_gevent_worker_makes_its_calls_cooperatively(
        site: Path, make_gateway: Any, options: tuple[str, ...]) -> None:
    gateway = make_gateway(_catalogue(0.2))
    _mark_closes(site)
    with gunicorn(site, gateway, *options, APP_SARK_MAX_WORKERS="16") as (base, server):
        started = time.monotonic()
        bodies = load(base, 200, 16, path=ECHO)
        took = time.monotonic() - started
    pids = _pids(bodies)
    assert len(pids) == 1 and server.pid not in pids
    assert took < 15, took  # 40 s one call at a time; about 3 s 16 at a time
    assert _invokes(gateway) == 201
    assert set(pids) <= _closed(site)


@pytest.mark.slow
def test_the_deadline_cuts_a_call_in_a_gevent_worker_which_serves_others_meanwhile(
        site: Path, make_gateway: Any) -> None:
    gateway = make_gateway(_catalogue(0))
    _add_slow_route(site)
    with gunicorn(site, gateway, "-k", "gevent", "--workers", "1", SARK_TIMEOUT="2"
                  ) as (base, _):
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            slow = pool.submit(get, f"{base}/slow")
            load(base, 20, 4, path=ECHO)  # the same worker, while the slow call waits
            assert not slow.done()
            status, body = slow.result()
            took = time.monotonic() - started
    assert (status, body["error"]["code"]) == (504, "upstream_timeout")
    assert 1.9 < took < 3.5, took


@pytest.mark.slow
def test_gevent_with_preload_and_no_early_patch_hangs_the_worker(
        site: Path, make_gateway: Any) -> None:
    """The page's unsupported case: the master imported sark_sync (and requests) before the
    worker patched, so the worker blocks on a real lock and gunicorn times it out."""
    gateway = make_gateway(_catalogue(0))
    log = site / "gunicorn.log"
    with gunicorn(site, gateway, "--preload", "-k", "gevent", "--workers", "1",
                  "--timeout", "3", "--graceful-timeout", "2", ready=False,
                  expect_returncode=None) as (base, _):
        results = []
        for i in range(6):
            try:
                results.append(get(f"{base}/echo/r{i}", timeout=5)[0])
            except OSError as exc:
                results.append(type(exc).__name__)
            if results[-1] != 200 and "WORKER TIMEOUT" in log.read_text():
                break
    assert "WORKER TIMEOUT" in log.read_text(), (results, log.read_text()[-2000:])
    assert any(result != 200 for result in results), results


@contextmanager
def uwsgi(site: Path, gateway: LocalGateway, ini: str, apps: int
          ) -> Iterator[tuple[str, Any]]:
    """(base URL, master) of ``uwsgi --ini ini`` in ``site``, once ``apps`` copies of the app
    are loaded (with lazy-apps, each worker loads its own: a SIGTERM while a worker is still
    importing leaves that worker hanging, "no app loaded", until it is killed)."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = site / "uwsgi.log"
    argv = [str(UWSGI), "--ini", ini, "--http-socket", f"127.0.0.1:{port}"]
    with serve(argv, env=_env(gateway), log=log, cwd=site,
               ready=lambda: log.read_text().count("WSGI app 0 ") >= apps
               and answers(f"{base}/echo/ready")) as server:
        yield base, server


@pytest.mark.slow
@pytest.mark.fork
@pytest.mark.parametrize("lazy_apps", [True, False], ids=["lazy-apps", "prefork"])
def test_uwsgi_serves_the_page_app(site: Path, make_gateway: Any, lazy_apps: bool) -> None:
    gateway = make_gateway(_catalogue(0))
    ini = (site / "uwsgi.ini").read_text()
    assert "\nlazy-apps = true\n" in ini and "\ndie-on-term = true\n" in ini
    if not lazy_apps:
        (site / "uwsgi.ini").write_text(ini.replace("lazy-apps = true\n", ""))
    with uwsgi(site, gateway, "uwsgi.ini", 4 if lazy_apps else 1) as (base, server):
        bodies = load(base, 200, 16, path=ECHO)
    assert server.pid not in _pids(bodies) and len(_pids(bodies)) >= 2
    assert _invokes(gateway) == 201
    assert "python threads support enabled" in (site / "uwsgi.log").read_text()
