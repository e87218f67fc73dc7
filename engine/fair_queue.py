"""A local queue that serves users in turn: one user's 20 jobs wait behind another's 1.

The next job always belongs to the waiting user who was served least recently (a user never
served comes first), and each user's own jobs stay FIFO. So a user who arrives while someone
else's backlog drains is served at the very next free slot, not after another of theirs.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, deque
from collections.abc import Hashable

# How many users' "last served" marks to remember. A user forgotten after this many others
# were served counts as never served, which only moves them ahead of more recent ones.
_MEMORY = 10_000


class FairQueue:
    def __init__(self) -> None:
        self._waiting: dict[Hashable, deque[int]] = {}
        self._owner: dict[int, Hashable] = {}
        self._arrival: dict[Hashable, int] = {}  # tie-break among users never served
        # User -> serve number, oldest first, so trimming drops the longest-ago.
        self._last_served: OrderedDict[Hashable, int] = OrderedDict()
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._owner)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._owner

    def push(self, user: Hashable, job_id: int, *, front: bool = False) -> None:
        """Add a job; `front` puts it first among its user's jobs (a refused submit)."""
        if job_id in self._owner:
            return
        if user not in self._waiting:
            self._waiting[user] = deque()
            self._arrival[user] = next(self._counter)
        jobs = self._waiting[user]
        if front:
            jobs.appendleft(job_id)
        else:
            jobs.append(job_id)
        self._owner[job_id] = user

    def pop(self) -> int | None:
        """The next job: the first job of the user whose turn it is."""
        item = self.pop_item()
        return None if item is None else item[1]

    def pop_item(self) -> tuple[Hashable, int] | None:
        """`pop`, with the user the job belongs to (to push it back if need be)."""
        if not self._waiting:
            return None
        user = min(self._waiting, key=self._turn_key)
        job_id = self._waiting[user].popleft()
        del self._owner[job_id]
        if not self._waiting[user]:
            self._drop_user(user)
        self._last_served[user] = next(self._counter)
        self._last_served.move_to_end(user)
        while len(self._last_served) > _MEMORY:
            self._last_served.popitem(last=False)
        return user, job_id

    def remove(self, job_id: int) -> bool:
        user = self._owner.pop(job_id, None)
        if user is None:
            return False
        jobs = self._waiting[user]
        jobs.remove(job_id)
        if not jobs:
            self._drop_user(user)
        return True

    def position(self, job_id: int) -> int | None:
        """1 = next to be submitted. Serving goes in rounds over the users in turn order, round
        k taking every user's k-th job, so a user's i-th job (0-based) comes after min(n, i+1)
        jobs of each of the n-job users ahead in turn order and min(n, i) of each behind."""
        user = self._owner.get(job_id)
        if user is None:
            return None
        index = self._waiting[user].index(job_id)
        ahead = 0
        seen_owner = False
        for other in self._turn_order():
            if other == user:
                seen_owner = True
                continue
            ahead += min(len(self._waiting[other]), index if seen_owner else index + 1)
        return ahead + index + 1

    def order(self) -> list[int]:
        """Every waiting job in the order it would be served (for tests and status views)."""
        return sorted(self._owner, key=lambda j: self.position(j) or 0)

    def _turn_key(self, user: Hashable) -> tuple[int, int]:
        return self._last_served.get(user, -1), self._arrival[user]

    def _turn_order(self) -> list[Hashable]:
        return sorted(self._waiting, key=self._turn_key)

    def _drop_user(self, user: Hashable) -> None:
        del self._waiting[user]
        del self._arrival[user]
