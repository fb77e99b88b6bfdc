"""The render run's work queue: planned sample indices grouped by subject, pulled lazily in windows.

A worker keeps rendering one subject (its scene stays loaded) while that subject has samples queued,
then moves to the subject with the longest queue. Used by :class:`.scheduler.Scheduler`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import numpy as np

from .config import Job
from .planning import Subjects

WINDOW = 200_000
"""Samples planned ahead (grouped by subject) at a time: a job up to this size is grouped as a
whole; a larger one is pulled lazily in windows, so the driver's memory does not grow with the job."""


def _as_chunks(todo: Iterable) -> Iterator[np.ndarray]:
    """Accept a list of indices or an iterator of index arrays."""
    if isinstance(todo, (list, tuple, range)):
        if len(todo):
            yield np.asarray(todo, dtype=np.int64)
        return
    for arr in todo:
        yield np.asarray(arr, dtype=np.int64)


class WorkQueue:
    """Per-subject FIFO queues of sample indices.

    Args:
        job: the job (its subjects decide each index's queue).
        todo: sample indices: a list, or an iterator of ascending int arrays, pulled lazily.
        window: at most about this many indices are queued at a time.

    Attributes:
        queues: subject id -> deque of sample indices, in order of the subjects' first appearance.
        queued: indices queued over all subjects.
    """

    def __init__(self, job: Job, todo: Iterable, window: int = WINDOW):
        self.subjects = Subjects(job)
        self.queues: dict[str, deque] = {s.id: deque() for s in job.scans}
        self.queued = 0
        self.window = window
        self._source = _as_chunks(todo)
        self._exhausted = False
        self.refill()

    def refill(self) -> None:
        """Pull planned indices into the per-subject queues until :attr:`window` are queued."""
        while not self._exhausted and self.queued < self.window:
            arr = next(self._source, None)
            if arr is None:
                self._exhausted = True
                break
            scans = set(self.subjects.scan_ids)
            for name in [k for k, q in self.queues.items() if not q and k not in scans]:
                del self.queues[name]  # generated subjects come and go: keep the dict small
            codes = self.subjects.codes(arr)
            order = np.argsort(codes, kind="stable")  # groups of equal subjects, each ascending
            uniq, starts = np.unique(codes[order], return_index=True)
            ends = np.append(starts[1:], len(order))
            for k in np.argsort(order[starts], kind="stable"):  # subjects in order of first appearance
                self.queues.setdefault(self.subjects.name(uniq[k]), deque()).extend(
                    arr[order[starts[k]:ends[k]]].tolist())
            self.queued += len(arr)

    def next_index(self, current: str | None) -> tuple[str, int] | None:
        """The next sample of subject ``current``, else of the subject with the longest queue;
        None when nothing is left."""
        if self.queued < self.window // 2:
            self.refill()
        q = self.queues.get(current) if current is not None else None
        if not q:
            nonempty = [s for s, v in self.queues.items() if v]
            if not nonempty:
                return None
            current = max(nonempty, key=lambda s: len(self.queues[s]))
            q = self.queues[current]
        self.queued -= 1
        return current, q.popleft()

    def has_queued(self) -> bool:
        """Whether any index is queued or still to be pulled."""
        return self.queued > 0 or not self._exhausted

    def push_front(self, subject: str, index: int) -> None:
        """Queue ``index`` (a retry) first in its subject's queue."""
        self.queues.setdefault(subject, deque()).appendleft(index)
        self.queued += 1

    def drain(self) -> Iterator[int]:
        """Remove and yield every queued index (not those still to be pulled)."""
        for q in self.queues.values():
            while q:
                self.queued -= 1
                yield q.popleft()

    def clear(self) -> None:
        """Drop everything, queued or still to be pulled."""
        for q in self.queues.values():
            q.clear()
        self.queued = 0
        self._exhausted = True
