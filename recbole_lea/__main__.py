"""``python -m recbole_lea --model=... --dataset=...``: the same command as ``run_recbole_lea.py``."""

import sys

from recbole_lea.cli import main

if __name__ == "__main__":
    sys.exit(main())
