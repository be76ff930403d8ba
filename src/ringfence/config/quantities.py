"""Numbers in the configuration: amounts of memory, seconds, process counts.
Checked here, at load, to be finite and in range: a NaN compares false with
everything and would pass a `<= 0` test, then break a timer after the command
has started."""

from __future__ import annotations


_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
# The kernel's own ceilings: pids.max and pid numbers stop at PID_MAX_LIMIT,
# and an rlimit beyond 2**63 reads as "unlimited" to some programs.
MAX_PROCESSES = 4_194_304
MAX_MEMORY = 1 << 62
MIN_MEMORY = 1 << 20
# A run longer than this is a mistake in the number; poll() and the kernel's
# timers both take far less than the largest float.
MAX_SECONDS = 30 * 24 * 3600


def parse_memory(value) -> int | None:
    """Bytes from an integer or a string such as "512M" or "2G"; None if
    invalid or outside MIN_MEMORY..MAX_MEMORY."""
    if isinstance(value, bool):
        return None
    amount = None
    if isinstance(value, int):
        amount = value
    elif isinstance(value, str) and value.isascii():
        # str.isdigit takes superscripts and other scripts' digits ("²" then
        # makes int() raise, "٥١٢M" reads as 512M): a number is ASCII or wrong.
        text = value.strip().upper().removesuffix("B").removesuffix("I")
        unit = _UNITS.get(text[-1:], 1)
        number = text[:-1] if text[-1:] in _UNITS else text
        if number.isdigit():
            amount = int(number) * unit
    if amount is None or not MIN_MEMORY <= amount <= MAX_MEMORY:
        return None
    return amount


def parse_number(text: str) -> float | None:
    """The number `text` spells in ASCII, or None: float() also reads other
    scripts' digits, so "٦٠٠" would pass for 600."""
    if not text.isascii():
        return None
    try:
        return float(text)
    except ValueError:
        return None


_INFINITY = float("inf")


def seconds_problem(value) -> str | None:
    """Why `value` is not a usable number of seconds, or None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "is not a number"
    if value != value or value in (_INFINITY, -_INFINITY):  # nan, inf: math would cost every start
        return "is not a finite number"
    if value <= 0:
        return "is not positive"
    if value > MAX_SECONDS:
        return f"is more than {MAX_SECONDS} seconds (30 days)"
    return None
