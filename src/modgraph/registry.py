"""A name -> object registry whose misses list the valid names."""

from __future__ import annotations

from typing import Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (factories, configs, functions).

    >>> r = Registry("colour"); r.register("red", 1)
    >>> r.get("blue")
    Traceback (most recent call last):
    ValueError: unknown colour 'blue'; valid choices: red
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str, obj: T | None = None) -> Callable[[T], T] | T:
        """Register ``obj`` under ``name``; without ``obj`` act as a decorator."""
        key = name.lower()

        def add(item: T) -> T:
            if key in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[key] = item
            return item

        return add if obj is None else add(obj)

    def get(self, name: str) -> T:
        """The object named ``name`` (case-insensitive); ``ValueError`` listing valid names."""
        if not isinstance(name, str) or name.lower() not in self._items:
            raise ValueError(f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.names())}")
        return self._items[name.lower()]

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._items)
