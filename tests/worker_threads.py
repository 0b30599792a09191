"""The threads torch may use in a test: this machine's cores shared among pytest-xdist's workers.

Two workers on two cores, each with torch's default of one OpenMP thread a core, wait on each
other's threads: a training run beside a two-thread neighbour took 1.6x as long on two threads
as on one (228 s and 145 s, 2-core VM, 2026-12-07)."""

import os

WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
THREADS = max(1, CORES // WORKERS)
