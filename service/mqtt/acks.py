"""Acknowledgements in arrival order, each sent only once its message is done.

MQTT 5 §4.6 asks a receiver to send PUBACKs in the order the PUBLISH packets came; a message is
done once its events' states are committed and its answers published (or it was refused). A
finished message behind an unfinished one waits, so the broker's in-flight count (bounded by
our Receive Maximum) also bounds how far processing may run ahead.

A window belongs to one connection: packet ids mean nothing on the next one, so a closed
window sends nothing more (the broker redelivers those messages, and they are duplicates).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable


class AckSlot:
    """One received message's place in the window."""

    __slots__ = ("done", "mid", "qos", "window")

    def __init__(self, window: AckWindow, mid: int, qos: int) -> None:
        self.window = window
        self.mid = mid
        self.qos = qos
        self.done = False

    def finish(self) -> None:
        self.window.finish(self)


class AckWindow:
    def __init__(self, send_ack: Callable[[int, int], object]) -> None:
        self._send_ack = send_ack
        self._slots: deque[AckSlot] = deque()
        self.closed = False

    def receive(self, mid: int, qos: int) -> AckSlot:
        slot = AckSlot(self, mid, qos)
        self._slots.append(slot)
        return slot

    def finish(self, slot: AckSlot) -> None:
        slot.done = True
        while self._slots and self._slots[0].done:
            head = self._slots.popleft()
            if head.qos > 0 and not self.closed:
                self._send_ack(head.mid, head.qos)

    def close(self) -> None:
        self.closed = True
        self._slots.clear()

    def __len__(self) -> int:
        """Messages received and not yet acknowledged."""
        return len(self._slots)
