"""Which CPUs run what: the loop thread pinned to one core, background work
(snapshots, journal segment preparation, history) kept off it.

Linux affinity is per thread and inherited by threads created later, so
background threads move themselves away from the pinned core when they start.
"""

import os

_ALLOWED = frozenset(os.sched_getaffinity(0))  # as the process started, before any pinning
_pinned: int | None = None


def last_cpu() -> int:
    return max(_ALLOWED)


def other_cpu(cpu: int) -> int:
    """A CPU other than `cpu` (itself when there is no other)."""
    return max(_ALLOWED - {cpu}, default=cpu)


def pin_loop_thread(cpu: int | None) -> int:
    """Pin the calling thread to `cpu` (default: the last CPU allowed)."""
    global _pinned
    _pinned = last_cpu() if cpu is None else cpu
    os.sched_setaffinity(0, {_pinned})
    return _pinned


def background_cpus() -> frozenset[int]:
    """Any allowed CPU but the pinned one (all of them when there is no other)."""
    return (_ALLOWED - {_pinned}) or _ALLOWED


def background_thread() -> None:
    """Initializer for background threads and processes."""
    os.sched_setaffinity(0, background_cpus())
