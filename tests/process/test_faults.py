# ctest-labels: heavy
"""test_faults.py -- the short version of scripts/faults.py (issue 10).

Five real agents, each in its own network namespace on a bridge (the
script creates and removes them; names start with "reliab"), through
nftables faults: 10% loss everywhere, a partition into halves and its
heal, a kill -9 of the seed (whose --join names only itself) and its
restart with the same data dir. --check makes the script fail on a false
death under loss, a lost or resurrected instance (polled every 0.5 s on
every node after each fault), or no one view and one registry within 60 s
after a fault. Needs root (namespaces, nftables), as CI runs. Takes about
2 minutes.

Usage: test_faults.py --shoal build/shoal
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "scripts", "faults.py")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shoal", required=True)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("FAILED faults: needs root for network namespaces and nftables")
        return 1
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, SCRIPT, "--shoal", args.shoal, "--only", "shoal",
                        "--n", "5", "--scenarios", "loss10,halves,kill9", "--fault-s", "25",
                        "--recover-s", "60", "--settle-s", "2", "--seed", "1010", "--check"],
                       timeout=170)
    took = time.monotonic() - t0
    name = "faults: loss, halves, kill -9 of the seed: no false death, nothing lost or back"
    print(f"{'ok' if r.returncode == 0 else 'FAILED'} {name} ({took:.1f} s)")
    print(f"{1 if r.returncode == 0 else 0} passed, {0 if r.returncode == 0 else 1} failed")
    return 0 if r.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
