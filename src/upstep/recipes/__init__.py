"""Training recipes, one file per method. ``build_recipe`` maps a config's ``recipe`` name to
its class; the imports are explicit so the list of methods is readable here."""
from __future__ import annotations

from upstep.errors import ConfigError


def build_recipe(cfg: dict, accelerator):
    from upstep.recipes.standard import StandardRecipe

    recipes = {"standard": StandardRecipe}
    name = cfg.get("recipe")
    if name not in recipes:
        raise ConfigError(f"unknown recipe {name!r}; known: {sorted(recipes)}")
    return recipes[name](cfg, accelerator)
