"""An OPA Data API server for the tests: the real OPA evaluation engine, our HTTP framing.

The policies are parsed, compiled and evaluated by OPA itself, v1.20.2 compiled from Go and
loaded in-process through ``opa-golib-python-bindings`` 0.4.4 (``opa_bindings.OpaEngine``);
the HTTP server around it is ours (stdlib ``http.server``), shaped after OPA's REST API for
the few endpoints that sark_sync and the tests use. It is not ``opa run --server``: no
bundles, no data writes, no decision logs, no ``?explain``/``?metrics``, no auth.

Run it with the tools venv's interpreter (the tests never import it)::

    .tools-venv/bin/python tests/realcomp/opa_server.py --policy sark_sync/policies/gateway.rego
    .tools-venv/bin/python tests/realcomp/opa_server.py --version   # prints e.g. v1.20.2

It binds 127.0.0.1 port 0 (loopback only), prints its base URL (``http://127.0.0.1:<port>``)
on stdout once it listens, and logs one line a request to stderr. SIGTERM or SIGINT stops it
at once and it exits 0 (a ``--policy`` that does not compile: exit 2, the errors on stderr).

Endpoints (HTTP/1.1, keep-alive, every response ``application/json`` with a Content-Length):

- ``PUT /v1/policies/<id>``, body the Rego module: compiled together with the other modules;
  ``200 {}``, or ``400 {"code": "invalid_parameter", "message": "error(s) occurred while
  compiling module(s)", "errors": [{"code": "rego_parse_error", "message": ..., "location":
  {"file": <id>, "row": N}}]}`` and the policies stay as they were. ``DELETE`` removes one
  (``404 resource_not_found`` if unknown); ``GET /v1/policies`` lists ``{"result": [{"id",
  "raw"}]}``.
- ``POST /v1/data/<path>`` with ``{"input": ...}`` (or no body: no input), and ``GET``
  without input: ``{"result": <value>}`` for ``data.<path>`` (slashes become dots, segments
  are URL-decoded), or ``{}`` when the document is undefined, as OPA answers. An evaluation
  error (a conflict between complete rules, ...) is ``500 {"code": "internal_error",
  "message": "error(s) occurred while evaluating query", "errors": [...]}``; a body that is
  not a JSON object: ``400 invalid_parameter``. ``{"input": null}`` is taken as no input
  (the bindings cannot tell them apart).
- ``GET /health``: ``200 {}``.

Facts about the bindings, read in their source and checked here:

- ``OpaEngine.add_policy(path, source)`` only parses (``OpaError`` with ``code ==
  "parse_error"``); compile errors (unsafe variables, type errors) surface at the next
  evaluation (``code == "prepare_error"``, "bundle activation failed: ...") and a bad module
  stays in that engine. So every change builds a fresh engine from all the modules, compiles
  it with a trial evaluation, and only then replaces the engine in use.
- ``eval_query(query, input)`` returns the list of bindings, ``[]`` when undefined; errors in
  evaluation are ``OpaError(code="eval_error")``. Sets come back as JSON arrays.
- Thread-safety: an engine serializes its evaluations with an internal lock; configuration
  calls may interleave with them. Here an engine is never changed once in use (changes build
  a new one, under ``_store_lock``), and a request evaluates on the engine it picked up.
- The OPA version is not exposed by the API (``opa.runtime()`` is ``{}``): ``--version`` reads
  it from the Go build information embedded in ``libopabridge.so``.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import opa_bindings
from opa_bindings import OpaEngine, OpaError

#: Bodies larger than this are refused (413): the tests send small documents.
MAX_BODY = 16 * 1024 * 1024
#: OPA's messages for the error envelopes (v1/server/types).
MSG_COMPILE = "error(s) occurred while compiling module(s)"
MSG_EVAL = "error(s) occurred while evaluating query"

# "file.rego:12: rego_parse_error: message", after an "N errors occurred:" preamble.
_AST_ERROR = re.compile(r"^(?P<file>\S.*?):(?P<row>\d+): (?P<code>[a-z_]+): (?P<message>.*)$")
_PREAMBLE = re.compile(r"^(?:bundle activation failed: )?\d+ errors? occurred:\s*")
_OPA_DEP = re.compile(rb"dep\tgithub\.com/open-policy-agent/opa\t(v[0-9][0-9A-Za-z.+-]*)")


def opa_version() -> str:
    """The OPA version compiled into the bindings' library, e.g. ``v1.20.2``."""
    library = Path(opa_bindings.__file__).with_name("libopabridge.so").read_bytes()
    match = _OPA_DEP.search(library)
    return match.group(1).decode() if match else "unknown"


def ast_errors(exc: OpaError) -> list[dict[str, Any]]:
    """OPA's error objects from the text of an ``OpaError`` (one per error line)."""
    errors: list[dict[str, Any]] = []
    for line in _PREAMBLE.sub("", exc.message).splitlines():
        match = _AST_ERROR.match(line.strip())
        if match:
            location = {"file": match["file"], "row": int(match["row"])}
            errors.append({"code": match["code"], "message": match["message"],
                           "location": location})
        elif errors and line.startswith("\t"):
            errors[-1].setdefault("details", []).append(line[1:])
    return errors or [{"code": exc.code, "message": exc.message}]


class PolicyStore:
    """The modules by id, and the engine compiled from all of them."""

    def __init__(self) -> None:
        self._store_lock = threading.Lock()
        self._modules: dict[str, str] = {}
        self._engine = self._compile({})

    @staticmethod
    def _compile(modules: dict[str, str]) -> OpaEngine:
        engine = OpaEngine()
        for policy_id, source in modules.items():
            engine.add_policy(policy_id, source)
        engine.eval_query("true")  # compiles every module: raises on the errors of any
        return engine

    def put(self, policy_id: str, source: str) -> None:
        """Add or replace a module; raise ``OpaError`` (and change nothing) if the modules
        do not compile together."""
        with self._store_lock:
            modules = {**self._modules, policy_id: source}
            self._engine = self._compile(modules)
            self._modules = modules

    def delete(self, policy_id: str) -> bool:
        """Remove a module; False if there is none of that id."""
        with self._store_lock:
            if policy_id not in self._modules:
                return False
            modules = {k: v for k, v in self._modules.items() if k != policy_id}
            self._engine = self._compile(modules)
            self._modules = modules
            return True

    def modules(self) -> dict[str, str]:
        with self._store_lock:
            return dict(self._modules)

    def evaluate(self, path: list[str], input_document: Any) -> tuple[bool, Any]:
        """``(defined, value)`` of ``data.<path>``; ``input_document`` None: no input."""
        # Each segment as a quoted Rego string (JSON's string syntax is Rego's).
        query = "result := data" + "".join(f"[{json.dumps(segment)}]" for segment in path)
        bindings = self._engine.eval_query(query, input_document)
        if not bindings:
            return False, None
        return True, bindings[0]["result"]


class OpaHandler(BaseHTTPRequestHandler):
    """One connection: routes the requests to the ``PolicyStore`` of the server."""

    protocol_version = "HTTP/1.1"
    server: OpaHttpServer

    def setup(self) -> None:
        # Headers and body are two writes: without this, Nagle's algorithm holds the body
        # back until the client's delayed ACK (40 ms on Linux).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().setup()

    def _reply(self, status: int, document: Any) -> None:
        body = json.dumps(document).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, code: str, message: str, **extra: Any) -> None:
        self._reply(status, {"code": code, "message": message, **extra})

    def _body(self) -> bytes | None:
        """The request body; None after replying with an error."""
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._error(411, "invalid_parameter", "a Content-Length is required")
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True
            self._error(413 if length > MAX_BODY else 400, "invalid_parameter",
                        f"bad Content-Length: {self.headers.get('Content-Length')!r}")
            return None
        return self.rfile.read(length)

    def _route(self) -> tuple[str, str]:
        path = urlsplit(self.path).path
        for prefix in ("/v1/policies", "/v1/data"):
            if path == prefix or path.startswith(prefix + "/"):
                return prefix, unquote(path[len(prefix):].strip("/"))
        return path, ""

    def do_GET(self) -> None:
        prefix, rest = self._route()
        if prefix == "/health":
            self._reply(200, {})
        elif prefix == "/v1/data":
            self._data(rest, None)
        elif prefix == "/v1/policies" and not rest:
            listed = [{"id": k, "raw": v} for k, v in sorted(self.server.store.modules().items())]
            self._reply(200, {"result": listed})
        else:
            self._error(404, "resource_not_found", f"no such endpoint: GET {self.path}")

    def do_POST(self) -> None:
        prefix, rest = self._route()
        body = self._body()
        if body is None:
            return
        if prefix != "/v1/data":
            self._error(404, "resource_not_found", f"no such endpoint: POST {self.path}")
            return
        try:
            request = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            self._error(400, "invalid_parameter", f"body contains malformed input document: {exc}")
            return
        if not isinstance(request, dict):
            self._error(400, "invalid_parameter", "body must be a JSON object")
            return
        self._data(rest, request.get("input"))

    def do_PUT(self) -> None:
        prefix, policy_id = self._route()
        body = self._body()
        if body is None:
            return
        if prefix != "/v1/policies" or not policy_id:
            self._error(404, "resource_not_found", f"no such endpoint: PUT {self.path}")
            return
        try:
            source = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            self._error(400, "invalid_parameter", f"the policy is not UTF-8: {exc}")
            return
        try:
            self.server.store.put(policy_id, source)
        except OpaError as exc:
            self._error(400, "invalid_parameter", MSG_COMPILE, errors=ast_errors(exc))
            return
        self._reply(200, {})

    def do_DELETE(self) -> None:
        prefix, policy_id = self._route()
        if prefix != "/v1/policies" or not policy_id:
            self._error(404, "resource_not_found", f"no such endpoint: DELETE {self.path}")
            return
        try:
            deleted = self.server.store.delete(policy_id)
        except OpaError as exc:  # the others no longer compile without it
            self._error(400, "invalid_operation", MSG_COMPILE, errors=ast_errors(exc))
            return
        if deleted:
            self._reply(200, {})
        else:
            self._error(404, "resource_not_found",
                        f"storage_not_found_error: policy id {json.dumps(policy_id)}")

    def _data(self, path: str, input_document: Any) -> None:
        segments = [segment for segment in path.split("/") if segment]
        try:
            defined, value = self.server.store.evaluate(segments, input_document)
        except OpaError as exc:
            self._error(500, "internal_error", MSG_EVAL, errors=ast_errors(exc))
            return
        self._reply(200, {"result": value} if defined else {})


class OpaHttpServer(ThreadingHTTPServer):
    """A ``ThreadingHTTPServer`` that holds the ``PolicyStore``."""

    daemon_threads = True

    def __init__(self, store: PolicyStore) -> None:
        self.store = store
        super().__init__(("127.0.0.1", 0), OpaHandler)


class _Stop(Exception):
    """Raised in the main thread by SIGTERM/SIGINT: ends serve_forever at once."""


def _stop(signum: int, frame: object) -> None:
    raise _Stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policy", action="append", default=[], type=Path, metavar="FILE",
                        help="a Rego module to load before serving, its file name as its id "
                             "(repeatable)")
    parser.add_argument("--version", action="store_true",
                        help="print the OPA version of the engine and exit")
    args = parser.parse_args(argv)
    if args.version:
        print(opa_version())
        return 0
    store = PolicyStore()
    for file in args.policy:
        try:
            store.put(file.name, file.read_text(encoding="utf-8"))
        except (OSError, OpaError) as exc:
            print(f"opa_server: cannot load {file}: {exc}", file=sys.stderr)
            return 2
    server = OpaHttpServer(store)
    try:
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        host, port = server.server_address[:2]
        print(f"http://{host}:{port}", flush=True)
        print(f"opa_server: OPA {opa_version()} listening on {host}:{port}", file=sys.stderr,
              flush=True)
        server.serve_forever()
    except _Stop:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
