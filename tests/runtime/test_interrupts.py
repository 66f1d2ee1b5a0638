"""Ctrl-C at the moments outside the training loop: during the CLI's start-up imports, and a second Ctrl-C
while the interrupted process exits. Each is one line and exit code 130, never a traceback."""

from __future__ import annotations

import signal
import subprocess
import sys

from conftest import ROOT


def _child() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # as a terminal starts it (a test runner may ignore SIGINT)


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          preexec_fn=_child)


def test_ctrl_c_during_the_start_up_imports_is_one_line():
    """torch takes seconds to import; a Ctrl-C then printed a 30-70 line import traceback. The interrupt is
    raised exactly where a real one lands: inside the import of torch."""
    code = """
import sys
class CtrlC:
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            raise KeyboardInterrupt
sys.meta_path.insert(0, CtrlC())
sys.argv = ["mimax", "methods"]
from mimax.console import run
run()
"""
    proc = run_python(code)
    assert proc.returncode == 130 and proc.stderr == "mimax: interrupted\n", proc.stderr
    assert proc.stdout == ""


def test_a_second_ctrl_c_while_the_process_exits_is_ignored():
    """mimax's exit hook shuts DataLoader workers down (a loader alive at exit hung the process); a second
    Ctrl-C arriving meanwhile printed "Exception ignored in atexit callback ... KeyboardInterrupt" and
    skipped that shutdown. The loader below stands for one whose workers take a moment to stop; the signal
    is a real SIGINT sent by the process to itself during the hook."""
    code = """
import os, signal, time
from mimax.runtime import signals

class Iterator:
    def _shutdown_workers(self):
        os.kill(os.getpid(), signal.SIGINT)  # the impatient second Ctrl-C
        time.sleep(0.2)
        print("workers stopped", flush=True)

class Loader:
    num_workers = 2
    _iterator = Iterator()

loader = signals.track_workers(Loader())
"""
    proc = run_python(code)
    assert proc.stdout == "workers stopped\n" and proc.stderr == "", proc.stderr
    assert proc.returncode == 0
