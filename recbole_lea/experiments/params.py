"""RecBole's hyper-parameter file syntax, read for Ray Tune.

One parameter per line, ``<name> <type> <value>`` (the same syntax as RecBole's
``recbole.trainer.hyper_tuning.HyperTuning``); the value may contain spaces (they are removed,
as RecBole does):

=============  ===========================  ================================================
type           value                        Ray Tune space
=============  ===========================  ================================================
``choice``     a Python list literal        ``tune.choice(list)``; ``tune.grid_search(list)``
                                            with ``search="grid"`` (the default, like
                                            RecBole's default ``exhaustive`` algorithm)
``uniform``    ``low,high``                 ``tune.uniform(low, high)``
``quniform``   ``low,high,q``               ``tune.quniform(low, high, q)``
``loguniform`` ``low,high`` (NATURAL LOGS)  ``tune.loguniform(exp(low), exp(high))``: RecBole
                                            passes the bounds to hyperopt, whose
                                            ``loguniform`` samples ``exp(uniform(low, high))``;
                                            the same file gives the same distribution here
=============  ===========================  ================================================

Additions over RecBole's parser: ``#`` starts a comment (whole line, or after whitespace at the
end of a line) and blank lines are skipped. RecBole's own parser does not know comments, so a
commented file is for ``run_hyper_lea.py`` only. Values are read with ``ast.literal_eval``
(never ``eval``).
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recbole_lea.errors import ConfigError

PARAM_TYPES = ("choice", "uniform", "quniform", "loguniform")
_COMMENT = re.compile(r"(^|\s)#.*$")


@dataclass(frozen=True)
class ParamSpec:
    """One line of a params file."""

    name: str
    kind: str
    args: tuple[Any, ...]

    @property
    def values(self) -> list[Any]:
        """The candidate values of a ``choice`` (empty for continuous types)."""
        return list(self.args) if self.kind == "choice" else []


def parse_params_text(text: str, source: str = "<params>") -> list[ParamSpec]:
    specs: list[ParamSpec] = []
    seen: set[str] = set()
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = _COMMENT.sub("", raw).strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) < 3:
            raise ConfigError(f"{source}:{lineno}: expected '<name> <type> <value>', got {raw!r}")
        name, kind, value = parts[0], parts[1], "".join(parts[2:])
        if kind not in PARAM_TYPES:
            raise ConfigError(f"{source}:{lineno}: unknown type {kind!r} (one of {', '.join(PARAM_TYPES)})")
        if name in seen:
            raise ConfigError(f"{source}:{lineno}: parameter {name!r} given twice")
        seen.add(name)
        try:
            if kind == "choice":
                parsed = ast.literal_eval(value)
                if not isinstance(parsed, (list, tuple)) or len(parsed) == 0:
                    raise ConfigError("choice needs a non-empty list")
                args: tuple[Any, ...] = tuple(parsed)
            else:
                numbers = tuple(float(v) for v in value.split(","))
                expected = 3 if kind == "quniform" else 2
                if len(numbers) != expected:
                    raise ConfigError(f"{kind} needs {expected} comma-separated numbers")
                if numbers[0] >= numbers[1]:
                    raise ConfigError("low must be below high")
                args = numbers
        except (ValueError, SyntaxError) as err:
            raise ConfigError(f"{source}:{lineno}: bad value {value!r}: {err}") from err
        specs.append(ParamSpec(name, kind, args))
    if not specs:
        raise ConfigError(f"{source}: no parameters found")
    return specs


def params_file_path(name: str | Path) -> Path:
    """A params file by path, or by the name of a shipped one (``w_grid`` ->
    ``properties/experiments/w_grid.hyper``)."""
    from recbole_lea.errors import ConfigError
    from recbole_lea.options import PROPERTIES

    path = Path(name)
    if path.is_file():
        return path
    shipped = PROPERTIES / "experiments" / (path.name if path.suffix else f"{path.name}.hyper")
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in (PROPERTIES / "experiments").glob("*.hyper"))
    raise ConfigError(f"Params file {name} not found: give a path, or one of the shipped files {', '.join(names)}.")


def parse_params_file(path: str | Path) -> list[ParamSpec]:
    path = params_file_path(path)
    return parse_params_text(path.read_text(), source=str(path))


def to_ray_space(specs: list[ParamSpec], search: str = "grid") -> dict[str, Any]:
    """Ray Tune ``param_space`` for the specs. ``search``: ``grid`` or ``random``."""
    from ray import tune

    if search not in ("grid", "random"):
        raise ConfigError(f"search must be 'grid' or 'random', got {search!r}")
    space: dict[str, Any] = {}
    for spec in specs:
        if spec.kind == "choice":
            values = list(spec.args)
            space[spec.name] = tune.grid_search(values) if search == "grid" else tune.choice(values)
        elif spec.kind == "uniform":
            space[spec.name] = tune.uniform(*spec.args)
        elif spec.kind == "quniform":
            space[spec.name] = tune.quniform(*spec.args)
        elif spec.kind == "loguniform":
            low, high = spec.args
            space[spec.name] = tune.loguniform(math.exp(low), math.exp(high))
    return space


def grid_size(specs: list[ParamSpec]) -> int:
    """Number of grid points of the ``choice`` lines (1 when there are none)."""
    size = 1
    for spec in specs:
        if spec.kind == "choice":
            size *= len(spec.args)
    return size
