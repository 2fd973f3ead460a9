"""A registry's names as command-line choices, read from the module that owns them, on first use.

The CLI's choices must be the registries' own (a method added to covseg.lungs.METHODS is a
choice at once, none is typed twice), but importing covseg.lungs costs SciPy at every start,
and `covseg info` or a refusal must answer before that. argparse only reads `choices` to check
a value given on the command line or to print help, so the module is imported then.
"""
from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence


class Choices(Sequence[str]):
    """The names in `module.attribute` (a tuple of strings), less `exclude`, imported lazily."""

    def __init__(self, module: str, attribute: str, exclude: tuple[str, ...] = ()) -> None:
        self.module, self.attribute, self.exclude = module, attribute, exclude
        self._names: tuple[str, ...] | None = None

    @property
    def names(self) -> tuple[str, ...]:
        if self._names is None:
            found = getattr(importlib.import_module(self.module), self.attribute)
            self._names = tuple(n for n in found if n not in self.exclude)
        return self._names

    def __getitem__(self, index):  # type: ignore[override] - a tuple's indexing, int or slice
        return self.names[index]

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __repr__(self) -> str:
        return f"Choices({self.module}.{self.attribute})"
