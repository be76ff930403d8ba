"""Command rules: may this command run, must a person be asked, or is it refused?

Rules come from TOML `[[rules]]` and from `.rules` files (`policy.rules_file`).
A rule is a token-exact prefix; a position may list alternatives. Decisions,
strictest first: forbidden > prompt > allow; a command no rule matches is
`no-rule`, and what follows from that is the approval policy's business.

What is decided is every simple command the argv would run, not the argv
alone:

- Wrappers are looked through (`env`, `command`, `exec`, `nice`, `timeout`,
  `xargs`, `sudo`, `nohup`, `stdbuf`, `time`, `setsid`, `find -exec`): the
  wrapper and the command it runs are both decided.
- `sh|bash|zsh|dash|ksh -c SCRIPT` is split into its simple commands
  (`policy.shell`), each decided the same way, nested shells included.
- A command is allowed only when every command in it is allowed. A rule
  that allows a wrapper (`env`) does not allow what it runs; one that names
  what it runs (`sudo apt`) does. An allow never carries through `sudo`.
- What cannot be proven plain (command substitution, `eval`, `source`,
  functions, `$VAR` as a command name, a shell reading a file or its input,
  options of a wrapper this module does not know, parse errors) is never
  allowed, unless an allow rule names that exact text (as "always" answers
  write). It is `prompt` when the rules hold any `prompt` or `forbidden`
  rule, since what cannot be checked could be that command; with none, it
  is `no-rule` (there is nothing it could evade: the approval policy
  decides, and `untrusted` asks, since it is never on the read-only list).
  A `forbidden` command found anywhere inside still forbids the lot.
- A word known only at run time (`$F`, a glob) cannot be matched for sure:
  where it could complete a forbidden or prompt rule, the command is
  `prompt`; it never completes an allow rule.

Program names: a rule for `ls` matches `ls`, and a path whose directory is
on the command's `PATH` (`/bin/ls`, `/usr/bin/ls`, `./ls` run from
`/usr/bin`), or, when the rules declare `host_executable(name="ls", ...)`,
only the paths listed there. A workspace `./rm` is not `rm`. A rule whose
first token is an absolute path matches that file however it is spelled.
"""

from __future__ import annotations

import os

from .._record import Record
from .wrappers import EXACT, UNKNOWN, WRAPPERS, parse_wrapper, shell_script_index

TYPE_CHECKING = False
if TYPE_CHECKING:  # `typing` loads `re`, and this module is on the `run` path
    from typing import Final, Literal

    Verdict = Literal["allow", "prompt", "forbidden", "no-rule"]
    RuleDecision = Literal["allow", "prompt", "forbidden"]

ALLOW: Final = "allow"
PROMPT: Final = "prompt"
FORBIDDEN: Final = "forbidden"
NO_RULE: Final = "no-rule"
# Between rules matching one command: the strictest wins.
_STRICTNESS = {NO_RULE: 0, ALLOW: 1, PROMPT: 2, FORBIDDEN: 3}
# Across the commands of one argv: allowed only if every one is.
_AGGREGATE = {ALLOW: 0, NO_RULE: 1, PROMPT: 2, FORBIDDEN: 3}

_MAX_NESTING = 16

SHELLS = frozenset(("sh", "bash", "zsh", "dash", "ksh", "mksh", "ash"))
# Codex's list of commands that read and never write, for `untrusted`.
SAFE_COMMANDS = frozenset("""cat cd cut echo expr false grep head id ls nl paste pwd rev seq stat tail tr true
uname uniq wc which whoami numfmt tac""".split())
_FIND_UNSAFE = frozenset(("-exec", "-execdir", "-ok", "-okdir", "-delete", "-fls", "-fprint", "-fprint0",
                          "-fprintf"))
_RG_UNSAFE = frozenset(("--pre", "--hostname-bin", "--search-zip", "-z"))
# Builtins that run text as code, or change what a name means for what follows.
_RUNS_TEXT = frozenset(("eval", "trap"))
_RUNS_FILE = frozenset(("source", "."))
_UNCHECKABLE = frozenset(("alias", "enable", "coproc", "let"))
_CHANGES_LOOKUP = frozenset(("cd", "pushd", "popd", "hash"))
# Builtins that evaluate a name like `a[$(cmd)]` as arithmetic.
_EVALUATING_BUILTINS = frozenset(("printf", "read", "mapfile", "readarray", "unset", "test", "[", "wait",
                                  "declare", "typeset", "local", "export", "readonly"))


class CommandRule(Record):
    """One rule. `pattern` is a tuple of tokens, each a string or a tuple of
    alternatives; `label` is how the rule reads where it was written, and
    `origin` where that is (file:line, or a configuration key)."""

    __slots__ = ("pattern", "decision", "origin", "label", "justification")
    _defaults = {"justification": None}
    pattern: tuple[str | tuple[str, ...], ...]
    decision: RuleDecision
    origin: str
    label: str
    justification: str | None

    @property
    def prefix(self) -> tuple[str, ...]:
        return tuple(token if isinstance(token, str) else "[" + "|".join(token) + "]" for token in self.pattern)


class HostExecutable(Record):
    """`host_executable(name, paths)`: the only files a rule for `name` matches by path."""

    __slots__ = ("name", "paths", "origin")
    name: str
    paths: tuple[str, ...]
    origin: str


class RuleMatch(Record):
    """A rule that matched `command` (one command inside what was asked, or
    a wrapper around one) at its first words, `prefix`; `certain` is False
    when a word known only at run time could complete it."""

    __slots__ = ("rule", "command", "prefix", "certain")
    rule: CommandRule
    command: tuple[str, ...]
    prefix: tuple[str, ...]
    certain: bool

    @property
    def label(self) -> str:
        return self.rule.label

    @property
    def origin(self) -> str:
        return self.rule.origin

    @property
    def justification(self) -> str | None:
        return self.rule.justification

    @property
    def decision(self) -> str:
        return self.rule.decision


class CommandPart(Record):
    """One command found in what was asked, and how it was decided.

    `argv` is the command as it will run (after wrappers and shells), `via`
    the wrappers and shells it was found inside, `unproven` why it could not
    be proven plain (None when it is), `safe` whether it is on the read-only
    list `untrusted` runs without asking, `cover` the words an allow rule
    must name to allow this command (what an "always" answer remembers;
    None when no rule could, because a word is known only at run time).
    """

    __slots__ = ("argv", "decision", "via", "matches", "unproven", "safe", "rule", "why", "cover")
    argv: tuple[str, ...]
    decision: Verdict
    via: tuple[str, ...]
    matches: tuple[RuleMatch, ...]
    unproven: str | None
    safe: bool
    rule: CommandRule | None
    why: str
    cover: tuple[str, ...] | None


class CommandDecision(Record):
    """The decision on one argv: the verdict, the rule that made it, every
    rule that matched, each command found, and why, in one sentence each."""

    __slots__ = ("decision", "rule", "matches", "parts", "why")
    _defaults = {"matches": (), "parts": (), "why": ""}
    decision: Verdict
    rule: CommandRule | None
    matches: tuple[RuleMatch, ...]
    parts: tuple[CommandPart, ...]
    why: str

    @property
    def safe(self) -> bool:
        return bool(self.parts) and all(part.safe for part in self.parts)


class _Context:
    """Where a command is looked up: its PATH, its working directory, and
    whether an earlier command may have changed either (`cd`, `PATH=`)."""

    __slots__ = ("path", "cwd", "loose", "dirs")

    def __init__(self, path: str | None, cwd: str, loose: bool = False):
        self.path = path
        self.cwd = cwd
        self.loose = loose
        self.dirs: frozenset[str] | None = None

    def with_changes(self, *, path=..., cwd=None, loose=None) -> _Context:
        return _Context(self.path if path is ... else path, cwd or self.cwd, self.loose if loose is None else loose)

    def path_dirs(self) -> frozenset:
        if self.dirs is None:
            found = set()
            for entry in (self.path if self.path is not None else os.defpath).split(os.pathsep):
                found.add(os.path.realpath(os.path.join(self.cwd, entry or ".")))
            self.dirs = frozenset(found)
        return self.dirs


class _Layer:
    """One step from what was asked towards a command that runs: its argv,
    how well each word is known, how many leading words are the wrapper's
    own (a rule must reach past them to cover what it runs), and whether
    an allow may carry through it."""

    __slots__ = ("argv", "kinds", "inner", "transparent", "context", "via")

    def __init__(self, argv, kinds, inner, transparent, context, via):
        self.argv = argv
        self.kinds = kinds
        self.inner = inner
        self.transparent = transparent
        self.context = context
        self.via = via


class _Bucket:
    """The rules for one program, also indexed by their second token: a
    program with hundreds of rules is matched against a handful."""

    __slots__ = ("rules", "by_second", "short")

    def __init__(self, rules: list):
        self.rules = rules
        self.by_second: dict[str, list] = {}
        self.short = []
        for rule in rules:
            if len(rule.pattern) == 1:
                self.short.append(rule)
                continue
            second = rule.pattern[1]
            for token in (second,) if isinstance(second, str) else second:
                self.by_second.setdefault(token, []).append(rule)

    def candidates(self, argv, kinds):
        if len(argv) < 2:
            return self.short
        if kinds is not None and kinds[1] != EXACT:
            return self.rules
        return self.short + self.by_second.get(argv[1], [])


class CommandRules:
    """The command rules of a policy. Immutable; decisions are pure apart from
    looking up programs on the command's PATH."""

    __slots__ = ("rules", "host_executables", "files", "_by_token", "_by_path", "_hosts", "_guarded")
    rules: tuple[CommandRule, ...]
    host_executables: tuple[HostExecutable, ...]
    files: tuple[str, ...]
    _by_token: dict[str, _Bucket]
    _by_path: dict[str, _Bucket]
    _hosts: dict[str, frozenset[str]]
    _guarded: bool

    def __init__(self, rules=(), host_executables=(), files=()):
        rules = tuple(rules)
        object.__setattr__(self, "rules", rules)
        object.__setattr__(self, "host_executables", tuple(host_executables))
        object.__setattr__(self, "files", tuple(files))
        by_token: dict[str, list] = {}
        by_path: dict[str, list] = {}
        for rule in rules:
            first = rule.pattern[0]
            for program in (first,) if isinstance(first, str) else first:
                by_token.setdefault(program, []).append(rule)
                if program.startswith("/"):
                    by_path.setdefault(os.path.realpath(program), []).append(rule)
        hosts: dict[str, frozenset] = {}
        for host in self.host_executables:
            listed = set(hosts.get(host.name, ()))
            for path in host.paths:
                listed.add(os.path.normpath(path))
                listed.add(os.path.realpath(path))
            hosts[host.name] = frozenset(listed)
        object.__setattr__(self, "_by_token", {key: _Bucket(found) for key, found in by_token.items()})
        object.__setattr__(self, "_by_path", {key: _Bucket(found) for key, found in by_path.items()})
        object.__setattr__(self, "_hosts", hosts)
        # Whether anything could hide in a command that cannot be checked.
        object.__setattr__(self, "_guarded", any(rule.decision != ALLOW for rule in rules))

    def __setattr__(self, name, value):
        raise AttributeError("CommandRules is immutable")

    def __eq__(self, other):
        if not isinstance(other, CommandRules):
            return NotImplemented
        return (self.rules, self.host_executables) == (other.rules, other.host_executables)

    def __hash__(self):
        return hash((self.rules, self.host_executables))

    def __repr__(self):
        return f"CommandRules({len(self.rules)} rules, {len(self.host_executables)} host executables)"

    def extended(self, rules=(), host_executables=(), files=()) -> CommandRules:
        return CommandRules(self.rules + tuple(rules), self.host_executables + tuple(host_executables),
                            self.files + tuple(files))

    # -- deciding -----------------------------------------------------------------

    def decide(self, argv, *, env: dict | None = None, cwd: str | None = None) -> CommandDecision:
        """Decide `argv` as it would run with environment `env` (for its PATH)
        in `cwd`. Without `env`, this process's environment is assumed."""
        argv = tuple(os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in argv)
        if not argv:
            raise ValueError("empty command")
        source_env = os.environ if env is None else env
        context = _Context(source_env.get("PATH"), os.path.abspath(cwd) if cwd else _cwd())
        parts: list = []
        self._expand(argv, None, context, (), 0, parts)
        cache: dict = {}
        decided = [self._decide_part(chain, unproven, writes, cache) for chain, unproven, writes in parts]
        return _combine(decided)

    def covers(self, argv, *, env: dict | None = None, cwd: str | None = None) -> bool:
        """Whether these rules already allow `argv` (an "always" answer then adds nothing)."""
        return self.decide(argv, env=env, cwd=cwd).decision == ALLOW

    def _expand(self, argv, kinds, context, chain, depth, parts):
        """Collect [chain of layers, why unproven, writes] for every command `argv` runs."""
        layer = _Layer(argv, kinds, 0, True, context, chain[-1].via + (_short(chain[-1]),) if chain else ())
        if depth > _MAX_NESTING:
            parts.append([chain + (layer,), "wrappers and shells nest too deeply to be checked", False])
            return
        if kinds is not None and kinds[0] != EXACT:
            parts.append([chain + (layer,), "the command name is known only at run time", False])
            return
        program = argv[0]
        name = program.rsplit("/", 1)[-1]
        if name in SHELLS:
            self._expand_shell(layer, chain, depth, parts)
            return
        syntax = WRAPPERS.get(name)
        if syntax is not None:
            self._expand_wrapper(syntax, layer, chain, depth, parts)
            return
        if name == "find":
            self._expand_find(layer, chain, depth, parts)
            return
        unproven = None
        if kinds is not None:  # builtins matter only inside a script
            if program in _RUNS_TEXT or program in _RUNS_FILE or program in _UNCHECKABLE:
                unproven = {"eval": "eval runs text as code", "trap": "trap runs text as code later",
                            "source": "source runs a file as shell code", ".": ". runs a file as shell code",
                            }.get(program, f"{program} changes what later commands mean")
                layer.inner = len(argv) - 1  # only a rule naming the whole text covers it
                if program in _RUNS_TEXT and len(argv) > 1 and all(k == EXACT for k in kinds[1:]):
                    # Still unproven, but a forbidden command in the text is found.
                    self._expand_script(" ".join(argv[1:]) if program == "eval" else argv[1], layer, chain,
                                        depth, parts)
            elif program in _EVALUATING_BUILTINS and any("$(" in w or "`" in w for w in argv[1:]):
                unproven = f"{program} can evaluate a word as arithmetic, which runs command substitutions"
                layer.inner = len(argv) - 1
        parts.append([chain + (layer,), unproven, False])

    def _expand_shell(self, layer, chain, depth, parts):
        argv = layer.argv
        script_at, reason = shell_script_index(argv)
        if script_at is None:
            layer.inner = len(argv) - 1
            parts.append([chain + (layer,), reason, False])
            if reason:  # an unknown option: whatever follows could be a command
                self._scan_forbidden(layer, chain, parts, start=1)
            return
        if layer.kinds is not None and layer.kinds[script_at] != EXACT:
            layer.inner = script_at
            parts.append([chain + (layer,), "the script is known only at run time", False])
            return
        layer.inner = script_at
        self._expand_script(argv[script_at], layer, chain, depth, parts)

    def _expand_script(self, script, layer, chain, depth, parts):
        from .shell import split_script

        split = split_script(script)
        outer = chain + (layer,)
        loose = layer.context.loose or "PATH" in split.assigned or any(
            c.words[0] in _CHANGES_LOOKUP or c.words[0] in _RUNS_FILE for c in split.commands)
        base = layer.context.with_changes(loose=loose)
        for command in split.commands:
            if not command.words or not command.words[0] and command.kinds[0] == EXACT:
                continue
            context = base
            for variable, value in command.assignments:
                if variable == "PATH":
                    context = context.with_changes(path=value, loose=True if value is None else None)
            before = len(parts)
            self._expand(command.words, command.kinds, context, outer, depth + 1, parts)
            if command.writes:
                for part in parts[before:]:
                    part[2] = True
        if split.unproven:
            parts.append([outer, "; ".join(split.unproven), False])

    def _expand_wrapper(self, syntax, layer, chain, depth, parts):
        argv, kinds = layer.argv, layer.kinds
        parsed = parse_wrapper(syntax, argv, kinds, layer.context)
        layer.transparent = syntax.transparent
        if isinstance(parsed, str):  # options it does not know: it runs something, but what?
            layer.inner = len(argv) - 1
            parts.append([chain + (layer,), parsed, False])
            self._scan_forbidden(layer, chain, parts, start=1)
            return
        if parsed is None:  # runs nothing (`env` alone prints the environment)
            parts.append([chain + (layer,), None, False])
            return
        start, inner_argv, inner_kinds, context = parsed
        layer.inner = start
        if syntax.appends:  # xargs adds words read from its input: known only at run time
            inner_kinds = (inner_kinds or (EXACT,) * len(inner_argv)) + (UNKNOWN,)
            inner_argv = inner_argv + ("<input>",)
        self._expand(inner_argv, inner_kinds, context, chain + (layer,), depth + 1, parts)

    def _expand_find(self, layer, chain, depth, parts):
        argv, kinds = layer.argv, layer.kinds
        parts.append([chain + (layer,), None, False])
        index = 1
        while index < len(argv):
            if argv[index] in ("-exec", "-execdir", "-ok", "-okdir"):
                end = index + 1
                while end < len(argv) and argv[end] not in (";", "+"):
                    end += 1
                if end > index + 1:
                    runner = _Layer(argv, kinds, index + 1, True, layer.context, layer.via)
                    self._expand(argv[index + 1:end], kinds[index + 1:end] if kinds else None, layer.context,
                                 chain + (runner,), depth + 1, parts)
                index = end
            index += 1

    def _scan_forbidden(self, layer, chain, parts, *, start: int):
        """After syntax this module cannot follow: any word that starts a
        forbidden rule is taken to be run."""
        argv = layer.argv
        for index in range(start, len(argv)):
            if layer.kinds is not None and layer.kinds[index] != EXACT:
                continue
            if argv[index] in self._by_token or argv[index].rsplit("/", 1)[-1] in self._by_token:
                sub = _Layer(argv[index:], layer.kinds[index:] if layer.kinds else None, 0, True, layer.context,
                             layer.via + (_short(layer),))
                if any(match.rule.decision == FORBIDDEN for match in self._match(sub)):
                    parts.append([chain + (layer, sub), "found after syntax that could not be followed", False])

    # -- matching -----------------------------------------------------------------

    def _program_names(self, program: str, context: _Context):
        """(names a rule's first token matches for sure, names it only could)."""
        certain = [program]
        loose: list[str] = []
        if "/" not in program:
            if self._by_path:
                found = _which(program, context)
                if found:
                    certain.append(found)
            return certain, loose
        path = os.path.normpath(os.path.join(context.cwd, program))
        real = os.path.realpath(path)
        certain.append(path)
        if real != path:
            certain.append(real)
        for candidate in (path, real) if real != path else (path,):
            base = candidate.rsplit("/", 1)[-1]
            listed = self._hosts.get(base)
            if listed is not None:
                if path in listed or real in listed:
                    certain.append(base)
            elif os.path.realpath(os.path.dirname(candidate)) in context.path_dirs():
                certain.append(base)
            elif context.loose:
                loose.append(base)
        return certain, loose

    def _match(self, layer) -> list[RuleMatch]:
        argv = layer.argv
        certain_names, loose_names = self._program_names(argv[0], layer.context)
        found: dict[int, RuleMatch] = {}
        for names, sure in ((certain_names, True), (loose_names, False)):
            for name in names:
                bucket = (self._by_path.get(name) or self._by_token.get(name)) if name.startswith("/") \
                    else self._by_token.get(name)
                if bucket is None:
                    continue
                for rule in bucket.candidates(argv, layer.kinds):
                    result = _rest_matches(rule.pattern, argv, layer.kinds)
                    if result is None:
                        continue
                    certain = sure and result
                    previous = found.get(id(rule))
                    if previous is None or (certain and not previous.certain):
                        found[id(rule)] = RuleMatch(rule, argv, argv[:len(rule.pattern)], certain)
        return list(found.values())

    def _decide_part(self, chain, unproven, writes, cache) -> CommandPart:
        payload = chain[-1]
        matches: list[RuleMatch] = []
        covering = None
        blocked = False  # an allow must come from outside every layer it cannot carry through
        per_layer = []
        for layer in chain:
            layer_matches = cache.get(id(layer))
            if layer_matches is None:
                layer_matches = cache[id(layer)] = self._match(layer) if self.rules else []
            per_layer.append(layer_matches)
            matches.extend(layer_matches)
        for index, layer in enumerate(chain):
            if covering is None and not blocked:
                for match in per_layer[index]:
                    if match.rule.decision == ALLOW and match.certain and len(match.rule.pattern) > layer.inner:
                        covering = match
                        break
            if not layer.transparent:
                blocked = True
        forbidden = next((m for m in matches if m.rule.decision == FORBIDDEN and m.certain), None)
        doubtful = next((m for m in matches if m.rule.decision != ALLOW and not m.certain), None)
        prompting = next((m for m in matches if m.rule.decision == PROMPT and m.certain), None)
        command = display_argv(payload.argv)
        where = f" (inside {', '.join(payload.via)})" if payload.via else ""
        if forbidden is not None:
            verdict, rule = FORBIDDEN, forbidden.rule
            why = f"{display_argv(forbidden.prefix)}{where} is forbidden by {_cite(rule)}"
        elif prompting is not None:
            verdict, rule = PROMPT, prompting.rule
            why = f"{display_argv(prompting.prefix)}{where} needs approval by {_cite(rule)}"
        elif doubtful is not None:
            verdict, rule = PROMPT, doubtful.rule
            known = payload.kinds is None or all(kind == EXACT for kind in payload.kinds)
            reason = ("the script changes the directory or PATH first, so which program this is is not certain"
                      if known else "a word in it is known only at run time")
            why = f"{command}{where} could match {_cite(rule)} ({doubtful.rule.decision}): {reason}"
        elif unproven is not None and covering is None and self._guarded:
            verdict, rule = PROMPT, None
            why = f"{command}{where} cannot be checked: {unproven}"
        elif unproven is not None and covering is None:
            verdict, rule = NO_RULE, None
            why = (f"{command}{where} cannot be checked ({unproven}); with no prompt or forbidden rule, there is "
                   "nothing it could evade")
        elif covering is not None:
            verdict, rule = ALLOW, covering.rule
            why = f"{command}{where} is allowed by {_cite(rule)}"
        else:
            verdict, rule = NO_RULE, None
            why = f"no rule matches {command}{where}"
        safe = (unproven is None and not writes and verdict != FORBIDDEN and all(layer.transparent for layer in chain)
                and _is_safe(payload))
        return CommandPart(payload.argv, verdict, payload.via, tuple(matches), unproven, safe, rule, why,
                           _cover(chain))


def names_unchecked_text(rule: CommandRule) -> bool:
    """Whether an allow `rule` could allow a command that cannot be checked:
    one whose program runs text or other commands (a shell, `eval`, a
    wrapper), which a rule allows only by naming the whole text."""
    first = rule.pattern[0]
    for program in (first,) if isinstance(first, str) else first:
        name = program.rsplit("/", 1)[-1]
        if (name in SHELLS or name in WRAPPERS or name == "find" or name in _RUNS_TEXT or name in _RUNS_FILE
                or name in _UNCHECKABLE or name in _EVALUATING_BUILTINS):
            return True
    return False


def _cover(chain) -> tuple[str, ...] | None:
    """What an allow rule must name to allow the last layer of `chain`: its
    own words, or the whole of the outermost layer an allow cannot pass."""
    layer = next((layer for layer in chain if not layer.transparent), chain[-1])
    if layer.kinds is not None and any(kind != EXACT for kind in layer.kinds):
        return None
    return layer.argv


def _combine(parts: list) -> CommandDecision:
    verdict = max((part.decision for part in parts), key=_AGGREGATE.__getitem__)
    deciding = [part for part in parts if part.decision == verdict]
    rule = next((part.rule for part in deciding if part.rule is not None), None)
    matches = tuple(dict.fromkeys(match for part in parts for match in part.matches))
    if verdict == ALLOW and len(parts) > 1:
        why = "every command is allowed: " + "; ".join(dict.fromkeys(part.why for part in parts))
    else:
        why = "; ".join(dict.fromkeys(part.why for part in deciding))
    return CommandDecision(verdict, rule, matches, tuple(parts), why)


def _rest_matches(pattern, argv, kinds):
    """True: `argv` starts with `pattern` (its first token already matched);
    False: it could, given words known only at run time; None: it does not."""
    if len(argv) < len(pattern):
        return None
    sure = True
    for index in range(1, len(pattern)):
        token = pattern[index]
        word = argv[index]
        if kinds is not None and kinds[index] != EXACT:
            if kinds[index] == UNKNOWN:
                return False  # and the rest cannot be placed: the word may split or vanish
            if not _glob_could_be(word, token):
                return None
            sure = False
            continue
        if word != token if isinstance(token, str) else word not in token:
            return None
    return sure


def _glob_could_be(pattern: str, token) -> bool:
    import fnmatch

    options = (token,) if isinstance(token, str) else token
    return any(fnmatch.fnmatchcase(option, pattern) for option in options)


def _which(program: str, context: _Context) -> str | None:
    for directory in (context.path if context.path is not None else os.defpath).split(os.pathsep):
        candidate = os.path.join(context.cwd, directory or ".", program)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.realpath(candidate)
    return None


def _cwd() -> str:
    try:
        return os.getcwd()
    except FileNotFoundError:
        return "/"


# -- the read-only list (untrusted) ------------------------------------------------------


def _is_safe(layer: _Layer) -> bool:
    argv = layer.argv
    name = argv[0]
    if "/" in name:
        base = name.rsplit("/", 1)[-1]
        if os.path.realpath(os.path.dirname(os.path.join(layer.context.cwd, name))) not in layer.context.path_dirs():
            return False
        name = base
    exact = layer.kinds is None or all(kind == EXACT for kind in layer.kinds)
    if name in SAFE_COMMANDS:
        return True
    if not exact:
        return False
    if name == "base64":
        return not any(a in ("-o", "--output") or a.startswith("--output=") or a.startswith("-o") for a in argv[1:])
    if name == "find":
        return not any(a in _FIND_UNSAFE for a in argv[1:])
    if name == "rg":
        return not any(a in _RG_UNSAFE or a.split("=", 1)[0] in _RG_UNSAFE for a in argv[1:])
    if name == "sed":
        return len(argv) in (3, 4) and argv[1] == "-n" and _is_line_print(argv[2])
    return False


def _is_line_print(expression: str) -> bool:
    if not expression.endswith("p"):
        return False
    numbers = expression[:-1].split(",")
    return 1 <= len(numbers) <= 2 and all(n.isdigit() for n in numbers)


# -- text -------------------------------------------------------------------------------


def _short(layer: _Layer) -> str:
    argv = layer.argv
    name = argv[0].rsplit("/", 1)[-1]
    if name in SHELLS and layer.inner:
        return f"{name} {argv[layer.inner - 1]}" if layer.inner > 1 else name
    return name


def display_argv(argv) -> str:
    return " ".join(_quote(word) for word in argv)


_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_")


def _quote(word: str) -> str:
    if word and all(c in _PLAIN for c in word):
        return word
    return "'" + word.replace("'", "'\"'\"'") + "'"


def _cite(rule: CommandRule) -> str:
    text = f"{rule.label} [{rule.origin}]"
    if rule.justification:
        text += f": {rule.justification}"
    return text
