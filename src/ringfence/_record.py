"""Immutable value objects without the import cost of `dataclasses`.

`import dataclasses` pulls in `inspect` and `re` and costs more than the
whole rest of the `run` path, and start-up time is a measured feature of the
CLI. A record declares its fields in `__slots__`; instances are frozen,
compare and hash by value, and print like dataclasses. Each field is also
annotated in the class body for type checkers: under `from __future__ import
annotations` an annotation without a value is a string in `__annotations__`,
no class attribute, and costs nothing measurable.
"""

from __future__ import annotations

# `typing` (with `re` behind it) costs milliseconds: checkers read it, the
# `run` path never imports it.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Self


_MISSING = object()
COMPILE_AFTER = 128


def _initializer(cls: type, fields: tuple[str, ...], defaults: dict[str, Any]):
    """The __init__ of one record class.

    A generated, compiled __init__ builds a record in under a microsecond,
    but compiling one costs what a hundred builds save, and the `run` path
    defines dozens of records and builds most of them a few times (the
    busiest about a hundred in an empty project). So each class starts with
    a closure over its fields (about twice as slow per build, nothing to
    compile) and compiles its own only once it has been built often: a
    policy with thousands of masks builds thousands of a few."""
    count = len(fields)
    position = {name: index for index, name in enumerate(fields)}
    start_values = [defaults.get(name, _MISSING) for name in fields]
    required = next((index for index, name in enumerate(fields) if name in defaults), count)
    setter = object.__setattr__
    name_of = cls.__name__
    built = [0]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        built[0] += 1
        if built[0] == COMPILE_AFTER:
            cls.__init__ = _compiled(fields, defaults)  # type: ignore[misc]  # the point
        given = len(args)
        if given > count:
            raise TypeError(f"{name_of} takes {count} fields")
        values = list(args) + start_values[given:]
        for name, value in kwargs.items():
            index = position.get(name)
            if index is None or index < given:
                raise TypeError(f"{name_of}: unexpected or repeated field {name!r}")
            values[index] = value
        if given < required:
            for index in range(given, required):
                if values[index] is _MISSING:
                    raise TypeError(f"{name_of}: missing field {fields[index]!r}")
        for name, value in zip(fields, values):
            setter(self, name, value)

    return __init__


def _compiled(fields: tuple[str, ...], defaults: dict[str, Any]):
    params = ", ".join(f"{name}=_d[{name!r}]" if name in defaults else name for name in fields)
    body = "\n".join(f"    _set(self, {name!r}, {name})" for name in fields)
    namespace: dict[str, Any] = {"_set": object.__setattr__, "_d": defaults}
    exec(f"def __init__(self, {params}):\n{body}\n", namespace)
    return namespace["__init__"]


class Record:
    __slots__: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields = cls.__dict__.get("__slots__", ())
        if not fields:
            return
        defaults = cls.__dict__.get("_defaults", {})
        unknown = set(defaults) - set(fields)
        if unknown:
            raise TypeError(f"{cls.__name__}: defaults for fields it does not have: {sorted(unknown)}")
        first_default = next((index for index, name in enumerate(fields) if name in defaults), len(fields))
        if any(name not in defaults for name in fields[first_default:]):
            raise TypeError(f"{cls.__name__}: fields with defaults must come last in __slots__")
        cls.__init__ = _initializer(cls, fields, defaults)  # type: ignore[method-assign]  # the point

    if TYPE_CHECKING:
        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def _values(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __hash__(self) -> int:
        return hash((type(self).__name__,) + self._values())

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.__slots__)
        return f"{type(self).__name__}({inner})"

    def replace(self, **changes: Any) -> Self:
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return type(self)(**values)
