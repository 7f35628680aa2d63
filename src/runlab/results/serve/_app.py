"""The server: routing and its guards (Host check, token, GET only, security headers).

Every request goes through :meth:`Handler._guard` first:

1. **Host** (DNS rebinding): the ``Host`` header's name must be a loopback name
   (``127.0.0.1``, ``localhost``, ``[::1]``), with any port (an ``ssh -L`` tunnel's local
   port differs from the server's), or the ``--host`` given; anything else is 403.
2. **Token**: ``?token=`` or the cookie set after the first request that gave it, compared
   with :func:`hmac.compare_digest`; without it, 401. The token lives in memory only: it is
   printed once, never written to disk and never logged (the server logs no request).
3. **Method**: GET and HEAD; any other is 405 (the dashboard only reads).

Every response carries a Content-Security-Policy (scripts from the server only, none
inline), ``X-Content-Type-Options: nosniff``, ``Referrer-Policy: no-referrer`` and
``Cache-Control: no-store``.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import re
import secrets
import socket
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson

from runlab.results.query import QueryError
from runlab.results.reader import NoSuchRun
from runlab.results.serve._data import RunTable, new_rows, run_record, runs_json
from runlab.results.serve._pages import curves_page, message_page, run_page, runs_page

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
_RUN_PATH = re.compile(r"/run/([1-9][0-9]{0,17})\Z")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str | None:
    """The name in a ``Host`` header (``[::1]:8765`` -> ``::1``), lower-cased; None if
    it is not one."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        rest = header[end + 1 :]
        if end < 0 or (rest and not re.fullmatch(r":[0-9]{1,5}", rest)):
            return None
        return header[1:end]
    name, _, port = header.partition(":")
    if not name or (port and not port.isdigit()) or header.count(":") > 1:
        return None
    return name


def plotly_js() -> bytes:
    """plotly.js as the installed ``plotly`` package bundles it (no network needed)."""
    folder = resources.files("plotly").joinpath("package_data", "plotly.min.js")
    return folder.read_bytes()


def static_file(name: str) -> bytes | None:
    """One of the dashboard's own files in ``static/`` (None if there is none)."""
    if not re.fullmatch(r"[a-z]+\.(js|css)", name):
        return None
    try:
        return resources.files("runlab.results.serve").joinpath("static", name).read_bytes()
    except (FileNotFoundError, OSError):
        return None


class Server(ThreadingHTTPServer):
    """The dashboard of one logs directory: its token, the names it answers to, its data."""

    daemon_threads = True

    def __init__(self, logs: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, port), Handler)
        self.logs = Path(logs)
        self.token = secrets.token_urlsafe(32)
        self.table = RunTable(self.logs)
        self.host = host
        self.port = int(self.server_address[1])
        self.names = {host.lower().strip("[]")} - WILDCARDS
        if host in WILDCARDS:  # every interface: this machine's own names too
            self.names |= {socket.gethostname().lower(), socket.getfqdn().lower()}
        self.cookie = f"runlab_token_{self.port}"
        self._plotly: bytes | None = None

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away or stayed silent is no error; anything else is told in
        one line on stderr (never the request line: it may hold the token)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        print(f"runlab serve: a request failed: {type(exc).__name__}", file=sys.stderr)

    @property
    def url(self) -> str:
        """The address to open, with the token."""
        shown = self.host if self.host not in WILDCARDS else socket.gethostname()
        shown = f"[{shown}]" if ":" in shown else shown
        return f"http://{shown}:{self.port}/?token={self.token}"

    def allowed_host(self, header: str | None) -> bool:
        name = host_name(header or "")
        return name is not None and (is_loopback(name) or name in self.names)

    def plotly(self) -> bytes:
        if self._plotly is None:
            self._plotly = plotly_js()
        return self._plotly


def dumps(data: Any) -> bytes:
    """``data`` as JSON, whatever a hand-edited file put in it: a value JSON cannot hold
    (bytes, a set, a date from YAML) as its text, an integer beyond 64 bits as a float
    (the browser's numbers are floats), a key that is not a string as its text."""
    try:
        return orjson.dumps(data, default=str)
    except TypeError:
        return orjson.dumps(_plain(data), default=str)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**64:
        try:
            return float(value)
        except OverflowError:  # beyond a float too
            return str(value)
    return value


class Handler(BaseHTTPRequestHandler):
    """One request: guarded, then routed to a page, a JSON endpoint or a static file."""

    server: Server
    server_version = "runlab-serve"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body in two writes: no 40 ms delayed ACK
    # A connection silent this long is closed: a client that opens sockets and sends
    # nothing (or half a request) cannot hold the server's threads for ever.
    timeout = 60.0
    close_connection: bool  # http.server's own: set by each request
    want_body: bool = True  # not for HEAD
    set_cookie: bool = False  # the request gave the token in its query: set the cookie
    sent: bool = False  # this request's answer has begun

    def log_message(self, format: str, *args: Any) -> None:
        """Nothing is logged: a request line would hold the token."""

    def __getattr__(self, name: str) -> Any:
        if name.startswith("do_"):  # any method but GET and HEAD: 405
            return self._not_allowed
        raise AttributeError(name)

    def do_GET(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    def _not_allowed(self) -> None:
        self.close_connection = True  # its body, if any, is not read
        if self._guard():
            self._send(405, b"method not allowed: this dashboard only reads\n", "text/plain",
                       extra={"Allow": "GET, HEAD"})  # fmt: skip

    # ------------------------------------------------------------ guards
    def _guard(self) -> bool:
        """Whether the request may go on (if not, its answer is sent)."""
        self.want_body = self.command != "HEAD"
        if not self.server.allowed_host(self.headers.get("Host")):
            self._send(403, b"forbidden: unknown Host (see runlab serve --help)\n", "text/plain")
            return False
        given = parse_qs(urlsplit(self.path).query).get("token", [""])[0]
        expected = self.server.token.encode()
        if given and hmac.compare_digest(given.encode(), expected):
            self.set_cookie = True
            return True
        if hmac.compare_digest(self._cookie().encode(), expected):
            return True
        self._send(401, b"unauthorized: open the URL runlab serve printed (with ?token=)\n",
                   "text/plain")  # fmt: skip
        return False

    def _cookie(self) -> str:
        for part in (self.headers.get("Cookie") or "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.server.cookie:
                return value
        return ""

    # ------------------------------------------------------------ routes
    def _handle(self) -> None:
        self.sent = False
        if not self._guard():
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        try:
            self._route(url.path, query)
        except ConnectionError:  # the browser went away (a reload, a closed tab)
            self.close_connection = True
        except Exception as exc:  # one short line, never a traceback to the browser
            if self.sent:  # the answer had begun: cut it short rather than add a second
                self.close_connection = True
                return
            line = f"internal error: {type(exc).__name__}"
            with contextlib.suppress(ConnectionError):
                self._send(500, line.encode() + b"\n", "text/plain")

    def _route(self, path: str, query: dict[str, str]) -> None:
        where = query.get("where", "").strip() or None
        if path in ("/", "/curves"):
            self._page(path, where or "")
        elif path == "/api/runs":
            self._json(lambda: runs_json(self.server.table, where, query.get("metric")))
        elif path == "/api/curves":
            since = _since(query.get("since", ""))
            self._json(lambda: new_rows(self.server.table, where, since))
        elif (match := _RUN_PATH.match(path)) is not None:
            self._run(int(match[1]))
        elif path.startswith("/static/"):
            self._static(path.removeprefix("/static/"))
        else:
            page = message_page("not found", f"no page {path}")
            self._send(404, page.encode(), "text/html")

    def _page(self, path: str, where: str) -> None:
        error = None
        if where:
            try:
                with self.server.table.lock:
                    self.server.table.refresh()
                    self.server.table.matching(where)
            except QueryError as exc:
                error = f"invalid query: {exc.line()}"
        logs = str(self.server.logs)
        make = runs_page if path == "/" else curves_page
        self._send(400 if error else 200, make(logs, where, error).encode(), "text/html")

    def _json(self, make: Any) -> None:
        """The JSON ``make()`` returns, made under the table's lock (one refresh at a time),
        sent after it."""
        try:
            with self.server.table.lock:
                data, status = make(), 200
        except QueryError as exc:
            data, status = {"error": f"invalid query: {exc.line()}"}, 400
        self._send(status, dumps(data), "application/json")

    def _run(self, run_id: int) -> None:
        try:
            record = run_record(self.server.logs, run_id)
        except NoSuchRun:
            page = message_page("no such run", f"no run {run_id} in {self.server.logs}")
            self._send(404, page.encode(), "text/html")
            return
        self._send(200, run_page(record).encode(), "text/html")

    def _static(self, name: str) -> None:
        data = self.server.plotly() if name == "plotly.min.js" else static_file(name)
        if data is None:
            self._send(404, b"not found\n", "text/plain")
            return
        self._send(200, data, STATIC_TYPES[Path(name).suffix])

    def _send(
        self, status: int, body: bytes, kind: str, extra: dict[str, str] | None = None
    ) -> None:
        if ";" not in kind:
            kind += "; charset=utf-8"
        self.sent = True
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        for name, value in {**HEADERS, **(extra or {})}.items():
            self.send_header(name, value)
        if self.set_cookie:
            self.send_header(
                "Set-Cookie",
                f"{self.server.cookie}={self.server.token}; HttpOnly; SameSite=Strict; Path=/",
            )
        self.end_headers()
        if self.want_body:
            self.wfile.write(body)


def _since(text: str) -> dict[str, dict[str, list[int]]]:
    """The offsets the browser sent (``{run: {file: [offset, inode]}}``); {} if damaged."""
    if not text:
        return {}
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(run): {str(f): list(m) for f, m in files.items() if isinstance(m, list)}
        for run, files in data.items()
        if isinstance(files, dict)
    }
