"""A one-shot process (``avatarsync speak``) that starts and ends quickly.

Measured on 2 cores (bench/cli_startup.py): with torch loaded, Python's own teardown at exit takes
about 0.6 s (clearing thousands of modules, the CUDA build's library destructors), and glibc's
default of giving large freed blocks back to the system at once makes every batch of the first
``speak`` fault its memory in again (0.3-0.5 s over a sentence). Neither matters to a long-lived
process, so only the CLI's one-shot commands use these; the server and the Python API do not.
"""

from __future__ import annotations

import atexit
import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc mallopt parameters


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (no trimming, large blocks from the heap, 32 MiB,
    its maximum, instead of their own mappings). True when applied; a no-op on other C libraries.
    The process's resident memory then stays at its peak until it exits."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    ok &= mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    ok &= mallopt(_M_TOP_PAD, 64 << 20)
    return bool(ok)


def exit_now(code: int) -> None:
    """End the process with ``code`` without Python's teardown: output is flushed and the ``atexit``
    handlers (temporary folders, logging, child processes) run first, so nothing is lost. Open files
    must already be closed, as every writer here does on success."""
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)
