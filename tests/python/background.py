"""An HTTP server on a free loopback port, served from a daemon thread for the length of a
`with` block: the shape every in-process fake of the tests shares."""

import threading
from http.server import ThreadingHTTPServer


class BackgroundServer:
    def serve(self, handler):
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
