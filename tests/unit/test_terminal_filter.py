"""The clipboard filter between the sandbox's pty and the user's terminal."""

import os

from hypothesis import given, strategies as st

from ringfence.launcher.terminal import ClipboardFilter

PAYLOAD = b"\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x07"


def run(chunks):
    f = ClipboardFilter()
    return b"".join(f.feed(chunk) for chunk in chunks)


def test_plain_output_passes_unchanged():
    text = b"hello \x1b[31mred\x1b[0m \x1b]0;title\x07 world\n"
    assert run([text]) == text


def test_clipboard_sequence_is_dropped_with_either_terminator():
    assert run([b"a" + PAYLOAD + b"b"]) == b"ab"
    assert run([b"a\x1b]52;c;eA==\x1b\\b"]) == b"ab"
    assert run([b"a\x9d52;c;eA==\x9cb"]) == b"ab"


@given(st.lists(st.integers(min_value=0, max_value=len(PAYLOAD) + 2), max_size=6))
def test_split_anywhere_the_sequence_is_still_dropped(cuts):
    data = b"before" + PAYLOAD + b"after"
    points = sorted({min(c + 6, len(data)) for c in cuts})
    chunks, last = [], 0
    for point in points:
        chunks.append(data[last:point])
        last = point
    chunks.append(data[last:])
    assert run(chunks) == b"beforeafter"


@given(st.binary(max_size=200))
def test_output_without_the_sequence_is_never_altered(data):
    if b"]52;" in data or b"\x9d52;" in data:
        return
    halves = [data[: len(data) // 2], data[len(data) // 2:]]
    f = ClipboardFilter()
    out = b"".join(f.feed(chunk) for chunk in halves) + f.pending
    assert out == data


def test_random_noise_around_sequences():
    noise = os.urandom(64).replace(b"\x1b", b"").replace(b"\x9d", b"")
    assert run([noise + PAYLOAD + noise]) == noise + noise
