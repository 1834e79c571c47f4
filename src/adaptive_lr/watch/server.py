"""The Bokeh server behind `adaptive-lr watch`: one application at `/`, listening on 127.0.0.1 unless asked."""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Callable, Sequence
from functools import partial

from adaptive_lr.errors import UserError
from adaptive_lr.watch.runs import WatchedRun

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5006  # Bokeh's own default; MLflow's UI is on 5000, TensorBoard on 6006


class WatchError(UserError, ValueError):
    """`adaptive-lr watch` cannot serve as asked (a bad port, an address it cannot listen on)."""


def check_port(port: int) -> int:
    if not (isinstance(port, int) and 1 <= port <= 65535):
        raise WatchError(f"--port must be an integer in 1..65535, got {port!r}")
    return port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_origins(host: str, port: int) -> list[str]:
    """Pages that may open the server's websocket: the loopback names for a loopback address; any host on this
    port when the server was asked to listen on another interface (anyone who reaches it can steer the run)."""
    if is_loopback(host):
        return [f"127.0.0.1:{port}", f"localhost:{port}"]
    return [f"*:{port}"]


def serve(runs: Sequence[WatchedRun], host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
          poll_ms: int = 1000, out: Callable[[str], None] = print) -> None:
    """Serve the watch page until interrupted (Ctrl-C or SIGTERM). A port that is taken, or an address this
    machine cannot listen on, is a WatchError."""
    from bokeh.application import Application
    from bokeh.application.handlers.function import FunctionHandler
    from bokeh.server.server import Server

    from adaptive_lr.watch.page import build_document

    check_port(port)
    app = Application(FunctionHandler(partial(build_document, runs=runs, poll_ms=poll_ms)))
    try:
        server = Server({"/": app}, address=host, port=port, allow_websocket_origin=allowed_origins(host, port),
                        num_procs=1)
    except OSError as err:  # EADDRINUSE, EADDRNOTAVAIL, an unknown host name
        raise WatchError(f"cannot listen on {host}:{port}: {err.strerror or err}") from err
    server.start()
    shown = f"[{host}]" if ":" in host else host
    out(f"watching {', '.join(r.name for r in runs)} at http://{shown}:{port}/ (Ctrl-C to stop)")
    if not is_loopback(host):
        out(f"warning: listening on {host}: anyone who can reach it can change the runs' LR")
    sys.stdout.flush()
    try:
        server.io_loop.start()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
