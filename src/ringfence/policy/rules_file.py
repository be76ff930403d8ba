"""`.rules` files: Codex's `prefix_rule(...)` and `host_executable(...)`, read as data.

A rules file is parsed with Python's `ast` and only a whitelist of literal
forms is accepted: top-level calls of `prefix_rule` and `host_executable`
with keyword arguments whose values are strings or (nested) lists of
strings. Nothing in the file is ever evaluated, so a file that imports,
reads attributes, builds comprehensions, calls `load()` or uses a name is
refused before anything runs. The files are Starlark in Codex; ringfence
does not embed a Starlark interpreter because every real rules file is
literals, and an interpreter would execute loops and functions in a file
whose only job is to be data (and starlark-pyo3 and the pure-Python
`starlark` cannot even be installed side by side). Starlark and Python
agree on this subset.

A `prefix_rule` without `decision` is an error, not an allow as in Codex:
the author of a file copied between tools must say what they mean, and a
rule that silently allows is the one mistake a rules file must not make.
"""

from __future__ import annotations

import os

from .._record import Record
from ..errors import ConfigError
from .commands import ALLOW, FORBIDDEN, PROMPT, CommandRule, CommandRules, HostExecutable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .commands import RuleDecision

DECISIONS = (ALLOW, PROMPT, FORBIDDEN)
MAX_FILE_BYTES = 1 << 20
_PREFIX_RULE_KEYS = ("pattern", "decision", "justification", "match", "not_match")
_HOST_KEYS = ("name", "paths")


class RulesError(ConfigError):
    """A rules file is invalid; the message names file, line and what is wrong."""

    def __init__(self, path: str, line: int | None, message: str, *, hint: str | None = None):
        self.path = path
        self.line = line
        super().__init__(f"{path}:{line}" if line else path, "", message, hint=hint)


class RulesFile(Record):
    __slots__ = ("path", "rules", "host_executables")
    path: str
    rules: tuple[CommandRule, ...]
    host_executables: tuple[HostExecutable, ...]


def parse_rules(text: str, path: str, *, home: str | None = None) -> RulesFile:
    """Read the rules in `text` (the contents of `path`) without executing anything."""
    import ast

    try:
        tree = ast.parse(text, filename=path, mode="exec")
    except SyntaxError as exc:
        raise RulesError(path, exc.lineno, f"not a rules file: {exc.msg}",
                         hint="rules files hold prefix_rule(...) and host_executable(...) calls") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise RulesError(path, None, f"not a rules file: {exc}") from None
    rules, hosts = [], []
    for statement in tree.body:
        line = statement.lineno
        if not isinstance(statement, ast.Expr) or not isinstance(statement.value, ast.Call):
            raise RulesError(path, line, f"only prefix_rule(...) and host_executable(...) calls are allowed, "
                                         f"not {_what(statement)}")
        call = statement.value
        if not isinstance(call.func, ast.Name):
            raise RulesError(path, line, f"only prefix_rule(...) and host_executable(...) calls are allowed, "
                                         f"not a call of {_what(call.func)}")
        function = call.func.id
        if function not in ("prefix_rule", "host_executable"):
            extra = " (load() is not supported: put every rule in the files of the rules directory)" \
                if function == "load" else ""
            raise RulesError(path, line, f"unknown function {function}(){extra}",
                             hint="use prefix_rule(pattern=..., decision=...) or host_executable(name=..., paths=...)")
        if call.args:
            raise RulesError(path, line, f"{function}() takes its arguments by name, such as pattern=[...]")
        arguments = {}
        for keyword in call.keywords:
            if keyword.arg is None:
                raise RulesError(path, line, f"{function}() does not take **arguments")
            if keyword.arg in arguments:
                raise RulesError(path, keyword.value.lineno, f"{function}(): {keyword.arg} given twice")
            arguments[keyword.arg] = (_literal(keyword.value, path), keyword.value.lineno)
        if function == "prefix_rule":
            rules.append(_prefix_rule(arguments, path, line))
        else:
            hosts.append(_host_executable(arguments, path, line, home))
    return RulesFile(path, tuple(rules), tuple(hosts))


def load_rules_file(path: str, *, home: str | None = None, cache_dir: str | None = None) -> RulesFile:
    """Read a rules file; with `cache_dir`, reuse an earlier reading of the identical file.

    Parsing costs about 30 us a rule (500 rules: 15 ms), more than the rest
    of start-up. A cached reading is used only while inode, size, mtime and
    ctime all match (ctime cannot be set from user space), so an edited file
    is read, and its examples checked, again.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        raise RulesError(path, None, f"cannot read: {exc.strerror}",
                         hint="a rules file must be a regular file, not a symlink") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        identity = (path, home, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
        cache = _cache_path(cache_dir, path) if cache_dir else None
        cached = _read_cache(cache, identity) if cache else None
        if cached is not None:
            return cached
        data = handle.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise RulesError(path, None, f"larger than {MAX_FILE_BYTES} bytes", hint="split it into several files")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RulesError(path, None, f"not UTF-8 (byte {exc.start})") from None
    loaded = parse_rules(text, path, home=home)
    if cache:
        _write_cache(cache, identity, loaded)
    return loaded


def _cache_path(cache_dir: str, path: str) -> str:
    import zlib

    return os.path.join(cache_dir, f"rules-{zlib.crc32(os.fsencode(path)):08x}.bin")


def _read_cache(cache: str, identity) -> RulesFile | None:
    import marshal

    try:
        with open(cache, "rb") as handle:
            stored = marshal.loads(handle.read())
        if stored[0] != identity:
            return None
        rules = tuple(CommandRule(*fields) for fields in stored[1])
        hosts = tuple(HostExecutable(*fields) for fields in stored[2])
    except (OSError, EOFError, ValueError, TypeError, IndexError):
        return None
    return RulesFile(identity[0], rules, hosts)


def _write_cache(cache: str, identity, loaded: RulesFile):
    import marshal

    from ..state import write_cache

    write_cache(cache, marshal.dumps((identity, [r._values() for r in loaded.rules],
                                      [h._values() for h in loaded.host_executables])))


def rules_directories(home: str, project_root: str | None, project_trusted: bool) -> list[str]:
    """Where rules files are read from: the user's, then a trusted project's."""
    from ..config import user_config_dir

    found = [os.path.join(user_config_dir(home), "rules")]
    if project_root and project_trusted:
        project = os.path.join(project_root, ".ringfence", "rules")
        if os.path.realpath(project) != os.path.realpath(found[0]):
            found.append(project)
    return found


def rules_files(directory: str) -> list[str]:
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise RulesError(directory, None, f"cannot list the rules directory: {exc.strerror}") from None
    return [os.path.join(directory, name) for name in sorted(names) if name.endswith(".rules")]


def user_rules_path(home: str) -> str:
    """The file an "always" answer appends to."""
    from ..config import user_config_dir

    return os.path.join(user_config_dir(home), "rules", "default.rules")


# -- the whitelist ---------------------------------------------------------------------------


def _literal(node, path: str):
    """A string, or a list of literals; anything else is refused, never evaluated."""
    import ast

    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_literal(item, path) for item in node.elts]
    raise RulesError(path, getattr(node, "lineno", None),
                     f"only strings and lists of strings are allowed here, not {_what(node)}")


def _what(node) -> str:
    import ast

    names = {ast.Import: "an import", ast.ImportFrom: "an import", ast.Attribute: "attribute access",
             ast.ListComp: "a comprehension", ast.SetComp: "a comprehension", ast.DictComp: "a comprehension",
             ast.GeneratorExp: "a comprehension", ast.Lambda: "a lambda", ast.JoinedStr: "an f-string",
             ast.Name: "a name", ast.Call: "a call", ast.Assign: "an assignment", ast.FunctionDef: "a function",
             ast.BinOp: "an operator", ast.Subscript: "a subscript", ast.Starred: "unpacking",
             ast.Dict: "a dict", ast.Set: "a set", ast.Constant: "a constant", ast.For: "a loop",
             ast.While: "a loop", ast.If: "an if", ast.Expr: "an expression"}
    for kind, name in names.items():
        if isinstance(node, kind):
            if isinstance(node, ast.Name):
                return f"the name {node.id!r}"
            if isinstance(node, ast.Constant):
                return f"the constant {node.value!r}"
            return name
    return type(node).__name__


def _tokens_of(example, path: str, line: int, key: str) -> tuple[str, ...]:
    if isinstance(example, str):
        import shlex

        try:
            tokens = tuple(shlex.split(example))
        except ValueError as exc:
            raise RulesError(path, line, f"{key} example {example!r} cannot be split: {exc}") from None
    elif isinstance(example, list) and all(isinstance(item, str) for item in example):
        tokens = tuple(example)
    else:
        raise RulesError(path, line, f"{key} examples are strings or lists of strings")
    if not tokens:
        raise RulesError(path, line, f"{key} has an empty example")
    return tokens


def _prefix_rule(arguments: dict, path: str, line: int) -> CommandRule:
    unknown = [key for key in arguments if key not in _PREFIX_RULE_KEYS]
    if unknown:
        raise RulesError(path, arguments[unknown[0]][1], f"prefix_rule() has no argument {unknown[0]!r}",
                         hint="accepted: " + ", ".join(_PREFIX_RULE_KEYS))
    if "pattern" not in arguments:
        raise RulesError(path, line, "prefix_rule() needs pattern=[...]")
    raw, pattern_line = arguments["pattern"]
    if not isinstance(raw, list) or not raw:
        raise RulesError(path, pattern_line, "pattern must be a non-empty list of tokens")
    pattern: list[str | tuple[str, ...]] = []
    for token in raw:
        if isinstance(token, str) and token:
            pattern.append(token)
        elif isinstance(token, list) and token and all(isinstance(t, str) and t for t in token):
            pattern.append(token[0] if len(token) == 1 else tuple(token))
        else:
            raise RulesError(path, pattern_line, "each pattern token is a non-empty string, or a list of "
                                                 "non-empty strings (alternatives)")
    if "decision" not in arguments:
        raise RulesError(path, line, "prefix_rule() has no decision",
                         hint='say decision = "allow", "prompt" or "forbidden" (ringfence never assumes allow)')
    decision, decision_line = arguments["decision"]
    if decision not in DECISIONS:
        raise RulesError(path, decision_line, f"decision {decision!r} is not one of allow, prompt, forbidden")
    justification = arguments.get("justification", (None, line))[0]
    if justification is not None and not isinstance(justification, str):
        raise RulesError(path, line, "justification must be a string")
    rule = CommandRule(tuple(pattern), decision, f"{path}:{line}", rule_label(pattern, decision), justification)
    for key, must in (("match", True), ("not_match", False)):
        examples, example_line = arguments.get(key, ([], line))
        if not isinstance(examples, list):
            raise RulesError(path, example_line, f"{key} must be a list of examples")
        for example in examples:
            tokens = _tokens_of(example, path, example_line, key)
            if _matches_alone(rule.pattern, tokens) != must:
                shown = example if isinstance(example, str) else " ".join(example)
                raise RulesError(path, example_line,
                                 f"{key} example {shown!r} {'does not match' if must else 'matches'} "
                                 f"{rule.label}",
                                 hint="fix the pattern or the example; examples are checked every time rules load")
    return rule


def _matches_alone(pattern, tokens) -> bool:
    """Token-exact prefix match of one rule, as `match`/`not_match` examples are checked."""
    if len(tokens) < len(pattern):
        return False
    return all(word == token if isinstance(token, str) else word in token for word, token in zip(tokens, pattern))


def _host_executable(arguments: dict, path: str, line: int, home: str | None) -> HostExecutable:
    unknown = [key for key in arguments if key not in _HOST_KEYS]
    if unknown:
        raise RulesError(path, arguments[unknown[0]][1], f"host_executable() has no argument {unknown[0]!r}",
                         hint="accepted: name, paths")
    name = arguments.get("name", (None, line))[0]
    if not isinstance(name, str) or not name or "/" in name:
        raise RulesError(path, line, "host_executable() needs name = a program name without '/'")
    paths, paths_line = arguments.get("paths", (None, line))
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) for p in paths):
        raise RulesError(path, paths_line, "host_executable() needs paths = a list of absolute paths")
    resolved = []
    for item in paths:
        if item.startswith("~/") and home:
            item = os.path.join(home, item[2:])
        if not item.startswith("/"):
            raise RulesError(path, paths_line, f"host_executable path {item!r} is not absolute")
        if os.path.basename(item) != name:
            raise RulesError(path, paths_line, f"host_executable path {item!r} does not end in {name!r}")
        resolved.append(os.path.normpath(item))
    return HostExecutable(name, tuple(resolved), f"{path}:{line}")


def rule_label(pattern, decision: RuleDecision) -> str:
    import json

    tokens = ", ".join(json.dumps(t) if isinstance(t, str) else "[" + ", ".join(json.dumps(a) for a in t) + "]"
                       for t in pattern)
    return f'prefix_rule(pattern=[{tokens}], decision="{decision}")'


def rule_text(pattern, decision: RuleDecision = ALLOW, justification: str | None = None) -> str:
    """The line that adds this rule to a rules file."""
    text = rule_label(pattern, decision)
    if justification:
        import json

        text = text[:-1] + f", justification={json.dumps(justification)})"
    return text


# -- from configuration ------------------------------------------------------------------------


def command_rules(config) -> CommandRules:
    """The policy's command rules: TOML `[[rules]]` of every layer, then the
    user's rules files, then a trusted project's."""
    from .commands import CommandRules

    from ..state import state_dir

    rules = list(_toml_rules(config.get("rules")))
    hosts: list[HostExecutable] = []
    files: list[str] = []
    cache_dir = os.path.join(state_dir(config.home), "cache")
    for directory in rules_directories(config.home, config.project_root, config.project_trusted):
        for path in rules_files(directory):
            loaded = load_rules_file(path, home=config.home, cache_dir=cache_dir)
            rules.extend(loaded.rules)
            hosts.extend(loaded.host_executables)
            files.append(path)
    return CommandRules(tuple(rules), tuple(hosts), tuple(files))


def _toml_rules(setting):
    if setting is None:
        return
    import shlex

    for index, item in enumerate(setting.value):
        prefix_setting = item["prefix"]
        try:
            prefix = tuple(shlex.split(prefix_setting.value))
        except ValueError as exc:
            raise ConfigError(prefix_setting.source, f"rules.{index}.prefix", f"cannot be split: {exc}") from None
        if not prefix:
            raise ConfigError(prefix_setting.source, f"rules.{index}.prefix", "the prefix is empty")
        justification = item["justification"].value if "justification" in item else None
        if "decision" in item:
            decision = item["decision"].value
            label = f'[[rules]] prefix = "{prefix_setting.value}" decision = "{decision}"'
        else:
            allow = item["allow"].value
            decision = ALLOW if allow else FORBIDDEN
            label = f'[[rules]] prefix = "{prefix_setting.value}" allow = {str(allow).lower()}'
        yield CommandRule(prefix, decision, prefix_setting.source, label, justification)
