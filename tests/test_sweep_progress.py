"""The sweep's progress bar: shown on a terminal, silent in a pipe and with ``--quiet``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY = str(Path(__file__).parent / "data" / "tiny.yaml")
ARGS = ["-m", "sim", "run", TINY, "-j", "1", "--no-report", "--set", "sweep.cpus=[1]"]


def _stderr_of(out: Path, *extra: str, terminal: bool) -> str:
    """Run vmapsim with stderr on a pseudo-terminal (or a pipe); what it wrote there."""
    if not terminal:
        proc = subprocess.run([sys.executable, *ARGS, "-o", str(out), *extra],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 100 columns
    proc = subprocess.Popen([sys.executable, *ARGS, "-o", str(out), *extra],
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_bar_on_a_terminal_only(tmp_path: Path) -> None:
    shown = _stderr_of(tmp_path / "tty", terminal=True)
    assert "runs: 100%" in shown and "8/8" in shown  # tqdm: count, rate and ETA
    assert "runs: 100%" not in _stderr_of(tmp_path / "quiet", "-q", terminal=True)
    piped = _stderr_of(tmp_path / "pipe", terminal=False)
    assert "8/8" not in piped and "\r" not in piped
    assert "tiny: 8 runs in this process" in piped  # the notes stay
