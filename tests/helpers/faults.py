"""Failure injection for the store tests: a private Redis, write pauses, a slow link.

Never point these at the shared server: ``pause_writes`` refuses a server that was not
started by :class:`helpers.stores_support.RedisServer` (it checks the port against the ones
started here).

* :func:`private_redis_server`: a ``redis-server`` on a free port, no persistence, one
  per test session (fixture ``private_redis`` in the conftests). Tests use a unique
  key prefix each, so they share it without seeing each other's keys.
* :func:`pause_writes`: ``CLIENT PAUSE <ms> WRITE`` on such a server. Commands that may
  write (``EVALSHA`` included) block until the pause ends; reads still answer.
* :class:`SlowProxy`: a TCP proxy in front of a server that delays every chunk by
  ``delay`` seconds (settable while it runs), for "the store is slow" tests.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

from helpers.stores_support import RedisServer, free_port, require_redis_server_binary

_PRIVATE_PORTS: set[int] = set()


@contextlib.contextmanager
def private_redis_server() -> Iterator[RedisServer]:
    """Start a throwaway ``redis-server`` on a free port; stop it at the end."""
    server = RedisServer(require_redis_server_binary(), free_port())
    server.start()
    _PRIVATE_PORTS.add(server.port)
    try:
        yield server
    finally:
        _PRIVATE_PORTS.discard(server.port)
        server.stop()


def pause_writes(server: RedisServer, seconds: float) -> None:
    """Pause every write on a private server for ``seconds`` (returns at once)."""
    if server.port not in _PRIVATE_PORTS:
        raise RuntimeError("pause_writes only pauses a private server started by the tests")
    import redis

    client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2)
    try:
        client.execute_command("CLIENT", "PAUSE", str(round(seconds * 1000)), "WRITE")
    finally:
        client.close()


def unpause(server: RedisServer) -> None:
    """End a pause early (``CLIENT UNPAUSE``)."""
    if server.port not in _PRIVATE_PORTS:
        raise RuntimeError("unpause only touches a private server started by the tests")
    import redis

    client = redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=2)
    try:
        client.execute_command("CLIENT", "UNPAUSE")
    finally:
        client.close()


class SlowProxy:
    """A TCP proxy to ``127.0.0.1:<target_port>`` that delays each chunk by ``delay`` s.

    Both directions are delayed. ``url`` is a ``redis://`` URL through the proxy.
    Threads, not asyncio, so the delay does not depend on the test's event loop.
    """

    def __init__(self, target_port: int, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                chunk = source.recv(65536)
                if not chunk:
                    break
                if self.delay:
                    time.sleep(self.delay)
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
            self._sockets.clear()


__all__ = ["SlowProxy", "pause_writes", "private_redis_server", "unpause"]
