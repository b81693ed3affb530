"""Seeded comparison table like the LEA paper's Table 2 (see docs/experiments.md).

    python run_compare_lea.py --dataset=ml-100k \
        --models SASRec GRU4Rec SA2C SA2C_LEA:variant=LEASR --seeds 3 --baseline SA2C
"""

import sys

from recbole_lea.experiments.cli import compare_main

if __name__ == "__main__":
    sys.exit(compare_main())
