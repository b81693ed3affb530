"""Declared options: every option of ours has one home, a dataclass field with type, default,
choices, bounds and help (in the manner of TRL's config dataclasses).

A consumer (the RL models, SA2C, the LE feedback of the LEA models, the run itself, the LE build)
declares its options once with :func:`opt`; this module turns the declarations into

- checked values: :func:`check_value` coerces and range-checks one value and names the option,
  its source and the fix when it is bad;
- the known-key set of a run, so an unknown key is an error with a did-you-mean
  (:func:`unknown_key_error`), and renamed keys name their new name;
- the commented yaml lines of the shipped defaults under ``properties/`` (:func:`render_yaml`,
  written by :mod:`recbole_lea.defaults`), which a test keeps equal to the declarations;
- parsed command-line values (:func:`parse_value`, :func:`parse_overrides`).

RecBole declares its own options in its yaml files; :data:`RECBOLE_RULES` adds range checks for
the RecBole keys whose bad values would otherwise fail deep inside a run or silently.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from recbole_lea.errors import ConfigError


def _properties_dir() -> Path:
    """The shipped defaults: one folder, the top-level ``properties/`` of a checkout, which a wheel
    carries as ``recbole_lea/properties/`` (``setup.cfg`` maps it there)."""
    package = Path(__file__).resolve().parent
    for folder in (package / "properties", package.parent / "properties"):
        if (folder / "overall.yaml").is_file():
            return folder
    return package.parent / "properties"


#: the folder of the shipped defaults
PROPERTIES = _properties_dir()

#: keys that were renamed: old name -> new name
RENAMED: dict[str, str] = {"aug_sv": "l_ah", "aug_q": "l_aq"}


@dataclass(frozen=True)
class Bounds:
    """Inclusive (``ge``/``le``) or exclusive (``gt``/``lt``) numeric bounds."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def violated(self, value: float) -> str | None:
        if self.ge is not None and value < self.ge:
            return f">= {self.ge:g}"
        if self.gt is not None and value <= self.gt:
            return f"> {self.gt:g}"
        if self.le is not None and value > self.le:
            return f"<= {self.le:g}"
        if self.lt is not None and value >= self.lt:
            return f"< {self.lt:g}"
        return None

    def text(self) -> str:
        parts = []
        for name, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{sign} {value:g}")
        return " and ".join(parts)


def opt(
    default: Any,
    help: str,
    *,
    choices: Iterable[Any] | None = None,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    stages: Iterable[str] = (),
    fix: str = "",
    flags: Iterable[str] = (),
    metavar: str | None = None,
    required: bool = False,
) -> Any:
    """A declared option: a dataclass field with its help, choices, bounds and, for LE build
    options, the build stages whose cache key it enters. ``fix`` is said when a value is bad.
    For the options of a command (:func:`command_parser`): ``flags``, more names than
    ``--<name>`` (``-m``); ``metavar``; ``required`` (a value must be given)."""
    metadata = {
        "help": help,
        "choices": tuple(choices) if choices is not None else None,
        "bounds": Bounds(ge, gt, le, lt),
        "stages": tuple(stages),
        "fix": fix,
        "flags": tuple(flags),
        "metavar": metavar,
        "required": required,
    }
    if isinstance(default, list | dict):
        return field(default_factory=lambda: type(default)(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class OptionSpec:
    """What a declaration says about one option."""

    name: str
    type: Any
    default: Any
    help: str
    choices: tuple[Any, ...] | None
    bounds: Bounds
    stages: tuple[str, ...]
    owner: str
    fix: str = ""
    flags: tuple[str, ...] = ()
    metavar: str | None = None
    required: bool = False

    @property
    def nullable(self) -> bool:
        return _is_optional(self.type)

    @property
    def base_type(self) -> Any:
        return _strip_optional(self.type)

    def type_name(self) -> str:
        name = {bool: "bool", int: "int", float: "float", str: "str", list: "list", dict: "dict"}.get(
            self.base_type, getattr(self.base_type, "__name__", str(self.base_type))
        )
        return f"{name} or null" if self.nullable else name


def _is_optional(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp)


def _strip_optional(tp: Any) -> Any:
    if _is_optional(tp):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    origin = typing.get_origin(tp)
    return origin if origin in (list, dict) else tp


def specs_of(cls: type) -> dict[str, OptionSpec]:
    """The declared options of a dataclass, by name, in declaration order."""
    hints = typing.get_type_hints(cls)
    out: dict[str, OptionSpec] = {}
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        out[f.name] = OptionSpec(
            name=f.name,
            type=hints[f.name],
            default=default,
            help=f.metadata.get("help", ""),
            choices=f.metadata.get("choices"),
            bounds=f.metadata.get("bounds", Bounds()),
            stages=f.metadata.get("stages", ()),
            owner=cls.__name__,
            fix=f.metadata.get("fix", ""),
            flags=f.metadata.get("flags", ()),
            metavar=f.metadata.get("metavar"),
            required=f.metadata.get("required", False),
        )
    return out


def _type_ok(tp: Any, value: Any) -> tuple[bool, Any]:
    """(ok, coerced value) for one base type; ints are accepted where floats are declared."""
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    if tp is list:
        return isinstance(value, list | tuple), list(value) if isinstance(value, list | tuple) else value
    if tp is dict:
        return isinstance(value, dict), value
    return True, value


def check_value(spec: OptionSpec, value: Any, source: str) -> Any:
    """``value`` coerced to the declared type, or a :class:`ConfigError` that names the option,
    where the value came from, what is allowed and how to fix it."""
    fix = f" {spec.fix}" if spec.fix else ""
    if value is None:
        if spec.nullable:
            return None
        raise ConfigError(
            f"Option `{spec.name}` ({spec.type_name()}) cannot be empty (from {source}): give a value, "
            f"default {spec.default!r}.{fix}"
        )
    base = spec.base_type
    if typing.get_origin(spec.type) in (typing.Union, types.UnionType) and not _is_optional(spec.type):
        ok = any(_type_ok(a, value)[0] for a in typing.get_args(spec.type) if a is not type(None))
        coerced = value
    else:
        ok, coerced = _type_ok(base, value)
    if not ok:
        raise ConfigError(
            f"Option `{spec.name}` expects {spec.type_name()} (default {spec.default!r}), got {value!r} from {source}: "
            f"fix that value.{fix}"
        )
    if spec.choices is not None and coerced not in spec.choices:
        close = difflib.get_close_matches(str(coerced), [str(c) for c in spec.choices], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"Unknown value {coerced!r} for option `{spec.name}` (from {source}): choose one of "
            f"{', '.join(str(c) for c in spec.choices)}.{hint}{fix}"
        )
    if isinstance(coerced, float) and not math.isfinite(coerced):
        raise ConfigError(f"Option `{spec.name}` must be a finite number, got {coerced!r} from {source}.{fix}")
    if isinstance(coerced, int | float) and not isinstance(coerced, bool):
        broken = spec.bounds.violated(coerced)
        if broken:
            raise ConfigError(f"Option `{spec.name}` must be {spec.bounds.text()}, got {coerced!r} from {source}.{fix}")
    return coerced


def build(cls: type, values: Mapping[str, Any], source: str = "the config") -> Any:
    """An instance of the options dataclass from ``values`` (missing keys take their defaults),
    every value checked."""
    specs = specs_of(cls)
    for spec in specs.values():
        if spec.required and values.get(spec.name) in (None, [], ""):
            raise ConfigError(f"Option `{spec.name}` is required (from {source}): {spec.help}.")
    kwargs = {name: check_value(specs[name], values[name], source) for name in specs if name in values}
    return cls(**kwargs)


# ------------------------------------------------------------------------------ command lines
def _element_type(spec: OptionSpec) -> Any:
    args = [a for a in typing.get_args(spec.type) if a is not type(None)]
    if _is_optional(spec.type) and args:
        args = list(typing.get_args(args[0]))
    return args[0] if args and args[0] in (int, float, str) else str


def add_option(parser: Any, spec: OptionSpec, dashes: bool = False) -> None:
    """One ``--<name>`` argument of an argparse parser (or group) from a declaration: booleans are
    switches, lists take one or more values; the value is checked later, by :func:`check_value`.
    ``dashes``: the flag is ``--min-inter`` for ``min_inter`` (the converters' style)."""
    default = spec.default
    text = spec.help + ("" if spec.required or default in (None, False, []) else f" (default {_cli_value(default)})")
    kwargs: dict[str, Any] = {"dest": spec.name, "help": text.replace("%", "%%")}
    if spec.base_type is bool:
        kwargs["action"] = "store_true"
    else:
        if spec.base_type is list:
            kwargs.update(nargs="+", type=_element_type(spec))
        elif spec.base_type in (int, float, str):
            kwargs["type"] = spec.base_type
        kwargs.update(default=None if spec.required else default, required=spec.required, metavar=spec.metavar)
        if spec.choices is not None:
            kwargs["choices"] = spec.choices
    flag = spec.name.replace("_", "-") if dashes else spec.name
    parser.add_argument(f"--{flag}", *spec.flags, **kwargs)


def _cli_value(value: Any) -> str:
    return " ".join(str(v) for v in value) if isinstance(value, list | tuple) else str(value)


def command_parser(cls: type, prog: str, description: str, epilog: str | None = None) -> Any:
    """The argparse parser of a command whose options ``cls`` declares: one flag per field."""
    import argparse

    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=epilog)
    for spec in specs_of(cls).values():
        add_option(parser, spec)
    return parser


def parse_command(cls: type, parser: Any, argv: list[str] | None) -> tuple[Any, dict[str, Any]]:
    """(the checked options of ``cls``, every other ``--key=value`` as config overrides)."""
    args, rest = parser.parse_known_args(argv)
    return build(cls, vars(args), "the command line"), parse_overrides(rest)


# ------------------------------------------------------------------------------ RecBole's keys
#: range checks for RecBole's own keys (RecBole declares them; these catch values that would fail
#: deep inside a run, or run without a word)
RECBOLE_RULES: dict[str, Bounds] = {
    "epochs": Bounds(ge=1),
    "train_batch_size": Bounds(ge=1),
    "eval_batch_size": Bounds(ge=1),
    # every training row holds a history list of this length: 100000 needs terabytes on ml-100k
    "MAX_ITEM_LIST_LENGTH": Bounds(ge=1, le=1000),
    "learning_rate": Bounds(gt=0),
    "weight_decay": Bounds(ge=0),
    "stopping_step": Bounds(ge=1),
    "eval_step": Bounds(ge=1),
    "hidden_size": Bounds(ge=1),
    "embedding_size": Bounds(ge=1),
    "inner_size": Bounds(ge=1),
    "n_layers": Bounds(ge=1),
    "n_heads": Bounds(ge=1),
    "num_layers": Bounds(ge=1),
    "hidden_dropout_prob": Bounds(ge=0, lt=1),
    "attn_dropout_prob": Bounds(ge=0, lt=1),
    "dropout_prob": Bounds(ge=0, lt=1),
    "worker": Bounds(ge=0),
}


def check_recbole_value(key: str, value: Any, source: str) -> None:
    """Range checks of :data:`RECBOLE_RULES`, and ``topk`` as a list of positive integers."""
    if key == "topk":
        ks = value if isinstance(value, list) else [value]
        if not ks or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 1 for k in ks):
            raise ConfigError(
                f"Option `topk` must be a positive integer or a list of them, got {value!r} from {source}."
            )
        return
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"Option `{key}` must be a finite number, got {value!r} from {source}.")
    bounds = RECBOLE_RULES.get(key)
    if bounds is None or not isinstance(value, int | float) or isinstance(value, bool):
        return
    broken = bounds.violated(value)
    if broken:
        raise ConfigError(f"Option `{key}` must be {bounds.text()}, got {value!r} from {source}.")


def unknown_key_error(
    key: str,
    known: Iterable[str],
    source: str,
    hints: Mapping[str, str] | None = None,
    listing: str = "`python run_recbole_lea.py --model=<Model> --help-options` lists every option a run reads.",
) -> ConfigError:
    """The error for a key nobody declares: its new name when renamed, else the closest names and
    where to find the valid ones (``listing``)."""
    if key in RENAMED:
        return ConfigError(f"Option `{key}` (from {source}) was renamed `{RENAMED[key]}`: use --{RENAMED[key]}.")
    if hints and key in hints:
        return ConfigError(f"Option `{key}` (from {source}) {hints[key]}")
    close = difflib.get_close_matches(key, list(known), n=3, cutoff=0.75)
    hint = f" Did you mean {', '.join(f'`{c}`' for c in close)}?" if close else ""
    return ConfigError(
        f"Unknown option `{key}` (from {source}): no model, the run, the LE build nor RecBole reads it.{hint} {listing}"
    )


# ------------------------------------------------------------------------------ files
def check_dataset_name(name: str, source: str = "--dataset") -> str:
    """A dataset name is one path component (it names ``<data_path>/<name>/`` and the LE folder):
    no separator, not ``.`` or ``..``, not empty."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\x00" in name:
        raise ConfigError(
            f"Dataset name {name!r} (from {source}) must be one folder name, without '/' or '..': it names the "
            "folder <data_path>/<name>/; point --data_path at the folder that holds it instead."
        )
    return name


def dataset_yaml_path(dataset: str, data_path: str | Path | None = None) -> Path | None:
    """The dataset's yaml: ``<data_path>/<dataset>/<dataset>.yaml`` (written by the converters
    beside the atomic files) when there is one, else the shipped
    ``properties/dataset/<dataset>.yaml``, else None (RecBole's defaults)."""
    candidates = []
    if data_path is not None:
        candidates.append(Path(data_path) / dataset / f"{dataset}.yaml")
    candidates.append(PROPERTIES / "dataset" / f"{dataset}.yaml")
    return next((p for p in candidates if p.is_file()), None)


def dataset_yaml(dataset: str, data_path: str | Path | None = None) -> dict[str, Any]:
    path = dataset_yaml_path(dataset, data_path)
    return read_yaml(path, "dataset yaml") if path is not None else {}


# ------------------------------------------------------------------------------ yaml
class _Loader(yaml.SafeLoader):
    """yaml's safe loader reading floats as RecBole's Config does (``1e-12`` is a float, not the
    string yaml 1.1 makes of it), so our checks see the values RecBole will use."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+][0-9]+)?
        |[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """A command-line value parsed as yaml with RecBole's float rule (``5``, ``1e-3``, ``[5, 10]``,
    ``true``); text that is not valid yaml stays a string."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 -- a SafeLoader subclass
    except yaml.YAMLError:
        return text


def parse_overrides(tokens: list[str]) -> dict[str, Any]:
    """``['--epochs=5', '--backbone', 'GRU4Rec']`` -> ``{'epochs': 5, 'backbone': 'GRU4Rec'}``."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if not tok.startswith("--") or tok == "--":
            raise SystemExit(f"error: unexpected argument {tok!r}; options look like --key=value.")
        key, eq, value = tok[2:].partition("=")
        if not eq:
            if i + 1 < len(tokens) and not tokens[i + 1].startswith("--"):
                value = tokens[i + 1]
                i += 1
            else:
                value = "true"
        key = key.replace("-", "_")
        out[key] = parse_value(value) if value != "" else None
        i += 1
    return out


def read_yaml(path: Path, what: str = "config file") -> dict[str, Any]:
    """A yaml mapping; malformed yaml or a non-mapping is one :class:`ConfigError` naming the
    file and line."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_Loader)  # noqa: S506 -- a SafeLoader subclass
    except FileNotFoundError:
        raise ConfigError(f"{what} {path} does not exist.") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{what} {path} is not valid yaml ({problem} at{where}): fix that line.") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} must hold `key: value` lines (a yaml mapping), got {type(data).__name__}.")
    return data


def _yaml_value(value: Any) -> str:
    if value is None:
        return "~"
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return text[: -len("\n...")] if text.endswith("\n...") else text.removesuffix("...").strip()


def render_yaml(title: str, specs: Iterable[OptionSpec], overrides: Mapping[str, tuple[Any, str]] | None = None) -> str:
    """A commented yaml file: one ``key: value  # (type) help`` line per option.

    ``overrides`` (key -> (value, reason)) are a model's own defaults for options declared
    elsewhere; they are written with their reason."""
    lines = [f"# {line}" if line else "#" for line in title.splitlines()]
    lines.append(
        "# Generated from the declarations by `python -m recbole_lea.defaults --write`; edit those, not this file."
    )
    rows = [(s.name, _yaml_value(s.default), f"({s.type_name()}) {s.help}" + _choice_text(s)) for s in specs]
    for key, (value, reason) in (overrides or {}).items():
        rows.append((key, _yaml_value(value), reason))
    width = max((len(k) + len(v) + 2 for k, v, _ in rows), default=0)
    for key, value, comment in rows:
        lines.append(f"{f'{key}: {value}':<{width}}  # {comment}")
    return "\n".join(lines) + "\n"


def _choice_text(spec: OptionSpec) -> str:
    extra = []
    if spec.choices is not None and not spec.help.rstrip(".").endswith(str(spec.choices[-1])):
        extra.append("choices: " + ", ".join(str(c) for c in spec.choices))
    if spec.bounds.text():
        extra.append(spec.bounds.text())
    return f" [{'; '.join(extra)}]" if extra else ""
