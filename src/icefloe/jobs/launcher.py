"""The leader of a run's process group: runs the job's command, and stops the whole group
when the control plane that started it goes away (even a SIGKILLed one).

Started by the runner as ``python -I -S launcher.py PARENT_PID COMMAND...`` with the run's
user, environment and working folder; it uses the standard library only so it starts in a
few milliseconds. Its exit status is the command's (a command killed by a signal makes the
launcher end by the same signal).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

GRACE_S = 3.0
WATCH_EVERY_S = 0.5


def _stop_group() -> None:
    """SIGTERM everything in this process group, then SIGKILL what is left (this one too).

    Runs in the watcher thread: the launcher's own SIGTERM handler (main thread) only
    forwards the signal to the command, so the launcher lives on to send the SIGKILL.
    """
    os.killpg(0, signal.SIGTERM)
    time.sleep(GRACE_S)
    os.killpg(0, signal.SIGKILL)


def main(argv: list[str]) -> int:
    """Run ``argv[2:]``; watch the process ``argv[1]``."""
    if len(argv) < 3:
        print("usage: launcher.py PARENT_PID COMMAND...", file=sys.stderr)
        return 2
    parent = int(argv[1])
    if os.getppid() != parent:  # the control plane died before we got here
        return 1
    child = subprocess.Popen(argv[2:])

    def forward(signum: int, _frame: object) -> None:
        child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    orphaned = threading.Event()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(WATCH_EVERY_S)
        orphaned.set()
        print("icefloe: the control plane went away; stopping this run", file=sys.stderr,
              flush=True)
        _stop_group()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    code = child.wait()
    if orphaned.is_set():  # stay until the SIGKILL, or what ignores SIGTERM would live on
        watcher.join()
    if code < 0:  # end the way the command ended, so the runner sees the same signal
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv))
