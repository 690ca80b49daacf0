#!/usr/bin/env python
"""TEST-ONLY launcher: `python tests/support/fit_with_cpu_deepspeed.py fit -e smoke train.strategy.name=...`.

Installs the CPU DeepSpeed shim (tests/support/deepspeed_cpu.py) at import, then runs `main.main(argv)`.
With ACTSYNC_TEST_DUMP_LOADED=FILE, rank 0 also saves the parameters as loaded before the first step.
Lightning's subprocess launcher re-executes this script for every extra rank, so each process gets the
shim before its Trainer is built.
"""
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.support import deepspeed_cpu  # noqa: E402

deepspeed_cpu.install()
if os.environ.get("ACTSYNC_TEST_DUMP_LOADED"):  # parameters as loaded, before the first step (tests)
    deepspeed_cpu.install_load_probe(os.environ["ACTSYNC_TEST_DUMP_LOADED"])

import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main.main(sys.argv[1:]))
