"""A loopback (127.0.0.1) HTTP server of archives, for the tests of fetching data (test_fetch,
test_colab): Range requests, cut connections and a request log."""
from __future__ import annotations

import io
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ArchiveServer(ThreadingHTTPServer):
    """Serves ``files`` (name -> bytes) with Range support; logs (path, Range header) of every request.

    ``cut_after``: the next response stops after that many body bytes and drops the connection.
    ``ignore_range``: answer every request with the whole file (200), as some servers do.
    """

    def __init__(self, files: dict[str, bytes]):
        super().__init__(("127.0.0.1", 0), RangeHandler)
        self.files = files
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: int | None = None
        self.ignore_range = False
        # a short poll interval: shutdown() waits for it, once per test
        self._thread = threading.Thread(target=self.serve_forever, args=(0.01,), daemon=True)
        self._thread.start()

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{name}"

    def stop(self) -> None:
        if self._thread.is_alive():
            self.shutdown()
            self._thread.join()
        self.server_close()


class RangeHandler(BaseHTTPRequestHandler):
    server: ArchiveServer

    def do_GET(self) -> None:
        ranged = self.headers.get("Range")
        self.server.requests.append((self.path, ranged))
        body = self.server.files.get(self.path.lstrip("/"))
        if body is None:
            self.send_error(404)
            return
        start = 0 if ranged is None or self.server.ignore_range else int(ranged.split("=")[1].rstrip("-"))
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        cut, self.server.cut_after = self.server.cut_after, None
        self.wfile.write(body[start:] if cut is None else body[start:start + cut])
        self.close_connection = cut is not None

    def log_message(self, *args) -> None:  # keep the test output clean
        pass


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # stored: a test can flip a data byte
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()
