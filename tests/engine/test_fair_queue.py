"""The local queue's turn order and the positions it reports for waiting jobs."""

from __future__ import annotations

import random

from engine.fair_queue import FairQueue
from engine.rate_limit import SlidingWindowLimiter


def drain(queue: FairQueue) -> list[int]:
    served = []
    while (job := queue.pop()) is not None:
        served.append(job)
    return served


def test_a_newcomer_goes_before_a_user_already_served() -> None:
    queue = FairQueue()
    for job in range(1, 11):
        queue.push("alice", job)
    assert [queue.pop(), queue.pop()] == [1, 2]  # alice's backlog starts draining
    queue.push("bob", 11)
    assert queue.position(11) == 1
    assert drain(queue) == [11, 3, 4, 5, 6, 7, 8, 9, 10]


def test_users_take_turns_and_keep_their_own_order() -> None:
    queue = FairQueue()
    for job, user in enumerate("aaabbc", start=1):
        queue.push(user, job)
    assert drain(queue) == [1, 4, 6, 2, 5, 3]


def test_a_refused_job_goes_first_among_its_users_jobs() -> None:
    queue = FairQueue()
    queue.push("a", 1)
    queue.push("a", 2)
    assert queue.pop() == 1
    queue.push("a", 1, front=True)
    assert drain(queue) == [1, 2]


def test_removed_jobs_are_not_served_and_have_no_position() -> None:
    queue = FairQueue()
    for job, user in enumerate("abab", start=1):
        queue.push(user, job)
    assert queue.remove(2)
    assert not queue.remove(2)
    assert queue.position(2) is None
    assert drain(queue) == [1, 4, 3]


def test_positions_match_the_order_jobs_are_actually_served() -> None:
    rng = random.Random(7)
    for _ in range(200):
        queue = FairQueue()
        next_id = 1
        for _ in range(rng.randint(1, 40)):
            action = rng.random()
            if action < 0.6:
                queue.push(rng.choice("abcde"), next_id)
                next_id += 1
            elif action < 0.85:
                queue.pop()
            elif len(queue):
                queue.remove(rng.choice(queue.order()))
        predicted = {job: queue.position(job) for job in queue.order()}
        served = drain(queue)
        assert {job: i + 1 for i, job in enumerate(served)} == predicted


def test_sliding_window_allows_n_per_window() -> None:
    now = [100.0]
    limiter = SlidingWindowLimiter(2, 60.0, clock=lambda: now[0])
    limiter.record()
    now[0] += 10
    limiter.record()
    assert limiter.wait_time() == 50.0  # the first event leaves the window at t=160
    now[0] = 160.0
    assert limiter.wait_time() == 0.0


def test_sliding_window_seeded_from_earlier_submits() -> None:
    now = [1000.0]
    limiter = SlidingWindowLimiter(2, 60.0, clock=lambda: now[0])
    limiter.seed([30.0, 5.0, 600.0])  # the 600 s old one is outside the window
    assert limiter.wait_time() == 30.0
