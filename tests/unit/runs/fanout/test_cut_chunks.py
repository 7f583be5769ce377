"""``cut_chunks``: the plan's chunks follow (customer id, subscription id) and never split a customer."""

from __future__ import annotations

from billing.runs.fanout.stages import cut_chunks


def test_chunks_follow_customer_then_subscription_order() -> None:
    keys = [("c2", "s9"), ("c1", "s5"), ("c3", "s1"), ("c1", "s2")]
    assert cut_chunks(keys, 2) == [["s2", "s5"], ["s9", "s1"]]


def test_a_customer_never_straddles_two_chunks() -> None:
    keys = [("c1", "a"), ("c2", "b"), ("c2", "c"), ("c2", "d"), ("c3", "e")]
    chunks = cut_chunks(keys, 2)
    assert chunks == [["a", "b", "c", "d"], ["e"]]
    owners = {sid: cid for cid, sid in keys}
    seen: dict[str, int] = {}
    for index, chunk in enumerate(chunks):
        for sid in chunk:
            assert seen.setdefault(owners[sid], index) == index


def test_every_subscription_lands_in_exactly_one_chunk() -> None:
    keys = [(f"c{n // 3:03d}", f"s{n:04d}") for n in range(1000)]
    chunks = cut_chunks(keys, 7)
    flat = [sid for chunk in chunks for sid in chunk]
    assert flat == sorted(sid for _, sid in keys)
    assert all(7 <= len(chunk) <= 9 for chunk in chunks[:-1])
    assert cut_chunks([], 5) == []
