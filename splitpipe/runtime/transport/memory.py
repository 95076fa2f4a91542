"""Keep freed memory for reuse in a node process: received tensors are fresh buffers, and fresh pages are dear.

Every message received becomes a new buffer (the tensor owns it). glibc hands blocks of more
than a few hundred KiB back to the kernel when they are freed (munmap, or trimming the top of the
heap), so the next message's buffer is faulted in page by page, zeroed by the kernel: on the
2-core VM of docs/transport.md that costs more than the socket copy itself. Raising the mmap
and trim thresholds keeps freed blocks (up to 32 MiB each, 256 MiB at the top of the heap) for
the next message instead. glibc only; elsewhere, and if the C library refuses, nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["keep_freed_memory"]

log = logging.getLogger("splitpipe.transport")

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: glibc's largest mmap threshold on 64-bit hosts.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 256 << 20


def keep_freed_memory() -> bool:
    """Tell glibc's malloc to keep freed blocks of up to 32 MiB for reuse; whether it took the settings."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    ok = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    log.debug("malloc keeps freed blocks up to %d MiB: %s", MMAP_THRESHOLD >> 20, ok)
    return ok
