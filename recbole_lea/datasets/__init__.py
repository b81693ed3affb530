"""Converters from data sources to RecBole atomic files with item text, and dataset statistics.

One function per source (the CLI ``python -m recbole_lea.datasets <command>`` wraps them):

* :func:`convert_lcrec`   LC-Rec JSON (``*.inter.json`` + ``*.item.json``)
* :func:`convert_amazon`  raw Amazon Review Data 2018 (reviews + ``meta_`` JSON lines)
* :func:`convert_lfm1b`   raw LFM-1b TSV files, optionally a time window
* :func:`convert_ml100k`  ml-100k from the recbole wheel; :func:`ensure_ml100k` converts if missing
* :func:`convert_csv`     a generic interactions CSV/TSV + items CSV/TSV
* :func:`dataset_stats`   the paper's Table 1 and data-quality counts of an atomic dataset
"""

from recbole_lea.datasets.amazon import convert_amazon
from recbole_lea.datasets.common import BadLimit, ConvertOptions, DatasetError
from recbole_lea.datasets.generic import convert_csv
from recbole_lea.datasets.lcrec import convert_lcrec
from recbole_lea.datasets.lfm1b import convert_lfm1b
from recbole_lea.datasets.ml100k import convert_ml100k, ensure_ml100k
from recbole_lea.datasets.stats import dataset_stats, format_stats
from recbole_lea.datasets.writer import ConversionReport, DatasetSpec, TextField, filter_min_inter

__all__ = [
    "BadLimit",
    "ConversionReport",
    "ConvertOptions",
    "DatasetError",
    "DatasetSpec",
    "TextField",
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
