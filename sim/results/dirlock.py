"""Exclusive use of an output directory while a command writes to it.

Two ``vmapsim run`` (or ``report``) into one directory at once would leave one experiment's
manifest beside the other's tables and a mix of their run files. The first to start holds an
advisory lock (``flock``) on ``DIR/.vmapsim.lock``, which names its process id; the second is
refused with one line. The lock goes with the process that holds it (and its workers), however
it ends, so a killed run never leaves a directory locked.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sim.config.loader import ConfigError

LOCK_FILE = ".vmapsim.lock"


@contextmanager
def exclusive(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir``'s lock for the block (creating the directory); refuse it, as a
    :class:`ConfigError`, when another process holds it or the lock file is a link."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a regular file of that name
        raise ConfigError("cannot create the output directory: Not a directory",
                          str(out_dir)) from None
    except OSError as exc:
        raise ConfigError(f"cannot create the output directory: {exc.strerror or exc}",
                          str(out_dir)) from None
    try:
        fd = os.open(out_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise ConfigError(f"cannot lock the output directory: {exc.strerror or exc}",
                          str(out_dir)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 20, 0).decode(errors="replace").strip()
        os.close(fd)
        raise ConfigError(f"in use by another vmapsim (pid {holder if holder.isdigit() else '?'}"
                          "); wait for it to end, or write elsewhere with -o", str(out_dir)
                          ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)
