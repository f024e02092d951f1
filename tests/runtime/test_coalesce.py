"""runtime/coalesce.py: per key, the first event at once, later ones within the window as one
event with the highest value at its end; values never go down on the wire, the highest is
never lost, from the event loop and from loops that are gone by then."""

from __future__ import annotations

import asyncio
import threading
import time

from runtime.coalesce import Coalescer, Latest
from runtime.realtime import Outgoing


def outgoing(value: int, user_ids=(1, 2), *, key: str = "k", window: float = 0.2, skip: str | None = None):
    return Outgoing(
        user_ids=list(user_ids),
        text=f'{{"up_to_seq":{value}}}',
        skip_channel=skip,
        latest=Latest(key=key, value=value, window=window),
    )


class Published:
    """What a coalescer published, with the thread each batch went out on."""

    def __init__(self):
        self.events: list[Outgoing] = []
        self.threads: list[str] = []

    async def __call__(self, bucket: list[Outgoing]) -> None:
        self.threads.append(threading.current_thread().name)
        self.events.extend(bucket)

    def values(self) -> list[int]:
        return [o.latest.value for o in self.events]


def wait_for(condition, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


async def wait_for_async(condition, timeout: float = 5) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        await asyncio.sleep(0.01)


async def test_first_now_the_rest_as_one_event_with_the_highest_value_to_everyone():
    """Leading edge at once; three more within the window become one trailing event: the
    highest value's text, to the union of the held events' recipients (not the leading one's:
    user 1 had left by then), on the loop that held them."""
    published = Published()
    coalescer = Coalescer(published)
    assert coalescer.admit(outgoing(5, [1, 2])) is True
    assert coalescer.admit(outgoing(7, [2, 3])) is False
    assert coalescer.admit(outgoing(6, [4])) is False  # lower than the held 7: merged, 7 stays
    assert coalescer.admit(outgoing(5)) is False  # already sent
    await wait_for_async(lambda: published.events)
    [trailing] = published.events
    assert trailing.latest.value == 7 and trailing.text == '{"up_to_seq":7}'
    assert trailing.user_ids == [2, 3, 4]
    assert published.threads == [threading.current_thread().name]  # handed back to this loop


async def test_values_never_go_down_and_the_next_window_starts_at_the_trailing_send():
    """After the trailing 7: a 7 or lower is dropped; an 8 soon after is held for the next
    window (at most one event per window); after a quiet window the next value goes at once."""
    published = Published()
    coalescer = Coalescer(published)
    assert coalescer.admit(outgoing(5, window=0.1)) is True
    assert coalescer.admit(outgoing(7, window=0.1)) is False
    await wait_for_async(lambda: published.values() == [7])
    assert coalescer.admit(outgoing(7, window=0.1)) is False
    assert coalescer.admit(outgoing(3, window=0.1)) is False
    assert coalescer.admit(outgoing(8, window=0.1)) is False  # within the window the trailing 7 opened
    await wait_for_async(lambda: published.values() == [7, 8])
    await asyncio.sleep(0.25)  # a quiet window
    assert published.values() == [7, 8]
    assert coalescer.admit(outgoing(9, window=0.1)) is True
    assert coalescer.admit(outgoing(2, window=0.1)) is False  # remembered after its window closed


async def test_keys_are_independent_and_a_zero_window_sends_everything():
    published = Published()
    coalescer = Coalescer(published)
    assert coalescer.admit(outgoing(1, key="a")) is True
    assert coalescer.admit(outgoing(1, key="b")) is True
    assert all(coalescer.admit(outgoing(n, key="c", window=0)) for n in (3, 2, 1))


async def test_merged_event_skips_a_socket_only_when_every_held_event_did():
    published = Published()
    coalescer = Coalescer(published)
    assert coalescer.admit(outgoing(1, skip="s1")) is True
    assert coalescer.admit(outgoing(2, skip="s1")) is False
    assert coalescer.admit(outgoing(3, skip="s2")) is False
    await wait_for_async(lambda: published.events)
    assert published.events[0].skip_channel is None


def test_held_events_of_a_loop_that_is_gone_still_go_out():
    """Sync callers outside the server run on temporary loops (async_to_sync): the held value
    goes out from the timer thread after that loop has closed."""
    published = Published()
    coalescer = Coalescer(published)

    async def two_advances() -> tuple[bool, bool]:
        return coalescer.admit(outgoing(1)), coalescer.admit(outgoing(2))

    assert asyncio.run(two_advances()) == (True, False)
    wait_for(lambda: published.events)
    assert published.values() == [2]
    assert published.threads != [threading.current_thread().name]  # the timer's own loop


def test_advances_from_many_threads_end_with_the_highest_value_sent_last():
    """Eight threads, each on its own loop, admitting interleaved values: no value goes out
    twice, and the highest goes out, last."""
    published = Published()
    coalescer = Coalescer(published)

    def advance(values: range) -> None:
        async def run() -> None:
            for value in values:
                if coalescer.admit(outgoing(value, window=0.02)):
                    await published([outgoing(value)])  # what send_events does with an admitted one
                await asyncio.sleep(0.001)

        asyncio.run(run())

    threads = [threading.Thread(target=advance, args=(range(start, 400, 8),)) for start in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for(lambda: 399 in published.values())
    time.sleep(0.1)
    values = published.values()
    assert values[-1] == 399
    assert values.count(399) == 1
    assert len(values) == len(set(values))  # nothing sent twice
