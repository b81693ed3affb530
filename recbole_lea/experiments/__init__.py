"""Experiments users run: Ray Tune sweeps (:mod:`.tune`), seeded comparison tables
(:mod:`.compare`), the original SA2C evaluation protocol (:mod:`.protocol`) and plots
(:mod:`.plots`). Nothing heavy (ray, recbole) is imported here."""
