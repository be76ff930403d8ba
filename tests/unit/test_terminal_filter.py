"""The filter between the sandbox's output and the user's terminal."""

import os

import pytest
from hypothesis import given, strategies as st

from ringfence.launcher.terminal import TerminalFilter

PAYLOAD = b"\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07"
# Every spelling a terminal acts on that the filter must drop.
DENIED = [
    PAYLOAD,
    b"\x1b]52;c;eA==\x1b\\",
    b"\x9d52;c;eA==\x9c",
    b"\x1b]052;c;eA==\x07",
    b"\x1b]0052;c;eA==\x07",
    b"\x1b]1337;File=name=eA==;inline=0:eA==\x07",
    b"\x1b]1337;SetUserVar=x=eA==\x1b\\",
    b"\x1b]5522;type=write;mime=text/plain\x1b\\",
    b"\x1b]5113;ac=send;id=x\x1b\\",
    b"\x1b[21t",
    b"\x1b[20t",
]


def run(chunks):
    f = TerminalFilter()
    return b"".join(f.feed(chunk) for chunk in chunks)


def split(data, cuts):
    points = sorted({min(c, len(data)) for c in cuts})
    chunks, last = [], 0
    for point in points:
        chunks.append(data[last:point])
        last = point
    chunks.append(data[last:])
    return chunks


def test_plain_output_passes_unchanged():
    text = b"hello \x1b[31mred\x1b[0m \x1b]0;title\x07 \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\ world\n"
    assert run([text]) == text


@pytest.mark.parametrize("sequence", DENIED)
def test_every_spelling_is_dropped(sequence):
    assert run([b"a" + sequence + b"b"]) == b"ab"


@given(st.sampled_from(DENIED), st.lists(st.integers(min_value=0, max_value=80), max_size=6))
def test_split_anywhere_the_sequence_is_still_dropped(sequence, cuts):
    data = b"before" + sequence + b"after"
    assert run(split(data, cuts)) == b"beforeafter"


@given(st.binary(max_size=200), st.lists(st.integers(min_value=0, max_value=200), max_size=4))
def test_output_without_the_sequences_is_never_altered(data, cuts):
    if any(marker in data for marker in (b"\x1b", b"\x9d", b"\x9b")):
        return
    f = TerminalFilter()
    out = b"".join(f.feed(chunk) for chunk in split(data, cuts)) + f.pending
    assert out == data


def test_other_osc_numbers_pass():
    for number in (b"0", b"2", b"7", b"8", b"133", b"520", b"5"):
        sequence = b"\x1b]" + number + b";x\x07"
        assert run([sequence]) == sequence


def test_random_noise_around_sequences():
    noise = os.urandom(64).replace(b"\x1b", b"").replace(b"\x9d", b"").replace(b"\x9b", b"")
    assert run([noise + PAYLOAD + noise]) == noise + noise


def test_modes_left_on_are_reset_and_the_cursor_shown():
    f = TerminalFilter()
    f.feed(b"\x1b[?1049h\x1b[?1000;1006h\x1b[?2004h\x1b[?25l")
    f.feed(b"\x1b[?1006l")
    reset = f.reset_sequence()
    assert reset == b"\x1b[?2004l\x1b[?1049l\x1b[?1000l\x1b[?25h"
    clean = TerminalFilter()
    clean.feed(b"\x1b[?1049h\x1b[?1049l\x1b[?25l\x1b[?25h")
    assert clean.reset_sequence() == b""
