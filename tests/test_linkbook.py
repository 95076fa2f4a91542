"""The link booking rule (splitpipe/linkbook.py): ACKs go between the data on their channel."""

from __future__ import annotations

import pytest

from splitpipe.linkbook import LinkBook
from splitpipe.network import TCP, Framing, LinkSpec

#: 1 payload byte takes 1 s; the ACKs of 1 byte come back as 0.5 s on a link of this speed.
LINK = LinkSpec(1.0, 0.0)
ACKING = LinkSpec(1.0, 0.0, Framing(mss=1, header=0, ack=1, per_ack=2))


def test_an_ack_made_while_data_is_on_the_wire_pushes_it_and_what_is_queued_behind() -> None:
    book: LinkBook[str] = LinkBook()
    first, second = book.book("up", LINK, 4, now=0.0), book.book("up", LINK, 4, now=0.0)
    assert (first.begin, first.end, second.begin, second.end) == (0.0, 4.0, 4.0, 8.0)
    book.book_acks("up", ACKING, 2, at=1.0)            # 1 s of ACKs, made 1 s into the first
    assert (first.begin, first.end, second.begin, second.end) == (0.0, 5.0, 5.0, 9.0)
    book.book_acks("up", ACKING, 2, at=6.0)            # into the second: the first is done
    assert (first.end, second.begin, second.end) == (5.0, 5.0, 10.0)


def test_an_ack_in_a_gap_takes_its_turn_and_pushes_the_next_only_as_far_as_it_overlaps() -> None:
    book: LinkBook[str] = LinkBook()
    first = book.book("up", LINK, 2, now=0.0)          # [0, 2]
    later = book.book("up", LINK, 2, now=3.0)          # [3, 5]: idle from 2 to 3
    book.book_acks("up", ACKING, 1, at=2.0)            # 0.5 s in the gap: nothing moves
    assert (first.end, later.begin, later.end) == (2.0, 3.0, 5.0)
    book.book_acks("up", ACKING, 2, at=2.0)            # 1 s behind that ACK: [2.5, 3.5]
    assert (later.begin, later.end) == (3.5, 5.5)


def test_data_sent_before_an_ack_is_made_still_makes_room_for_it() -> None:
    # the ACK is booked first (its data arrives at 3) and the data is sent at 0: it goes between
    book: LinkBook[str] = LinkBook()
    book.book_acks("up", ACKING, 2, at=3.0)
    data = book.book("up", LINK, 5, now=0.0)
    assert (data.begin, data.end) == (0.0, 6.0)


def test_acks_made_on_an_idle_channel_hold_it_before_the_next_transfer() -> None:
    book: LinkBook[str] = LinkBook()
    book.book_acks("up", ACKING, 4, at=1.0)            # [1, 3]
    data = book.book("up", LINK, 1, now=2.0)
    assert (data.begin, data.end) == (3.0, 4.0)


def test_tcp_acks_of_a_gradient_coming_down_lengthen_an_upload_by_their_time() -> None:
    # PipeLearn's case (docs/links.md): 256 KB up at 10 Mbit/s while 256 KB come down at 25
    up, down = LinkSpec.mbit(10, 0), LinkSpec.mbit(25, 0)
    book: LinkBook[str] = LinkBook()
    upload = book.book("up", up, 262144, now=0.0)
    alone = upload.end
    gradient = book.book("down", down, 262144, now=0.01)
    book.book_acks("up", up, 262144, at=gradient.end)
    assert upload.end - alone == pytest.approx(262144 * 66 / (2 * 1448) / 1.25e6)   # 4.8 ms
    assert upload.end - alone == pytest.approx(up.ack_s(262144)) and TCP.per_ack == 2
