"""The local HTTP server the download tests share: byte ranges (206, 416), and dropped connections.

Each test module's handler decides what a path serves (its URL layout, the files, the faults it
plants: a truncated file, corrupt bytes, a wrong checksum); :func:`send_ranged` sends the bytes
the way a real server does, honouring ``Range: bytes=N-`` and, for a path listed in
``server.drops``, sending half of the body and then dropping the connection (a resume test).
"""
from __future__ import annotations

import http.server
import re


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def send_ranged(handler, data: bytes, key, etag: str | None = None) -> None:
    """Answer ``handler``'s GET with ``data`` (status, range and length headers, then the body)."""
    rng = handler.headers.get("Range")
    start = int(re.match(r"bytes=(\d+)-", rng).group(1)) if rng else 0
    if rng and start >= len(data):
        handler.send_response(416)
        handler.send_header("Content-Range", f"bytes */{len(data)}")
        handler.send_header("Content-Length", "0")
        handler.end_headers()
        return
    handler.send_response(206 if rng else 200)
    if rng:
        handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    body = data[start:]
    handler.send_header("Content-Length", str(len(body)))
    if etag is not None:
        handler.send_header("ETag", f'"{etag}"')
    handler.end_headers()
    drops = handler.server.drops
    if drops.get(key, 0) > 0:  # send half, then drop the connection
        drops[key] -= 1
        handler.wfile.write(body[: len(body) // 2])
        handler.wfile.flush()
        handler.close_connection = True
        handler.connection.shutdown(2)
        return
    handler.wfile.write(body)
