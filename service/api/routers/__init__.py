"""One router per resource: streams, multi-stream events, models, health, live feed, page."""
