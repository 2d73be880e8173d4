"""The long randomized run of the stateful model test (issue 9).

    python benchmarks/stateful_long.py [EXAMPLES] [STEPS]

runs EXAMPLES random sequences of up to STEPS operations each (fresh random
seeds, not the CI's derandomized ones) and records the number of steps checked
and the outcome in benchmarks/results/stateful.json.
"""

from __future__ import annotations

import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    examples = sys.argv[1] if len(sys.argv) > 1 else "3000"
    steps = sys.argv[2] if len(sys.argv) > 2 else "50"
    os.environ["MEMHP_STATEFUL_EXAMPLES"] = examples
    os.environ["MEMHP_STATEFUL_STEPS"] = steps
    os.environ["MEMHP_STATEFUL_RANDOM"] = "1"
    from benchmarks._common import record
    from tests.kernel import test_stateful

    t = time.perf_counter()
    try:
        test_stateful.TestHotplugMachine().runTest()
        rc = 0
    except Exception as e:  # the failing sequence is printed by hypothesis
        print(f"FAILED: {e}", file=sys.stderr)
        rc = 1
    wall = time.perf_counter() - t
    record(
        "stateful",
        [
            {
                "what": f"random steps checked ({examples} sequences of up to {steps})",
                "value": test_stateful.STEPS_CHECKED[0],
                "unit": "steps",
                "target": ">= 100000",
                "ok": rc == 0 and test_stateful.STEPS_CHECKED[0] >= 100000,
            },
            {
                "what": "invariant violations found",
                "value": 0 if rc == 0 else 1,
                "unit": "runs failed",
            },
            {"what": "wall time", "value": wall, "unit": "s"},
        ],
    )
    sys.exit(int(rc))


if __name__ == "__main__":
    main()
