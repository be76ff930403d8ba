"""Split a shell script into the simple commands it runs, with a real parser.

Only syntax lives here: which commands a script holds, the words of each
(with whether a word's value is known before the script runs), and every
construct that keeps the script from being proven plain. What the commands
mean (wrappers, builtins, rules) is `policy.commands`' business.

tree-sitter-bash is the parser (MIT, abi3 wheels, about 0.03 ms a command);
it is imported on the first script, never on the way to running a plain
argv. A hand-written splitter is what let deny rules be evaded with `&`,
`( )` and `{ }` elsewhere; bashlex is GPL and fails on `case` and `[[ ]]`.
"""

from __future__ import annotations

from .._record import Record

# How well a word's value is known before the script runs.
EXACT, GLOB, UNKNOWN = 0, 1, 2

# Nodes that only arrange commands: their commands are seen one by one.
_STRUCTURE = frozenset((
    "program", "list", "pipeline", "subshell", "compound_statement", "negated_command",
    "redirected_statement", "do_group", "if_statement", "elif_clause", "else_clause",
    "while_statement", "for_statement", "case_statement", "case_item", "comment",
))
# Operators between commands whose meaning is only "run these".
_OPERATORS = frozenset(("&&", "||", ";", "&", "|", "|&", "\n", "(", ")", "{", "}", "!", "if", "then",
                        "elif", "else", "fi", "while", "until", "do", "done", "for", "in", "case",
                        "esac", ")", ";;", ";&", ";;&"))
_WORDS = frozenset(("word", "string", "raw_string", "number", "concatenation", "ansi_c_string",
                    "translated_string", "simple_expansion", "expansion", "command_substitution",
                    "process_substitution", "arithmetic_expansion", "brace_expression"))
_CASE_ONLY = frozenset((";;", ";&", ";;&"))
_OUTPUT_REDIRECTS = frozenset((">", ">>", "&>", "&>>", ">|", ">&", "&>|"))
_ARITHMETIC_TESTS = ("-eq", "-ne", "-lt", "-le", "-gt", "-ge")
_MAX_DEPTH = 200
_MAX_REPAIRS = 8


class ShellCommand(Record):
    """One simple command of a script.

    `words` are the values the shell would pass (quotes removed), `kinds`
    says for each whether it is EXACT, a GLOB pattern, or UNKNOWN until run
    time; `assignments` the `NAME=value` prefixes (value None when unknown);
    `writes` whether its output is redirected to a file.
    """

    __slots__ = ("words", "kinds", "assignments", "writes", "line")
    words: tuple[str, ...]
    kinds: tuple[int, ...]
    assignments: tuple[tuple[str, str | None], ...]
    writes: bool
    line: int


class ShellScript(Record):
    """`commands` in source order; `unproven` why the script is not plain
    (empty when it is); `assigned` every variable name the script sets."""

    __slots__ = ("commands", "unproven", "assigned")
    commands: tuple[ShellCommand, ...]
    unproven: tuple[str, ...]
    assigned: frozenset[str]


_parser = None


def _get_parser():
    global _parser
    if _parser is None:
        try:
            import tree_sitter
            import tree_sitter_bash
        except ImportError as exc:  # a broken install must not read as "no commands"
            from ..errors import RingfenceError

            raise RingfenceError(f"cannot split shell scripts: {exc}",
                                 hint="pip install tree-sitter tree-sitter-bash (ringfence's dependencies)") from None
        _parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bash.language()))
    return _parser


def split_script(script: str) -> ShellScript:
    """The simple commands of `script` and what keeps it from being plain."""
    source = script.encode("utf-8", "surrogateescape")
    repaired = False
    for _ in range(_MAX_REPAIRS):
        walk = _Walk()
        root = _get_parser().parse(source).root_node
        if root.has_error:
            walk.unproven.append("the script does not parse as shell")
        walk.node(root, 0)
        if not walk.glued:
            break
        # tree-sitter-bash reads a line that starts with a backslash as more
        # words of the line before; the shell starts a new command there.
        for offset in sorted(set(walk.glued), reverse=True):
            source = source[:offset] + b";" + source[offset:]
        repaired = True
    else:
        walk.unproven.append("the script does not parse as shell")
    if repaired:
        walk.unproven.append("the parser joined lines the shell keeps apart")
    reasons = tuple(dict.fromkeys(walk.unproven))
    return ShellScript(tuple(walk.commands), reasons, frozenset(walk.assigned))


class _Walk:
    __slots__ = ("commands", "unproven", "assigned", "glued")

    def __init__(self):
        self.commands: list[ShellCommand] = []
        self.unproven: list[str] = []
        self.assigned: set[str] = set()
        self.glued: list[int] = []  # byte offsets of newlines the parser put inside a word

    def node(self, node, depth: int):
        if depth > _MAX_DEPTH:
            self.unproven.append("the script nests too deeply to be checked")
            return
        kind = node.type
        if node.is_error or node.is_missing:
            self.unproven.append("the script does not parse as shell")
        if kind == "command":
            self.command(node, depth, writes=False)
            return
        if kind == "redirected_statement":
            self.redirected(node, depth)
            return
        if kind in ("variable_assignment", "variable_assignments"):
            self.assignment(node, depth)
            return
        if kind == "declaration_command" or kind == "unset_command":
            self.declaration(node, depth)
            return
        if kind == "function_definition":
            self.unproven.append("it defines a function")
        elif kind == "test_command":
            self.test(node, depth)
            return
        elif kind == "compound_statement" and node.child_count and node.children[0].type == "((":
            self.unproven.append("arithmetic evaluation can run commands")
        elif kind not in _STRUCTURE:
            self.unproven.append(f"it uses {kind.replace('_', ' ')}")
        for child in node.children:
            if child.type == "variable_name":  # for NAME in ...
                self.assigned.add(_text(child))
            elif child.type in _WORDS:  # for's list, case's subject and patterns: values, not commands
                self.word(child, depth)
            elif child.is_named:
                self.node(child, depth + 1)
            elif child.type in _CASE_ONLY and kind != "case_item":
                self.unproven.append(f"stray {child.type}")
            elif child.type not in _OPERATORS:
                self.unproven.append(f"it uses the operator {child.type!r}")

    def command(self, node, depth: int, *, writes: bool, line: int | None = None):
        words, kinds, assignments = [], [], []
        for child in node.children:
            kind = child.type
            if kind == "variable_assignment":
                name, value, value_kind = self.assignment_value(child, depth)
                assignments.append((name, value if value_kind == EXACT else None))
            elif kind == "command_name":
                for part in child.children:
                    text, word_kind = self.word(part, depth)
                    words.append(text)
                    kinds.append(word_kind)
            elif kind == "file_redirect":
                writes = self.file_redirect(child, depth) or writes
            elif kind in ("herestring_redirect", "heredoc_redirect"):
                self.redirect_data(child, depth)
            elif child.is_named:
                text, word_kind = self.word(child, depth)
                words.append(text)
                kinds.append(word_kind)
        line = node.start_point[0] + 1 if line is None else line
        if words:
            self.commands.append(ShellCommand(tuple(words), tuple(kinds), tuple(assignments), writes, line))
        else:  # `NAME=value` alone sets a shell variable for what follows
            self.assigned.update(name for name, _ in assignments)

    def redirected(self, node, depth: int):
        writes = False
        body = None
        for child in node.children:
            if child.type == "file_redirect":
                writes = self.file_redirect(child, depth) or writes
            elif child.type in ("heredoc_redirect", "herestring_redirect"):
                self.redirect_data(child, depth)
            elif child.is_named and body is None:
                body = child
            elif child.is_named:
                self.node(child, depth + 1)
        if body is None:
            return
        if body.type == "command":
            self.command(body, depth, writes=writes)
            return
        before = len(self.commands)
        self.node(body, depth + 1)
        if writes:  # a compound statement's output goes to a file: each of its commands writes
            self.commands[before:] = [c.replace(writes=True) for c in self.commands[before:]]

    def file_redirect(self, node, depth: int) -> bool:
        """True when the redirect sends output to a file (not /dev/null, not a descriptor)."""
        operator = None
        target = None
        for child in node.children:
            if not child.is_named:
                operator = child.type
            elif child.type != "file_descriptor":
                target, _ = self.word(child, depth)
        if operator not in _OUTPUT_REDIRECTS or target is None:
            return False
        if operator in (">&", "&>") and target.isdigit() or target == "-":
            return False
        return target != "/dev/null"

    def redirect_data(self, node, depth: int):
        # tree-sitter puts what follows a here-doc's start line (`| sh`, `&& x`)
        # inside the redirect node: those are commands like any other.
        quoted = False
        for child in node.children:
            kind = child.type
            if kind == "heredoc_start":
                quoted = any(c in child.text for c in b"'\"\\")
            elif kind == "heredoc_body":
                if not quoted:
                    for part in child.children:
                        if part.is_named and part.type != "heredoc_content":
                            self.word(part, depth)
            elif kind in ("heredoc_end", "file_descriptor") or not child.is_named:
                continue
            elif kind in ("string", "raw_string", "word", "concatenation", "ansi_c_string", "number",
                          "simple_expansion", "expansion", "command_substitution", "translated_string"):
                self.word(child, depth)
            else:
                self.node(child, depth + 1)

    def assignment(self, node, depth: int):
        if node.type == "variable_assignments":
            for child in node.children:
                if child.type == "variable_assignment":
                    self.assignment(child, depth)
            return
        name, _, _ = self.assignment_value(node, depth)
        self.assigned.add(name)

    def assignment_value(self, node, depth: int):
        name, value, kind = "", "", EXACT
        for child in node.children:
            if child.type == "variable_name":
                name = _text(child)
            elif child.type == "subscript":
                name = _text(child)
                self.unproven.append("an array subscript is evaluated as arithmetic")
            elif child.type == "array":
                kind = UNKNOWN
                for element in child.children:
                    if element.is_named:
                        self.word(element, depth)
            elif child.is_named:
                value, kind = self.word(child, depth)
        return name, value, kind

    def declaration(self, node, depth: int):
        for child in node.children:
            if child.type == "variable_assignment":
                self.assignment(child, depth)
            elif child.type == "variable_name":
                self.assigned.add(_text(child))
            elif child.is_named:
                text, kind = self.word(child, depth)
                if kind == EXACT and text and not text.startswith("-"):
                    self.assigned.add(text.split("=", 1)[0])
                if "$(" in text or "`" in text:
                    self.unproven.append("a declaration's value can be evaluated as code")

    def test(self, node, depth: int):
        text = _text(node)
        expansions: list = []
        self._collect_expansions(node, expansions, depth)
        if expansions and any(op in text for op in _ARITHMETIC_TESTS):
            self.unproven.append("[[ ]] evaluates variables as arithmetic, which can run commands")
        self._collect_substitutions(node, depth)

    def _collect_expansions(self, node, found: list, depth: int):
        for child in node.children:
            if child.type in ("simple_expansion", "expansion", "command_substitution"):
                found.append(child)
            elif child.is_named and depth < _MAX_DEPTH:
                self._collect_expansions(child, found, depth + 1)

    def _collect_substitutions(self, node, depth: int):
        for child in node.children:
            if child.type in ("command_substitution", "process_substitution", "arithmetic_expansion"):
                self.word(child, depth)
            elif child.is_named and depth < _MAX_DEPTH:
                self._collect_substitutions(child, depth + 1)

    def word(self, node, depth: int) -> tuple[str, int]:
        """The value of a word node and how well it is known."""
        kind = node.type
        if kind == "word":
            raw = node.text
            if b"\n" in raw:
                newline = _unescaped_newline(raw)
                if newline >= 0:
                    self.glued.append(node.start_byte + newline)
            return _unquoted_word(_text(node))
        if kind == "number":
            return _text(node), EXACT
        if kind == "raw_string":
            return _text(node)[1:-1], EXACT
        if kind == "ansi_c_string":
            return _ansi_c(_text(node)[2:-1])
        if kind == "string":
            return self.string(node, depth)
        if kind == "translated_string":
            for child in node.children:
                if child.type == "string":
                    return self.string(child, depth)
            return "", UNKNOWN
        if kind == "concatenation":
            texts, worst = [], EXACT
            for child in node.children:
                text, part_kind = self.word(child, depth)
                texts.append(text)
                worst = max(worst, part_kind)
            joined = "".join(texts)
            if worst < UNKNOWN and _looks_like_brace_expansion(node):
                worst = UNKNOWN
            return joined, worst
        if kind in ("simple_expansion", "expansion"):
            if kind == "expansion" and b"@P" in node.text:
                self.unproven.append("prompt expansion (${x@P}) runs command substitutions")
            self._collect_substitutions(node, depth)
            return _text(node), UNKNOWN
        if kind == "command_substitution":
            self.unproven.append("it uses command substitution ($(...) or backticks)")
            self.inner(node, depth)
            return _text(node), UNKNOWN
        if kind == "process_substitution":
            self.unproven.append("it uses process substitution (<(...) or >(...))")
            self.inner(node, depth)
            return _text(node), UNKNOWN
        if kind == "arithmetic_expansion":
            self.unproven.append("arithmetic evaluation can run commands")
            self._collect_substitutions(node, depth)
            return _text(node), UNKNOWN
        if kind == "brace_expression":
            return _text(node), UNKNOWN
        if node.is_error or node.is_missing:
            self.unproven.append("the script does not parse as shell")
        self.unproven.append(f"it uses {kind.replace('_', ' ')}")
        self.inner(node, depth)
        return _text(node), UNKNOWN

    def string(self, node, depth: int) -> tuple[str, int]:
        texts, worst = [], EXACT
        for child in node.children:
            if not child.is_named:
                continue
            if child.type == "string_content":
                texts.append(_double_quoted(_text(child)))
            else:
                text, part_kind = self.word(child, depth)
                texts.append(text)
                worst = max(worst, UNKNOWN if part_kind else EXACT)
        return "".join(texts), worst

    def inner(self, node, depth: int):
        for child in node.children:
            if child.is_named:
                self.node(child, depth + 1)


def _text(node) -> str:
    return node.text.decode("utf-8", "surrogateescape")


def _unquoted_word(text: str) -> tuple[str, int]:
    """An unquoted word: backslashes removed; unescaped glob characters make it
    a pattern, a leading `~` makes it depend on the environment."""
    if "\\" not in text and not any(c in text for c in "*?[~"):
        return text, EXACT
    out, kind, index = [], EXACT, 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text):
            if text[index + 1] != "\n":
                out.append(text[index + 1])
            index += 2
            continue
        if char in "*?[":
            kind = max(kind, GLOB)
        elif char == "~" and index == 0:
            kind = UNKNOWN
        out.append(char)
        index += 1
    return "".join(out), kind


def _unescaped_newline(raw: bytes) -> int:
    index = 0
    while index < len(raw):
        if raw[index] == 0x5C:  # a backslash escapes the next byte (a newline: a continuation)
            index += 2
            continue
        if raw[index] == 0x0A:
            return index
        index += 1
    return -1


def _double_quoted(text: str) -> str:
    if "\\" not in text:
        return text
    out, index = [], 0
    while index < len(text):
        char = text[index]
        if char == "\\" and index + 1 < len(text) and text[index + 1] in '$`"\\\n':
            if text[index + 1] != "\n":
                out.append(text[index + 1])
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)


_ANSI_SIMPLE = {"a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "f": "\f", "n": "\n", "r": "\r", "t": "\t",
                "v": "\v", "\\": "\\", "'": "'", '"': '"', "?": "?"}


_HEX = frozenset("0123456789abcdefABCDEF")
_OCTAL = frozenset("01234567")


def _ansi_c(body: str) -> tuple[str, int]:
    """Decode bash's $'...' escapes; anything unusual makes the value UNKNOWN."""
    out, index = [], 0
    while index < len(body):
        char = body[index]
        if char != "\\" or index + 1 >= len(body):
            out.append(char)
            index += 1
            continue
        code = body[index + 1]
        if code in _ANSI_SIMPLE:
            out.append(_ANSI_SIMPLE[code])
            index += 2
        elif code in "xuU" or code in _OCTAL:
            hexadecimal = code in "xuU"
            start = index + 2 if hexadecimal else index + 1
            width = {"x": 2, "u": 4, "U": 8}.get(code, 3)
            alphabet = _HEX if hexadecimal else _OCTAL
            end = start
            while end - start < width and end < len(body) and body[end] in alphabet:
                end += 1
            if end == start:
                return body, UNKNOWN
            value = int(body[start:end], 16 if hexadecimal else 8)
            out.append(chr(value if hexadecimal else value & 0xFF))
            index = end
        else:
            return body, UNKNOWN
    return "".join(out), EXACT


def _looks_like_brace_expansion(node) -> bool:
    raw = []
    for child in node.children:
        if child.type == "word":
            raw.append(_text(child))
        elif child.type == "brace_expression":
            return True
        else:
            raw.append("\0")
    text = "".join(raw)
    start = text.find("{")
    return start >= 0 and "}" in text[start:] and ("," in text[start:] or ".." in text[start:])
