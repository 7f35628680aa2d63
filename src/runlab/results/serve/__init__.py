"""``runlab serve``: a live, read-only dashboard of a logs directory, in the browser.

    >>> from runlab.results.serve import Server
    >>> server = Server("logs")            # 127.0.0.1, a free port, a new token
    >>> print(server.url)                   # http://127.0.0.1:PORT/?token=...
    >>> server.serve_forever()

Three pages: the runs (a table refreshed every second, filtered with the query language
of ``runlab ls --where``), the curves (Plotly, grown with only the rows logged since the
last poll) and one run's record (config, error, artifacts, the end of its job output).

Built on the standard library's :class:`http.server.ThreadingHTTPServer`: no new
dependency for a read-only, GET-only page that must start on any cluster login node.

The package, one job per module:

- ``_app``: the server, its guards (Host check, token, GET only, headers) and routes;
- ``_data``: what is shown, read incrementally (:class:`RunTable`, :func:`new_rows`);
- ``_pages``: the HTML, every value escaped; ``static/``: the script and the style.
"""

from __future__ import annotations

from runlab.results.serve._app import Server, host_name, is_loopback
from runlab.results.serve._data import MAX_CURVE_RUNS, Meter, RunTable, new_rows, runs_json

__all__ = [
    "MAX_CURVE_RUNS",
    "Meter",
    "RunTable",
    "Server",
    "host_name",
    "is_loopback",
    "new_rows",
    "runs_json",
]
