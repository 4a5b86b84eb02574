"""Torch intra-op thread counts per worker thread.

``torch.set_num_threads`` sets the calling thread's OpenMP count, and also the default of
the process's main thread and of threads that have not run torch yet. A router thread that
asks for one thread would so shrink the models' threads started after it. Every thread that
runs torch therefore pins its own count when it starts: the models the process's count (read
once, at import, before anything changed it), the router its own (``ROUTER_TORCH_THREADS``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import torch

#: the process's intra-op thread count as torch chose it (physical cores, or OMP_NUM_THREADS)
PROCESS_THREADS = torch.get_num_threads()


def router_threads() -> int:
    """Threads of the router's content model: one by default. Its forward is small, and beside
    a generating model two threads on two cores wait on each other (the tail latency)."""
    return max(1, int(os.environ.get("ROUTER_TORCH_THREADS") or 1))


def pin_threads(threads: int | None = None) -> None:
    """Pin the calling thread to ``threads`` intra-op threads (the process's count by default)."""
    torch.set_num_threads(threads or PROCESS_THREADS)


def pinned_executor(name: str, threads: int | None = None, workers: int = 1) -> ThreadPoolExecutor:
    """An executor whose threads run torch with ``threads`` intra-op threads each."""
    return ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name,
                              initializer=pin_threads, initargs=(threads,))
