"""What a port speaks, asked once when a handshake fails the way a wrong scheme does.

A ``redis://`` client at a TLS port sees its handshake reset without a reply; a
``rediss://`` client at a plain port sees its TLS handshake time out (the server
waits for the end of a line that never comes). Both look like network faults, yet
waiting cannot fix them. One extra connection, made only after such a failure,
tells them apart: a TLS handshake that completes (certificate not checked), or a
RESP reply to a plain ``PING``.
"""

from __future__ import annotations

import asyncio
import ssl
from contextlib import suppress

import anyio

__all__ = ("PLAIN_AT_TLS_PORT", "TLS_AT_PLAIN_PORT", "mismatch")

PLAIN_AT_TLS_PORT = "this port speaks TLS: use a rediss:// URL (and `ssl_ca_certs`)"
TLS_AT_PLAIN_PORT = "this port does not speak TLS: use a redis:// URL"


async def mismatch(host: str, port: int, *, tls: bool, timeout: float) -> str | None:
    """Say what is wrong with the scheme, or None when the port speaks the one used
    (or does not answer within ``timeout``)."""
    with suppress(OSError, TimeoutError, ssl.SSLError), anyio.fail_after(timeout):
        if tls:
            return TLS_AT_PLAIN_PORT if await _answers_plain(host, port) else None
        return PLAIN_AT_TLS_PORT if await _completes_tls(host, port) else None
    return None


async def _answers_plain(host: str, port: int) -> bool:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"PING\r\n")
        first = await reader.read(1)
        return first in (b"+", b"-")
    finally:
        writer.close()


async def _completes_tls(host: str, port: int) -> bool:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection(host, port, ssl=context)
    writer.close()
    with suppress(OSError, ssl.SSLError):
        await writer.wait_closed()
    return True
