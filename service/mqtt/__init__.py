"""MQTT ingestion: sensor events over MQTT (the HTTP event JSON or SenML), predictions and
errors published back, exactly once per event id, in order per stream.

Modules, one concept each:

- ``settings``: the ``LIQUID_MQTT_*`` options (a mixin of ``service.settings.Settings``) and
  the connection config derived from them
- ``topics``: topic templates (subscription filter, match, format)
- ``shard``: static sharding of streams over replicas (``K/N``)
- ``senml``: RFC 8428 packs to events of a model's named features
- ``payload``: a message's payload to validated events, with their ids
- ``wire``: what clients share with the consumer (SenML content type, derived event ids),
  importable without the server
- ``acks``: acknowledgements in arrival order, after the state commit
- ``lanes``: per-stream ordered submission
- ``publisher``: predictions and errors published back
- ``metrics``: the ``liquid_mqtt_*`` series
- ``consumer``: the session that ties them together (started by the app's lifespan)
"""
