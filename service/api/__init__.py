"""The HTTP and WebSocket API: routers, request parsing, response schemas, errors, auth and the
middleware around them. It turns requests into engine calls and engine results into answers."""
