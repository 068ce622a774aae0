"""Key and channel names: format, hash tags (one cluster slot per stream), validation."""

from __future__ import annotations

import pytest

from service.store.keys import hash_slot, live_channel, state_key


def test_formats() -> None:
    assert state_key("acme", "demo", "dev-1") == "liquid:s:acme:demo:{dev-1}"
    assert live_channel("acme", "dev-1") == "liquid:live:acme:{dev-1}"


def test_stream_ids_may_contain_colons_and_unicode() -> None:
    assert state_key("t", "m", "site:7/pump.3") == "liquid:s:t:m:{site:7/pump.3}"
    assert state_key("t", "m", "température") == "liquid:s:t:m:{température}"


def test_crc16_reference_values() -> None:
    # From the Redis Cluster specification: CRC16("123456789") = 0x31C3.
    assert hash_slot("123456789") == 0x31C3 % 16384
    assert hash_slot("{user1000}.following") == hash_slot("{user1000}.followers")
    assert hash_slot("foo{}{bar}") != hash_slot("bar")  # an empty tag: the whole key counts
    assert hash_slot("foo{{bar}}") == hash_slot("{bar")


@pytest.mark.parametrize("stream", ["dev-1", "a:b", "x" * 200, "日本"])
def test_every_name_of_a_stream_shares_one_slot(stream: str) -> None:
    slot = hash_slot(stream)
    assert hash_slot(state_key("tenant-a", "demo", stream)) == slot
    assert hash_slot(state_key("tenant-b", "other", stream)) == slot
    assert hash_slot(live_channel("tenant-a", stream)) == slot


def test_different_streams_spread_over_slots() -> None:
    slots = {hash_slot(state_key("t", "m", f"dev-{i}")) for i in range(200)}
    assert len(slots) > 150


@pytest.mark.parametrize("bad", ["", "a{b", "a}b", "a b", "a\tb", "a\nb"])
def test_bad_stream_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="stream id"):
        state_key("t", "m", bad)
    with pytest.raises(ValueError, match="stream id"):
        live_channel("t", bad)


@pytest.mark.parametrize("bad", ["", "a:b", "a{b", "a}b", "a b"])
def test_bad_tenant_and_model_names_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="tenant"):
        state_key(bad, "m", "s")
    with pytest.raises(ValueError, match="model name"):
        state_key("t", bad, "s")
    with pytest.raises(ValueError, match="tenant"):
        live_channel(bad, "s")


def test_tenant_and_model_cannot_alias() -> None:
    # Without the ':' rule, ("a:b", "c") and ("a", "b:c") would spell the same key.
    assert state_key("a", "b", "s") != state_key("b", "a", "s")
    with pytest.raises(ValueError):
        state_key("a:b", "c", "s")
