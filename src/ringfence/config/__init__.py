"""Configuration: find the layers, parse and validate each, merge them.

Layers, weakest first: built-in defaults (in code), the user's
`~/.ringfence/config.toml`, the project's `.ringfence/config.toml`, files
given with `--config`, `-c key=value` overrides, and command-line flags.
Whether the project layer only tightens is decided later, on the resulting
policies (see `policy.compare`), because only the policy shows what a key
does.
"""

from __future__ import annotations

import os
import stat

from .._record import Record
from ..errors import ConfigError
from ..paths import expand_home, read_regular_file
from .schema import Setting, validate_layer

__all__ = ["Config", "Layer", "Setting", "load_config", "find_project_root", "refuse_nul", "user_config_dir"]

DEFAULT_MARKERS = (".git",)


class Layer(Record):
    """One validated configuration source."""

    __slots__ = ("name", "source", "tree", "ignored")


class Config:
    """The merged settings of all layers, each value still naming its origin."""

    def __init__(self, layers: list, project_root: str, project_trusted: bool, cwd: str, home: str):
        self.layers = layers
        self.project_root = project_root
        self.project_trusted = project_trusted
        self.cwd = cwd
        self.home = home
        self.merged = _merge_with_codex_profile(layers)

    def get(self, *path):
        node = self.merged
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def value(self, *path, default=None):
        setting = self.get(*path)
        return default if setting is None else setting.value

    def without(self, layer_name: str) -> "Config":
        kept = [layer for layer in self.layers if layer.name != layer_name]
        return Config(kept, self.project_root, self.project_trusted, self.cwd, self.home)

    def without_setting(self, key: str) -> "Config":
        """The same layers with a top-level key removed from every one of them."""
        kept = [layer.replace(tree={k: v for k, v in layer.tree.items() if k != key}) for layer in self.layers]
        return Config(kept, self.project_root, self.project_trusted, self.cwd, self.home)

    def has_layer(self, layer_name: str) -> bool:
        return any(layer.name == layer_name for layer in self.layers)

    @property
    def sources(self) -> list[str]:
        return [layer.source for layer in self.layers]

    @property
    def ignored(self) -> list[str]:
        return [f"{layer.source}: {key}" for layer in self.layers for key in layer.ignored]


COMMAND_LINE_LAYERS = ("override", "flags")


def _merge_with_codex_profile(layers) -> dict:
    """Merge the layers; a Codex `profile = NAME` lays `[profiles.NAME]` over the
    file layers, and the command line still wins over both."""
    everything = merge([layer.tree for layer in layers])
    chosen = everything.get("profile")
    if chosen is None:
        return everything
    table = (everything.get("profiles") or {}).get(chosen.value)
    if table is None:
        available = ", ".join(sorted(everything.get("profiles") or {})) or "(none defined)"
        raise ConfigError(chosen.source, chosen.key, f'no [profiles.{chosen.value}] table', accepted=available)
    merged = merge([layer.tree for layer in layers if layer.name not in COMMAND_LINE_LAYERS])
    _merge_into(merged, table)
    for layer in layers:
        if layer.name in COMMAND_LINE_LAYERS:
            _merge_into(merged, layer.tree)
    return merged


def merge(trees: list) -> dict:
    merged: dict = {}
    for tree in trees:
        _merge_into(merged, tree)
    return merged


def _merge_into(target: dict, tree: dict):
    for key, value in tree.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge_into(target[key], value)
        elif isinstance(value, dict):
            target[key] = _copy_tree(value)
        elif key == "rules" and isinstance(target.get(key), Setting):
            # Command rules add up across layers; the strictest match decides.
            previous = target[key]
            target[key] = Setting(previous.value + value.value, value.source, value.key)
        else:
            target[key] = value


def _copy_tree(tree: dict) -> dict:
    return {k: _copy_tree(v) if isinstance(v, dict) else v for k, v in tree.items()}


def user_config_dir(home: str) -> str:
    override = os.environ.get("RINGFENCE_CONFIG_DIR")
    return override if override else os.path.join(home, ".ringfence")


def _read_toml(path: str, cache_dir: str | None = None) -> dict:
    """Parse a TOML file, reusing an earlier parse of the identical file.

    Importing tomllib (and the regex engine behind it) costs more than the rest
    of start-up, and config files rarely change. A cached parse is used only
    while inode, size, mtime and ctime all match; ctime cannot be set from user
    space, so an edited file is never mistaken for the cached one.
    """
    try:
        info = os.stat(path)
    except OSError as exc:
        raise ConfigError(path, "", f"cannot read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        # A FIFO (planted by a sandbox in a repository it made) would block every later start.
        raise ConfigError(path, "", "is not a regular file", hint="replace it with a file, or remove it")
    identity = (path, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    cache = None
    if cache_dir:
        import marshal
        import zlib

        cache = os.path.join(cache_dir, f"toml-{zlib.crc32(os.fsencode(path)):08x}.bin")
        try:
            with open(cache, "rb") as handle:
                stored = marshal.loads(handle.read())
            if stored[0] == identity:
                return stored[1]
        except (OSError, EOFError, ValueError, TypeError, IndexError):
            pass
    import tomllib

    content = read_regular_file(path, 1 << 24)
    if content is None:
        raise ConfigError(path, "", "cannot read it as a regular file")
    try:
        data = tomllib.loads(content.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(path, "", f"is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, "", f"invalid TOML: {exc}") from None
    if cache:
        try:
            encoded = marshal.dumps((identity, data))
        except ValueError:
            return data  # dates and times do not marshal; such files are parsed each time
        from ..state import write_cache

        write_cache(cache, encoded)
    return data


def parse_override(text: str) -> dict:
    """`-c key.path=value`: the key is a TOML dotted key, the value TOML or a bare string."""
    import tomllib

    source = f"-c {text}"
    if "=" not in text:
        raise ConfigError(source, "", "expected key=value", accepted="-c sandbox_mode=read-only")
    key, _, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if not key:
        raise ConfigError(source, "", "missing key before '='")
    try:
        return tomllib.loads(f"{key} = {value}")
    except tomllib.TOMLDecodeError:
        pass
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    try:
        return tomllib.loads(f"{key} = {quoted}")
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(source, key, f"cannot parse: {exc}") from None


def find_project_root(cwd: str, home: str, markers) -> str:
    """The nearest directory at or above `cwd` holding a marker, else `cwd`.

    The search stops below `$HOME`: a dotfiles repository in the home
    directory must not make the whole home the writable workspace.
    """
    current = cwd
    while True:
        if current == home and cwd != home:
            return cwd
        for marker in markers:
            if os.path.lexists(os.path.join(current, marker)):
                return current
        parent = os.path.dirname(current)
        if parent == current:
            return cwd
        current = parent


def load_config(*, cwd: str, home: str, config_files=(), overrides=(), flags: dict | None = None,
                read_user_config: bool = True) -> Config:
    from ..state import state_dir

    refuse_nul(cwd, "the working directory", "give the directory without it")
    refuse_nul(home, "the home directory", "give the directory without it")
    layers: list[Layer] = []
    cache_dir = os.path.join(state_dir(home), "cache")

    def add(name, source, raw, allow_trust):
        tree, ignored = validate_layer(raw, source, allow_trust=allow_trust)
        layers.append(Layer(name, source, tree, tuple(ignored)))

    user_file = os.path.join(user_config_dir(home), "config.toml")
    if read_user_config:
        if os.path.exists(user_file):
            add("user", user_file, _read_toml(user_file, cache_dir), True)
    late: list[tuple] = []
    for path in config_files:
        refuse_nul(path, "--config", "check the path given to --config")
        path = os.path.abspath(expand_home(path, home))
        if not os.path.isfile(path):
            raise ConfigError(path, "", "no such file", hint="check the path given to --config")
        late.append(("config-file", path, _read_toml(path, cache_dir), True))
    if overrides:
        combined: dict = {}
        for text in overrides:
            _deep_update(combined, parse_override(text))
        late.append(("override", "-c " + " -c ".join(overrides), combined, True))
    if flags:
        late.append(("flags", "command-line flags", flags, False))

    trusting = list(layers)
    for name, source, raw, allow_trust in late:
        if name != "flags":
            tree, _ = validate_layer(raw, source, allow_trust=allow_trust)
            trusting.append(Layer(name, source, tree, ()))
    probe = merge([layer.tree for layer in trusting])
    markers_setting = probe.get("project_root_markers")
    markers = tuple(markers_setting.value) if markers_setting else DEFAULT_MARKERS
    project_root = find_project_root(cwd, home, markers)
    trusted = _is_trusted(probe, project_root, home)

    project_file = os.path.join(project_root, ".ringfence", "config.toml")
    # Working in $HOME, the project's .ringfence is the user's own: read it once.
    if os.path.isfile(project_file) and not _same_file(project_file, user_file):
        add("project", project_file, _read_toml(project_file, cache_dir), False)
    for name, source, raw, allow_trust in late:
        add(name, source, raw, allow_trust)
    return Config(layers, project_root, trusted, cwd, home)


def refuse_nul(path: str, what: str, hint: str):
    """No file name holds a NUL: such a path would read as "no such file" here
    and raise ValueError from the first os call that takes it later."""
    if "\0" in path:
        shown = path.replace("\0", "\\0")
        raise ConfigError(f"{what} {shown}", "", "holds a NUL character, which no path can", hint=hint)


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _is_trusted(tree: dict, project_root: str, home: str) -> bool:
    projects = tree.get("projects") or {}
    root = os.path.realpath(project_root)
    for key, table in projects.items():
        path = os.path.realpath(expand_home(key, home))
        if path == root and "trust_level" in table:
            return table["trust_level"].value == "trusted"
    return False


def _deep_update(target: dict, update: dict):
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value
