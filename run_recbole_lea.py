"""Train and evaluate any model on any atomic dataset: ``python run_recbole_lea.py --model=SA2C_LEA --dataset=ml-100k``."""

import sys

from recbole_lea.cli import main

if __name__ == "__main__":
    sys.exit(main())
