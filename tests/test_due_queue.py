"""The controllers' shared scheduler (skystate/reconcile/due_queue.py), on a fake clock."""

from __future__ import annotations

import threading
import time

from skystate.reconcile.due_queue import DueQueue


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_keys_are_handed_out_when_due_once_at_a_time_and_requeued() -> None:
    clock = Clock()
    queue: DueQueue[str] = DueQueue(clock)
    assert queue.take_ready() == [] and queue.next_in() is None
    queue.due_now("a")
    queue.due_now("b")
    assert sorted(queue.take_ready()) == ["a", "b"]
    assert queue.is_busy("a") and queue.take_ready() == []
    queue.due_now("a")  # a request while it is being stepped: not handed out twice
    assert queue.take_ready() == [] and queue.next_in() is None  # busy keys do not count
    queue.done("a", 30.0)  # made due meanwhile: the earlier time (now) wins
    assert queue.take_ready() == ["a"]
    queue.done("a", 30.0)
    queue.done("b", 5.0)
    assert queue.next_in() == 5.0 and queue.take_ready() == []
    clock.now += 5.0
    assert queue.take_ready() == ["b"] and queue.next_in() == 25.0
    queue.done("b", None)  # not requeued: only a new due_now brings it back
    queue.forget("a")
    clock.now += 100.0
    assert queue.take_ready() == [] and not queue.is_due("b")


def test_wait_ends_at_an_event_or_the_cap() -> None:
    queue: DueQueue[int] = DueQueue()
    started = time.monotonic()
    queue.wait(0.05)
    assert time.monotonic() - started >= 0.04
    threading.Timer(0.1, queue.due_now, args=(1,)).start()
    started = time.monotonic()
    queue.wait(60.0)  # woken by the new key, not the cap
    assert time.monotonic() - started < 30.0 and queue.take_ready() == [1]
