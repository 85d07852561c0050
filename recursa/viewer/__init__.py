"""The trajectory viewer: a static page and a tiny server on 127.0.0.1.

``serve(path)`` opens a trace file (or a directory of them) in the browser and
blocks until Ctrl-C. The page rebuilds the recursion tree from the events,
shows each node's turns, code cells and sub-calls, a timeline of every model
call, and totals by model and by depth. Nothing is fetched from the network:
the page, its script and its styles ship in this package.
"""

from __future__ import annotations

import sys
import threading
import webbrowser
from pathlib import Path

from .server import TraceServer, make_server

__all__ = ["TraceServer", "make_server", "serve"]


def serve(path: Path, *, port: int = 0, open_browser: bool = True) -> None:
    """Serve the viewer for ``path`` on 127.0.0.1 until interrupted (Ctrl-C)."""
    server, url = make_server(Path(path), port)
    try:
        print(f"recursa viewer: {url}  (Ctrl-C to stop)", file=sys.stderr, flush=True)
        if open_browser:
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
