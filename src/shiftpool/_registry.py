"""A name → object table with errors that list the valid names (operators, models)."""

from __future__ import annotations

from typing import Generic, TypeVar

from shiftpool.core.errors import InputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Objects registered by name, for one ``kind`` of thing ("downsampler", "model").

    Example:
        >>> pools = Registry("pool")
        >>> pools.add("max", max)
        <built-in function max>
        >>> pools.names()
        ['max']
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def add(self, name: str, item: T) -> T:
        """Register ``item`` as ``name``; a different item under a taken name is an error."""
        if name in self._items and self._items[name] is not item:
            raise InputError(f"shiftpool: a {self.kind} named {name!r} is already registered")
        self._items[name] = item
        return item

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._items)

    def get(self, name: str) -> T:
        """The item registered as ``name``; a ``ValueError`` lists the valid names otherwise."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise InputError(
                f"shiftpool: unknown {self.kind} {name!r}; available: {', '.join(self.names())}"
            ) from None
