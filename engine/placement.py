"""Which CPUs run what: the loop thread pinned to one core, background work
(snapshots, journal segment preparation, history) kept off it; work that may
lag (snapshots, history) at idle priority, so it never delays anyone else (on
a small machine the other core may run the clients).

Linux affinity and scheduling policy are per thread and inherited by threads
created later, so background threads set their own when they start.
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


def background_thread(idle: bool = False) -> None:
    """Initializer for background threads; `idle` for work that may lag."""
    os.sched_setaffinity(0, background_cpus())
    if idle:
        idle_priority()


def idle_priority() -> None:
    """Run the calling thread only when its CPU has nothing else to do
    (SCHED_IDLE): a waking thread of any other process preempts it at once.
    Not for what the engine waits on (the journal's next segment)."""
    os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
