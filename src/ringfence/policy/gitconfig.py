"""git's config file syntax, read the way git reads it.

ringfence must know where a repository's hooks live (`core.hooksPath`) and
which files git reads (`include.path`), or the sandbox could plant a hook
that git on the host runs. A reader that is looser or stricter than git
misses settings git honours, so this follows git's own parser (config.c):
a key may follow its section header on the same line, `#` and `;` start a
comment anywhere outside quotes, quotes and backslash escapes may appear
anywhere in a value, and a backslash at the end of a line continues it.
Spawning `git config` instead would cost a process per run, and git may
not be installed when the sandbox runs yet be used on the host later.
"""

from __future__ import annotations

from ..paths import read_regular_file

_ESCAPES = {"n": "\n", "t": "\t", "b": "\b", '"': '"', "\\": "\\"}
_SPACE = " \t\r\n"


def read(path: str) -> list[tuple[str, str, str | None]]:
    """(section, key, value) for each setting of one file, in order; [] if it
    cannot be read. `section` is what git puts before the key: `core`,
    `a.b` for `[a.b]`, `includeif.gitdir:x` for `[includeIf "gitdir:x"]`; a
    key without `=` has the value None (boolean true)."""
    data = read_regular_file(path)
    if data is None:
        return []
    return parse(data.decode("utf-8", errors="replace"))


def parse(text: str) -> list[tuple[str, str, str | None]]:
    """As `read`, for the text of a config file. Stops at the first line git
    would reject (git then refuses the whole file, so nothing after it runs)."""
    # git skips a UTF-8 byte-order mark, reads CRLF as LF, and counts only
    # space, tab, CR and LF as white space (not \v or \f).
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    settings: list[tuple[str, str, str | None]] = []
    section = ""  # git accepts keys before any section header (they belong to none)
    position, length = 0, len(text)
    while position < length:
        char = text[position]
        if char in " \t\r\n":
            position += 1
        elif char in "#;":
            position = _end_of_line(text, position)
        elif char == "[":
            section, position = _section(text, position + 1)
            if section is None:
                return settings
        elif char.isalpha():
            start = position
            while position < length and (text[position].isalnum() or text[position] == "-"):
                position += 1
            key = text[start:position].lower()
            while position < length and text[position] in " \t":
                position += 1
            if position >= length or text[position] in "\r\n":
                settings.append((section, key, None))
            elif text[position] == "=":
                value, position = _value(text, position + 1)
                if value is None:
                    return settings
                settings.append((section, key, value))
            else:
                return settings  # git allows nothing else after a key, not even a comment
        else:
            return settings
    return settings


def _end_of_line(text: str, position: int) -> int:
    end = text.find("\n", position)
    return len(text) if end < 0 else end + 1


def _section(text: str, position: int):
    """The section after `[` (`core`, `a.b`, or `includeif.<subsection>`, the
    name lower case, a quoted subsection as written), and where parsing
    resumes; None for a header git rejects."""
    name: list[str] = []
    length = len(text)
    while position < length:
        char = text[position]
        position += 1
        if char == "]":
            return "".join(name).lower(), position
        if char in _SPACE:
            base = "".join(name).lower()
            while char in _SPACE:
                if char == "\n" or position >= length:
                    return None, position
                char = text[position]
                position += 1
            if char != '"':
                return None, position
            subsection: list[str] = []
            while position < length:
                char = text[position]
                position += 1
                if char == "\n":
                    return None, position
                if char == '"':
                    if position < length and text[position] == "]":
                        return base + "." + "".join(subsection), position + 1
                    return None, position
                if char == "\\":
                    if position >= length or text[position] == "\n":
                        return None, position
                    char = text[position]
                    position += 1
                subsection.append(char)
            return None, position
        if not (char.isalnum() or char in "-."):
            return None, position
        name.append(char)
    return None, position


def _value(text: str, position: int):
    """A value after `=`, as git's parse_value builds it; None where git would
    report a bad line (an open quote at the end of a line, an unknown escape)."""
    value: list[str] = []
    quoted = in_comment = False
    spaces = 0
    length = len(text)
    while position < length:
        char = text[position]
        position += 1
        if char == "\n":
            if quoted:
                return None, position
            break
        if in_comment:
            continue
        if char in _SPACE and not quoted:
            if value:
                spaces += 1
            continue
        if not quoted and char in "#;":
            in_comment = True
            continue
        value.extend(" " * spaces)
        spaces = 0
        if char == "\\":
            if position >= length:
                return None, position
            escaped = text[position]
            position += 1
            if escaped == "\n":
                continue  # a continued line
            if escaped not in _ESCAPES:
                return None, position
            value.append(_ESCAPES[escaped])
        elif char == '"':
            quoted = not quoted
        else:
            value.append(char)
    if quoted:
        return None, position
    # git's strings end at a NUL; what follows never reaches a path
    return "".join(value).split("\0", 1)[0], position
