"""Recipes by name for the application layer: the one place that imports `kmtl.recipes`."""

from __future__ import annotations

from kmtl.recipe import Recipe, get_recipe, recipe_entries


def recipe_names() -> list[str]:
    """Names of the registered recipes (kmtl's own and any registered since), without importing them."""
    import kmtl.recipes  # noqa: F401  (registers kmtl's recipes; imports no TensorFlow)

    return list(recipe_entries())


def describe() -> list[tuple[str, str]]:
    """`(name, description)` of every registered recipe, without importing them."""
    recipe_names()
    return [(entry.name, entry.description) for entry in recipe_entries().values()]


def resolve(recipe: Recipe | str) -> Recipe:
    """A `kmtl.Recipe` from itself or its registered name (`"facial-attributes"`).

    Raises:
        ValueError: for an unknown name or anything else.
    """
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, str):
        recipe_names()
        return get_recipe(recipe)
    raise ValueError(
        f"Invalid value for `recipe`. Expected a `kmtl.Recipe` or a recipe name. Received: recipe={recipe!r:.200}"
    )
