"""`[cloud] additional_mounts`: what an isolated run sees beside its workspace.

An isolated run sees the read-only base system, its overlay of the
workspace, a private /tmp and these mounts, nothing of the user's home
otherwise. A mount's `target` defaults to its `source`; `readonly`
defaults to true, so a mount that writes to the host says so.
"""

from __future__ import annotations

from .._record import Record
from ..paths import canonical, expand_home


class AdditionalMount(Record):
    """`source` on the host (canonical), `target` inside, `readonly`, and
    `origin` (the key and file that asked for it)."""

    __slots__ = ("source", "target", "readonly", "origin")
    source: str
    target: str
    readonly: bool
    origin: str

    def describe(self) -> str:
        access = "read-only" if self.readonly else "writable"
        where = self.source if self.target == self.source else f"{self.source} at {self.target}"
        return f"{where} ({access}; {self.origin})"


def additional_mounts(config, home: str) -> tuple[AdditionalMount, ...]:
    setting = config.get("cloud", "additional_mounts")
    if setting is None:
        return ()
    mounts = []
    for index, entry in enumerate(setting.value):
        source = canonical(expand_home(entry["source"].value, home))
        target = entry["target"].value if "target" in entry else source
        target = expand_home(target, home).rstrip("/") or "/"
        readonly = entry["readonly"].value if "readonly" in entry else True
        mounts.append(AdditionalMount(source, target, readonly, f"{setting.key}[{index}] ({setting.source})"))
    return tuple(mounts)
