"""Ray Tune sweep over a RecBole params file (see docs/experiments.md).

    python run_hyper_lea.py --model=SA2C_LEA --dataset=ml-100k \
        --params_file=w_grid --max_concurrent 2
"""

import sys

from recbole_lea.experiments.cli import hyper_main

if __name__ == "__main__":
    sys.exit(hyper_main())
