"""Start-up benchmark: how long commands take before they do anything.

Each is timed as a fresh process (median of N), against the bare interpreter started the same
way in the same run: the ratio says what icefloe's imports add. Goals (issue 10): `icefloe
--help` and commands that only talk HTTP start in under 0.3 s.

Usage: python bench/startup.py [--repeat 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent
CASES = {
    "python (peer)": [sys.executable, "-c", "pass"],
    "icefloe --help": [str(BIN / "icefloe"), "--help"],
    "icefloe job --help": [str(BIN / "icefloe"), "job", "--help"],
    "import the SDK": [sys.executable, "-c", "import icefloe.client"],
    "import a model replica": [sys.executable, "-c", "import icefloe.serving.replica"],
    "import the control plane app": [sys.executable, "-c", "import icefloe.api.app"],
}
GOAL_S = 0.3


def _time(cmd: list[str], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    peer = _time(CASES["python (peer)"], args.repeat)
    print(f"{'command':32} {'median s':>9} {'vs python':>10}")
    for name, cmd in CASES.items():
        took = peer if name == "python (peer)" else _time(cmd, args.repeat)
        print(f"{name:32} {took:9.3f} {took / peer:9.1f}x")
        if name.startswith("icefloe"):
            verdict = "met" if took < GOAL_S else "MISSED"
            print(f"{'':32} goal < {GOAL_S} s: {verdict}")


if __name__ == "__main__":
    main()
