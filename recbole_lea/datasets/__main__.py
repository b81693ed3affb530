"""``python -m recbole_lea.datasets``: see :mod:`recbole_lea.datasets.cli`."""

from recbole_lea.datasets.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
