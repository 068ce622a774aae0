"""The API's routers: streams, events, models, health (and metrics), live WebSocket."""
