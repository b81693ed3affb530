"""The shipped default files that are generated from the option declarations: ``run.yaml`` and
one yaml per model layer under ``properties/``. ``python -m recbole_lea.defaults --write``
rewrites them; a test keeps them equal to the declarations."""

from __future__ import annotations

from pathlib import Path

from recbole_lea.model.options import MODEL_LAYERS, MODEL_TITLES
from recbole_lea.options import PROPERTIES, render_yaml, specs_of
from recbole_lea.run_config import RunOptions


def generated_files() -> dict[Path, str]:
    """The yaml files rendered from the declarations: ``run.yaml`` and one per model layer."""
    out = {
        PROPERTIES / "run.yaml": render_yaml(
            "Options of every run (recbole_lea.run_config.RunOptions), our models and RecBole's alike.",
            specs_of(RunOptions).values(),
        )
    }
    for model, layers in MODEL_LAYERS.items():
        for stem, options, overrides in layers:
            path = PROPERTIES / "model" / f"{stem}.yaml"
            if path in out:
                continue
            if options is not None:
                title = f"{stem}: {(options.__doc__ or '').strip().splitlines()[0]}"
            else:
                title = f"{MODEL_TITLES[stem if stem in MODEL_TITLES else model]}\nNo options of its own: the files of the layers under it hold them."
            out[path] = render_yaml(title, specs_of(options).values() if options else (), overrides)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m recbole_lea.defaults --write``: (re)write the generated yaml files;
    ``--check``: exit 1 when one differs from the declarations."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m recbole_lea.defaults", description=main.__doc__)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generated_files().items():
        current = path.read_text(encoding="utf-8") if path.is_file() else None
        if current != text:
            stale.append(path)
            if args.write:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text, encoding="utf-8")
    for path in stale:
        print(f"{'wrote' if args.write else 'differs'}: {path}")
    return 1 if stale and not args.write else 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
