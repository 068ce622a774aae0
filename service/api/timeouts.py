"""Socket timeouts that uvicorn does not have, as small subclasses of its protocols.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``) and pings WebSockets, but
a client that trickles its request headers one byte at a time (slowloris) holds its socket
forever, and a WebSocket send to a client that stopped reading waits forever for the socket to
become writable. So:

- :class:`HeaderTimeoutHttpProtocol` (httptools): a request's headers must be complete within
  ``header_timeout_s`` of its first byte (of the connection, for the first request); otherwise
  the server answers 408 and closes the socket. The body is bounded by the ASGI body limit
  (``service.api.middleware.BodyLimitMiddleware``), which answers 408 ``request_timeout``.
- :class:`SendTimeoutWebSocketProtocol` (websockets, sans-I/O): a send that cannot proceed
  within ``ws_send_timeout_s`` aborts the connection (the app sees the client leave), and so
  does a keepalive ping left unanswered (uvicorn closes that one gracefully, which waits for a
  reader that never comes).

:class:`ServerConfig` carries the two timeouts to the protocols (it is pickled to worker
processes with the rest of uvicorn's configuration); ``liquid serve`` passes
:data:`HTTP_PROTOCOL` and :data:`WS_PROTOCOL` as uvicorn's ``http`` and ``ws``.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

from service.api.errors import ErrorCode, error_body

HTTP_PROTOCOL = "service.api.timeouts:HeaderTimeoutHttpProtocol"
WS_PROTOCOL = "service.api.timeouts:SendTimeoutWebSocketProtocol"
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_WS_SEND_TIMEOUT_S = 10.0


def _request_timeout_response() -> bytes:
    body = json.dumps(
        error_body(ErrorCode.REQUEST_TIMEOUT, "the request headers did not arrive in time")
    ).encode()
    head = (
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


REQUEST_TIMEOUT_RESPONSE = _request_timeout_response()


class ServerConfig(uvicorn.Config):
    """uvicorn's configuration plus the timeouts of this module's protocols."""

    def __init__(
        self,
        app: Any,
        *,
        header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
        ws_send_timeout_s: float = DEFAULT_WS_SEND_TIMEOUT_S,
        **kwargs: Any,
    ) -> None:
        super().__init__(app, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.ws_send_timeout_s = ws_send_timeout_s


class HeaderTimeoutHttpProtocol(HttpToolsProtocol):
    """httptools HTTP/1.1 that closes a socket whose request headers take too long (408)."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.header_timeout_s = float(getattr(config, "header_timeout_s", DEFAULT_HEADER_TIMEOUT_S))
        self._header_timer: asyncio.TimerHandle | None = None

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.header_timeout_s, self._headers_timed_out
            )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_timed_out(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(REQUEST_TIMEOUT_RESPONSE)
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_header_timer()  # the first request's headers, counted from the connection

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm_header_timer()  # a later request's, counted from its first byte

    def on_headers_complete(self) -> None:
        self._cancel_header_timer()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)


class PeerStoppedReading(ClientDisconnected):
    """A WebSocket send gave up: the peer took nothing for ``ws_send_timeout_s`` (the socket is
    aborted). A ``ClientDisconnected`` to the server; the live session counts it as a send
    timeout."""


class SendTimeoutWebSocketProtocol(WebSocketsSansIOProtocol):
    """WebSockets whose sends give up (and abort the socket) when the peer stops reading."""

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.send_timeout_s = float(getattr(config, "ws_send_timeout_s", DEFAULT_WS_SEND_TIMEOUT_S))

    async def send(self, message: Any) -> None:
        if not self.writable.is_set():
            try:
                await asyncio.wait_for(self.writable.wait(), self.send_timeout_s)
            except asyncio.TimeoutError:
                self.logger.info("WebSocket peer stopped reading; connection aborted")
                self.transport.abort()
                raise PeerStoppedReading from None
        await super().send(message)

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self.transport.abort()  # the close frame cannot reach a peer that does not read
