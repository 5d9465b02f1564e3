"""Training recipes, one file per method (the table of names is ``upstep.registry.RECIPES``).
``build_recipe`` maps a config's ``recipe`` name to its class."""
from upstep.registry import build_recipe

__all__ = ["build_recipe"]
