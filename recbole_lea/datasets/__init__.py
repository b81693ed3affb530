"""Converters from data sources to RecBole atomic files with item text, and dataset statistics.

One function per source (the CLI ``python -m recbole_lea.datasets <command>`` wraps them):

* :func:`convert_lcrec`   LC-Rec JSON (``*.inter.json`` + ``*.item.json``)
* :func:`convert_amazon`  raw Amazon Review Data 2018 (reviews + ``meta_`` JSON lines)
* :func:`convert_lfm1b`   raw LFM-1b TSV files, optionally a time window
* :func:`convert_ml100k`  ml-100k from the recbole wheel; :func:`ensure_ml100k` converts if missing
* :func:`convert_csv`     a generic interactions CSV/TSV + items CSV/TSV (RecBole atomic files too)
* :func:`dataset_stats`   the paper's Table 1 and data-quality counts of an atomic dataset
* :func:`check_atomic_inter`  check a user's own ``.inter`` file before RecBole reads it

The names are imported on first use, so ``recbole_lea.datasets.validate`` (used before RecBole
loads) does not pay for numpy and pandas.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_WHERE = {
    "convert_amazon": "amazon",
    "BadLimit": "common",
    "ConvertOptions": "options",
    "DatasetError": "common",
    "convert_csv": "generic",
    "convert_lcrec": "lcrec",
    "convert_lfm1b": "lfm1b",
    "convert_ml100k": "ml100k",
    "ensure_ml100k": "ml100k",
    "dataset_stats": "stats",
    "format_stats": "stats",
    "check_atomic_inter": "validate",
    "ConversionReport": "writer",
    "DatasetSpec": "writer",
    "TextField": "writer",
    "filter_min_inter": "writer",
}

__all__ = [
    "BadLimit",
    "ConversionReport",
    "ConvertOptions",
    "DatasetError",
    "DatasetSpec",
    "TextField",
    "check_atomic_inter",
    "convert_amazon",
    "convert_csv",
    "convert_lcrec",
    "convert_lfm1b",
    "convert_ml100k",
    "dataset_stats",
    "ensure_ml100k",
    "filter_min_inter",
    "format_stats",
]

if TYPE_CHECKING:
    from recbole_lea.datasets.amazon import convert_amazon
    from recbole_lea.datasets.common import BadLimit, DatasetError
    from recbole_lea.datasets.generic import convert_csv
    from recbole_lea.datasets.lcrec import convert_lcrec
    from recbole_lea.datasets.lfm1b import convert_lfm1b
    from recbole_lea.datasets.ml100k import convert_ml100k, ensure_ml100k
    from recbole_lea.datasets.options import ConvertOptions
    from recbole_lea.datasets.stats import dataset_stats, format_stats
    from recbole_lea.datasets.validate import check_atomic_inter
    from recbole_lea.datasets.writer import ConversionReport, DatasetSpec, TextField, filter_min_inter


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
