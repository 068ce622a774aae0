"""Live feeds: the pub/sub bus that fans predictions out (``bus``) and the WebSocket session
that forwards a stream's feed and answers the events its client sends (``session``)."""
