"""The benchmark harness: core throughput and latency, and comparisons with other books."""

import os

# numpy's OpenBLAS starts worker threads that spin on the other core; the
# harness needs that core quiet.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
