"""Stage 3 of the pipeline: the LE's output as RecBole atomic files (``<dataset>-lea/``).

``fields`` is the contract of the ``le_*`` columns (shared by the writer, the RL dataset, the
models and the tests), ``writer`` writes an LE folder from the build's stage artifacts, and
``check`` verifies a folder against its manifest before a run reads it.
"""
