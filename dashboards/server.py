"""Serving the dashboard: in the foreground for ``twinloop dashboard``, or in a thread for
the demo and the tests (a real HTTP server on a real port, stopped cleanly)."""

from __future__ import annotations

import logging
import threading
from types import TracebackType

from dash import Dash
from werkzeug.serving import BaseWSGIServer, make_server

logger = logging.getLogger(__name__)


class DashboardServer:
    """``app`` served by a threaded WSGI server on ``host:port`` (port 0: a free one)."""

    def __init__(self, app: Dash, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._server: BaseWSGIServer = make_server(host, port, app.server, threaded=True)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    @property
    def url(self) -> str:
        host = self._server.host
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{self.port}"

    def serve_forever(self) -> None:
        """Serve in this thread until :meth:`stop` (or Ctrl-C)."""
        self._server.serve_forever()

    def request_stop(self) -> None:
        """Make :meth:`serve_forever` return (from another thread; waits until it has)."""
        self._server.shutdown()

    def start(self) -> DashboardServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="twinloop-dashboard", daemon=True
        )
        self._thread.start()
        logger.info("dashboard serving at %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving and close the port (waits for the thread)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10.0)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
