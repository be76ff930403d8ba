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


COMPILE_AFTER = 64


class Record:
    __slots__: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        fields = cls.__dict__.get("__slots__", ())
        if not fields:
            return
        defaults = cls.__dict__.get("_defaults", {})
        # Checked here, not when the compiled __init__ first fails: that is only
        # after COMPILE_AFTER builds, which a test may never reach.
        unknown = set(defaults) - set(fields)
        if unknown:
            raise TypeError(f"{cls.__name__}: defaults for fields it does not have: {sorted(unknown)}")
        first_default = next((index for index, name in enumerate(fields) if name in defaults), len(fields))
        if any(name not in defaults for name in fields[first_default:]):
            raise TypeError(f"{cls.__name__}: fields with defaults must come last in __slots__")
        # A generated __init__ is several times faster than the generic one
        # below, and policies hold thousands of rules.
        params = ", ".join(f"{name}=_d[{name!r}]" if name in defaults else name for name in fields)
        body = "\n".join(f"    _set(self, {name!r}, {name})" for name in fields)
        namespace = {"_set": object.__setattr__, "_d": defaults}
        source = f"def __init__(self, {params}):\n{body}\n"

        built = [0]

        def early_init(self, *args, **kwargs):
            # Compiled only once a class is built often: the `run` path
            # defines dozens of records and builds most of them a few times,
            # and each compile costs as much as a hundred generic builds.
            built[0] += 1
            if built[0] >= COMPILE_AFTER:
                exec(source, namespace)
                cls.__init__ = namespace["__init__"]
            Record.__init__(self, *args, **kwargs)

        cls.__init__ = early_init  # type: ignore[method-assign]  # replacing __init__ is the point

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        fields = self.__slots__
        if len(args) > len(fields):
            raise TypeError(f"{type(self).__name__} takes {len(fields)} fields")
        values = dict(zip(fields, args))
        for name, value in kwargs.items():
            if name not in fields or name in values:
                raise TypeError(f"{type(self).__name__}: unexpected or repeated field {name!r}")
            values[name] = value
        defaults = getattr(type(self), "_defaults", {})
        for name in fields:
            if name in values:
                value = values[name]
            elif name in defaults:
                value = defaults[name]
            else:
                raise TypeError(f"{type(self).__name__}: missing field {name!r}")
            object.__setattr__(self, name, value)

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
