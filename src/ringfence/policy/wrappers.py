"""How wrappers spell their own options, so that the command they run is found.

`env`, `timeout`, `sudo` and the rest take options (some with values) and
sometimes operands before the command they run. Each is described as data
(`Syntax`); one scanner reads them all. An option the description does not
know is reported, never skipped: the caller then treats what follows as
possibly run. Shells are here too: which word of `sh -c ...` is the script.
"""

from __future__ import annotations

import os

from .._record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import EllipsisType

EXACT, GLOB, UNKNOWN = 0, 1, 2  # as in policy.shell, which is imported only for scripts


class Syntax(Record):
    """How a wrapper's own options are spelled, so that the command it runs is found.

    `values`/`flags`: short option letters taking a value or not;
    `optional`: letters whose value can only be attached (`-i{}`);
    `long_values`/`long_flags`: long options; `operands`: words before the
    command (timeout's duration); `assignments`: NAME=VALUE words allowed
    before the command; `quiet`: options after which nothing runs;
    `unchecked`: options that make it run something this module cannot see;
    `transparent`: whether an allow for the command carries through it;
    `appends`: whether it adds words of its own to the command (xargs).
    """

    __slots__ = ("values", "flags", "optional", "long_values", "long_flags", "operands", "assignments",
                 "quiet", "unchecked", "transparent", "numeric", "appends")
    _defaults = {"optional": "", "long_values": (), "long_flags": (), "operands": 0, "assignments": False,
                 "quiet": (), "unchecked": (), "transparent": True, "numeric": False, "appends": False}
    values: str
    flags: str
    optional: str
    long_values: tuple[str, ...]
    long_flags: tuple[str, ...]
    operands: int
    assignments: bool
    quiet: tuple[str, ...]
    unchecked: tuple[str, ...]
    transparent: bool
    numeric: bool
    appends: bool


WRAPPERS = {
    "env": Syntax("uCSP", "i0v", long_values=("--unset", "--chdir", "--split-string"),
                  long_flags=("--ignore-environment", "--null", "--debug", "--block-signal", "--default-signal",
                              "--ignore-signal"),
                  assignments=True, quiet=("--list-signal-handling", "--help", "--version")),
    "command": Syntax("", "p", quiet=("-v", "-V")),
    "exec": Syntax("a", "cl"),
    "builtin": Syntax("", ""),
    "nice": Syntax("n", "", long_values=("--adjustment",), numeric=True),
    "timeout": Syntax("ks", "v", long_values=("--kill-after", "--signal"),
                      long_flags=("--preserve-status", "--foreground", "--verbose"), operands=1,
                      quiet=("--help", "--version")),
    "xargs": Syntax("adELnPs", "0oprtx", optional="eil",
                    long_values=("--arg-file", "--delimiter", "--max-args", "--max-procs", "--max-chars",
                                 "--process-slot-var"),
                    long_flags=("--null", "--open-tty", "--interactive", "--no-run-if-empty", "--verbose",
                                "--exit", "--eof", "--replace", "--max-lines"),
                    quiet=("--show-limits", "--help", "--version"), appends=True),
    "sudo": Syntax("CDghpRrTtUu", "AbEHKkLNnPSB",
                   long_values=("--close-from", "--chdir", "--group", "--host", "--prompt", "--role", "--type",
                                "--command-timeout", "--other-user", "--user", "--chroot"),
                   long_flags=("--askpass", "--background", "--bell", "--preserve-env", "--set-home",
                               "--remove-timestamp", "--reset-timestamp", "--non-interactive",
                               "--preserve-groups", "--stdin"),
                   assignments=True, quiet=("-l", "--list", "-v", "--validate", "-V", "--version", "-h", "--help"),
                   unchecked=("-e", "--edit", "-s", "--shell", "-i", "--login"), transparent=False),
    "doas": Syntax("uC", "Ln", unchecked=("-s",), transparent=False),
    "nohup": Syntax("", ""),
    "stdbuf": Syntax("ioe", "", long_values=("--input", "--output", "--error")),
    "time": Syntax("fo", "apqv", long_values=("--format", "--output"),
                   long_flags=("--append", "--portability", "--verbose", "--quiet")),
    "setsid": Syntax("", "cfw", long_flags=("--ctty", "--fork", "--wait")),
}


def parse_wrapper(syntax: Syntax, argv, kinds, context):
    """(index of the command, its argv, its word kinds, its context), None when
    the wrapper runs nothing, or a reason when its options cannot be followed."""
    index, count = 1, len(argv)
    path: str | EllipsisType | None = ...  # `...`: the PATH as it is; None: no PATH
    cwd, extra = None, ()
    name = argv[0].rsplit("/", 1)[-1]

    def value_of(option_value):
        nonlocal path, cwd, extra
        letter, value = option_value
        if name == "env":
            if letter in ("u", "--unset") and value == "PATH":
                path = None
            elif letter in ("C", "--chdir"):
                cwd = os.path.join(context.cwd, value)
            elif letter in ("S", "--split-string"):
                extra = value

    while index < count:
        word = argv[index]
        if kinds is not None and kinds[index] != EXACT:
            return f"{name}'s options are known only at run time"
        if word == "--":
            index += 1
            break
        if word in syntax.quiet:
            return None
        if word in syntax.unchecked:
            return f"{name} {word} runs something that cannot be checked"
        if word.startswith("--"):
            option, has_value, value = word.partition("=")
            if option in syntax.long_values:
                if not has_value:
                    if index + 1 >= count:
                        return f"{name} {option} needs a value"
                    value = argv[index + 1]
                    index += 1
                value_of((option, value))
            elif option not in syntax.long_flags:
                return f"{name} has an option this check does not know: {word}"
            elif option == "--ignore-environment":
                path = None
            index += 1
            continue
        if word == "-" and name == "env":
            path = None
            index += 1
            continue
        if word.startswith("-") and len(word) > 1:
            if syntax.numeric and word[1:].isdigit():
                index += 1
                continue
            position = 1
            while position < len(word):
                letter = word[position]
                if letter in syntax.flags:
                    if name == "env" and letter == "i":
                        path = None
                    position += 1
                    continue
                if letter in syntax.optional:
                    break
                if letter in syntax.values:
                    value = word[position + 1:]
                    if not value:
                        if index + 1 >= count:
                            return f"{name} -{letter} needs a value"
                        index += 1
                        value = argv[index]
                    value_of((letter, value))
                    break
                if f"-{letter}" in syntax.quiet:
                    return None
                if f"-{letter}" in syntax.unchecked:
                    return f"{name} -{letter} runs something that cannot be checked"
                return f"{name} has an option this check does not know: -{letter}"
            index += 1
            continue
        break
    index += syntax.operands
    if syntax.assignments:
        while index < count and _is_assignment(argv[index]):
            variable, _, value = argv[index].partition("=")
            if variable == "PATH":
                path = value
            index += 1
    if extra:
        if "$" in extra or "\\" in extra or "#" in extra:
            return "env -S splits a string this check cannot follow"
        import shlex

        try:
            words = tuple(shlex.split(extra))
        except ValueError:
            return "env -S splits a string this check cannot follow"
        argv = argv[:index] + words + argv[index:]
        if kinds is not None:
            kinds = kinds[:index] + (EXACT,) * len(words) + kinds[index:]
        count = len(argv)
    if index >= count:
        return None
    changed = context.with_changes(path=path, cwd=cwd)
    return index, argv[index:], kinds[index:] if kinds is not None else None, changed


def _is_assignment(word: str) -> bool:
    name, equals, _ = word.partition("=")
    return bool(equals) and bool(name) and (name[0].isalpha() or name[0] == "_") and \
        all(c.isalnum() or c == "_" for c in name)


def shell_script_index(argv):
    """(index of the script after -c, None) or (None, why it cannot be checked)."""
    index, script_mode, stdin = 1, False, False
    while index < len(argv):
        word = argv[index]
        if word in ("--", "-"):
            index += 1
            break
        if word.startswith("--"):
            if word in ("--login", "--norc", "--noprofile", "--posix", "--noediting", "--restricted",
                        "--verbose"):
                index += 1
                continue
            if word in ("--rcfile", "--init-file"):
                index += 2
                continue
            return None, f"{argv[0]} has an option this check does not know: {word}"
        if word[:1] in "-+" and len(word) > 1:
            consume = 0
            for letter in word[1:]:
                if letter == "c":
                    script_mode = True
                elif letter == "s":
                    stdin = True
                elif letter in "oO":
                    consume += 1
                elif letter not in "abefhiklmnprtuvxBCEHPT":
                    return None, f"{argv[0]} has an option this check does not know: {word}"
            index += 1 + consume
            continue
        break
    if script_mode:
        if index >= len(argv):
            return None, None  # `sh -c` without a script runs nothing
        return index, None
    if stdin or index >= len(argv):
        return None, f"{argv[0]} reads commands from its input, which cannot be checked"
    return None, f"{argv[0]} runs the script file {argv[index]}, whose commands cannot be checked"
