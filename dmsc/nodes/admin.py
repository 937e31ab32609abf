"""The admin socket of a node program: one JSON request per line, one JSON reply per line.

    {"query": "fib"}  ->  {"ok": true, "result": [...]}
    {"query": "nope"} ->  {"ok": false, "error": "unknown query 'nope'; known: [...]"}

Mininet hosts share the file system, so the CLI and the tests reach every node's socket from
the root namespace without entering the node's network namespace.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dmsc.errors import DmscError

Handler = Callable[[dict], Any]
MAX_REQUEST = 65536


async def serve_admin(path: str, handlers: dict[str, Handler]) -> asyncio.AbstractServer:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if os.path.exists(path):
        os.unlink(path)  # a stale socket of a crashed run

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(json.dumps(answer(line, handlers), default=str).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass  # a client that vanished or sent a huge line; the node carries on
        finally:
            writer.close()

    return await asyncio.start_unix_server(client, path, limit=MAX_REQUEST)


def answer(line: bytes, handlers: dict[str, Handler]) -> dict:
    try:
        request = json.loads(line)
    except ValueError as error:
        return {"ok": False, "error": f"request is not JSON: {error}"}
    query = request.get("query") if isinstance(request, dict) else None
    handler = handlers.get(query) if isinstance(query, str) else None
    if handler is None:
        return {"ok": False, "error": f"unknown query {query!r}; known: {sorted(handlers)}"}
    try:
        return {"ok": True, "result": handler(request)}
    except (DmscError, KeyError, ValueError, TypeError) as error:
        return {"ok": False, "error": f"{query}: {error}"}


def ask(path: str, query: str, timeout: float = 5.0, **arguments) -> Any:
    """Blocking client: one query to a node's admin socket; DmscError when it fails."""
    request = json.dumps({"query": query, **arguments}).encode() + b"\n"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(path)
            sock.sendall(request)
            reply = _read_line(sock)
    except OSError as error:
        raise DmscError(f"node admin socket {path}: {error.strerror or error}") from None
    response = json.loads(reply)
    if not response.get("ok"):
        raise DmscError(response.get("error", "request failed"))
    return response["result"]


def _read_line(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks)
