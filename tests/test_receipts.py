"""The receipt state machine: forward only, counted in the same step, batch by batch."""

from __future__ import annotations

import pytest

from dispatcher.keys import Keys
from dispatcher.receipts import NEXT, Change, NewReceipt, ReceiptBook


@pytest.fixture
def book(redis, prefix):
    return ReceiptBook(redis, Keys(prefix))


async def _three(book: ReceiptBook) -> None:
    await book.create("a1", [NewReceipt(n, "sms", f"+8613800000{n:03d}", f"p{n}", "名", "420116001001")
                             for n in range(3)], now=1.0)


async def test_create_is_idempotent_and_counts(book):
    await _three(book)
    again = await book.create("a1", [NewReceipt(0, "sms", "+86", "p0", "名", "x")], now=2.0)
    assert again == [0]  # still queued and unattempted: queued again, not created again
    per_channel, totals = await book.counts("a1")
    assert totals == {"queued": 3} and per_channel == {"sms": {"queued": 3}}


async def test_late_or_repeated_changes_never_move_backwards(book):
    await _three(book)
    assert [c.number for c in await book.begin("a1", [(0, 0)], now=2.0)] == [0]
    assert await book.apply("a1", [Change(0, "delivered", {"p": "SM1"})], now=3.0) == [True]
    # a late 'sent' callback and a repeated 'delivered' arrive after 'delivered'
    assert await book.apply("a1", [Change(0, "sent", {}), Change(0, "failed", {"e": "x"})], now=4.0) == [False, False]
    receipt = await book.get("a1", 0)
    assert receipt["s"] == "delivered" and receipt["p"] == "SM1"
    assert [h[0] for h in receipt["h"]] == ["queued", "sending", "delivered"]
    _, totals = await book.counts("a1")
    assert totals == {"queued": 2, "delivered": 1}


async def test_every_refused_pair_is_refused(book):
    """Walk each state, then try every state that must not follow it."""
    states = list(NEXT)
    for i, start in enumerate(states):
        alert = f"walk{i}"
        await book.create(alert, [NewReceipt(0, "sms", "+86", "p", "n", "r")], now=1.0)
        path = {"queued": [], "sending": ["sending"], "sent": ["sent"], "delivered": ["delivered"],
                "acknowledged": ["acknowledged"], "failed": ["failed"], "undeliverable": ["undeliverable"],
                "cancelled": ["cancelled"], "expired": ["expired"]}[start]
        if start == "sending":
            await book.begin(alert, [(0, 0)], now=1.5)
        for state in path:
            if state != "sending":
                assert await book.apply(alert, [Change(0, state, {})], now=2.0) == [True], (start, state)
        for target in states:
            if target == start or target in NEXT[start]:
                continue
            assert await book.apply(alert, [Change(0, target, {})], now=3.0) == [False], (start, target)
        assert (await book.get(alert, 0))["s"] == start


async def test_duplicate_delivery_messages_send_once(book):
    await _three(book)
    first = await book.begin("a1", [(1, 0)], now=2.0)
    second = await book.begin("a1", [(1, 0)], now=2.1)  # the same message queued twice
    assert len(first) == 1 and second == []


async def test_reclaimed_message_of_a_dead_sender_is_sent_again(book):
    await _three(book)
    assert len(await book.begin("a1", [(2, 0)], now=2.0)) == 1
    again = await book.begin("a1", [(2, 0)], now=9.0, reclaimed=True)
    assert [c.number for c in again] == [2]
    assert again[0].attempt == 1  # the same attempt, not a new one


async def test_cancelled_alert_ends_open_receipts(book, redis, prefix):
    await _three(book)
    await book.mark("a1", 2.0, cancelled="a2", state="cancelled")
    assert await book.begin("a1", [(0, 0), (1, 0)], now=3.0) == []
    assert await book.sweep("a1", "cancelled", "cancelled by a2", 0, 2, now=3.0) == 1
    _, totals = await book.counts("a1")
    assert totals == {"cancelled": 3}


async def test_alert_settles_when_no_receipt_is_open(book):
    await _three(book)
    await book.mark("a1", 1.0, state="dispatching", planned=1)
    begun = await book.begin("a1", [(0, 0), (1, 0), (2, 0)], now=2.0)
    assert len(begun) == 3
    await book.apply("a1", [Change(0, "delivered", {}), Change(1, "sent", {})], now=3.0)
    assert (await book.mark("a1", 3.0)) == "dispatching"
    await book.apply("a1", [Change(2, "failed", {"e": "21211: invalid number"})], now=4.0)
    assert (await book.mark("a1", 4.0)) == "settled"


def test_receipt_numbers_round_trip_as_ranges():
    from dispatcher.streams import decode_numbers, encode_numbers

    numbers = [0, 1, 2, 5, 7, 8, 100]
    assert encode_numbers(numbers) == "0-2,5,7-8,100"
    assert decode_numbers(encode_numbers(numbers)) == numbers
    assert decode_numbers("") == []
