"""The chaos campaign: a real redis-server (AOF) and two ``liquid serve`` replicas under load from
many concurrent clients that retry with the same event ids, while faults are injected; an oracle
replays every acknowledged event offline and counts lost, doubled and corrupt ones.

``python -m tests.chaos`` (``make chaos``) runs every fault and writes ``docs/chaos.md``;
``test_chaos.py`` runs a short version (one fault, a few seconds) in the default suite.
"""
