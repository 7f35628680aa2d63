"""``runlab serve``: a live, read-only dashboard of a logs directory, in the browser.

    runlab serve [LOGS | --logs DIR] [--host 127.0.0.1] [--port PORT]

Prints the URL to open, with its access token (``http://127.0.0.1:PORT/?token=...``),
and serves until Ctrl-C (exit 130, one line). It binds to 127.0.0.1 unless ``--host``
says otherwise (with a warning: anyone who can reach that address and has the URL sees
the runs). From a cluster login node, through ``ssh -L 8765:127.0.0.1:PORT login-node``,
open ``http://127.0.0.1:8765/?token=...``. The server lives in
:mod:`runlab.results.serve` (imported when the command runs: it loads Polars).
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from runlab.cli._logs import logs_from
from runlab.cli._text import safe
from runlab.cli.results import _logs_argument, _run
from runlab.errors import UserError

EXIT_INTERRUPTED = 130


def configure_serve(parser: argparse.ArgumentParser) -> None:
    _logs_argument(parser)
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; another one "
        "lets others on the network reach the page: they still need the token)",
    )
    parser.add_argument(
        "--port", type=int, default=0, help="port to listen on (default: a free one)"
    )


def run_serve(args: argparse.Namespace) -> int:
    return _run(_serve, args)


def _serve(args: argparse.Namespace) -> int:
    from runlab.results.serve import Server, is_loopback  # polars: loaded when serving

    if not 0 <= args.port <= 65535:
        raise UserError(f"--port {args.port}: give a port from 1 to 65535 (or 0: a free one)")
    logs = logs_from(args).path
    try:
        server = Server(logs, host=args.host, port=args.port)
    except OSError as exc:
        raise UserError(
            f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}",
            todo="choose another --port, or leave it out for a free one",
        ) from None
    if not is_loopback(args.host):
        print(
            f"warning: listening on {safe(args.host)}, not only this machine: anyone who "
            "can reach it and has the URL sees the runs",
            file=sys.stderr,
        )
    print(f"runlab serve: {safe(logs)}", flush=True)
    print(f"open {server.url}", flush=True)
    print("Ctrl-C stops it", flush=True)
    return _forever(server)


def _forever(server: Any) -> int:
    restore = signal.getsignal(signal.SIGINT)
    if restore is signal.SIG_IGN:  # started in the background by a shell: Ctrl-C still stops
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        sys.stderr.write("runlab serve: stopped\n")
        return EXIT_INTERRUPTED
    finally:
        server.server_close()
        if restore is not None:
            signal.signal(signal.SIGINT, restore)
    return 0
