"""Text that ringfence itself shows, made safe for a terminal.

What ringfence prints can hold names it did not choose: paths the sandbox
created, a project's configuration and rules, the output of git run on the
sandbox's commits. On a terminal, a control character in a name is a
command: it can move the cursor, rewrite a warning, set the clipboard or
type into the shell. Shown escaped, it is only text.
"""

from __future__ import annotations

# Lone surrogates stand for the bytes of a name that is not UTF-8 (as
# os.fsdecode gives it); written out they would be those bytes again.
_SURROGATE_BYTES = range(0xDC80, 0xDD00)


def printable(text: str) -> str:
    """`text` with every character that is not printable (controls, line
    breaks, bidirectional and invisible formatting, bytes that are not
    UTF-8) escaped as \\xNN, \\uNNNN or \\UNNNNNNNN."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else _escaped(char) for char in text)


def printable_lines(text: str) -> str:
    """`text` made printable line by line: its own line breaks stay."""
    return "\n".join(printable(line) for line in text.split("\n"))


def _escaped(char: str) -> str:
    code = ord(char)
    if code in _SURROGATE_BYTES:
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"
