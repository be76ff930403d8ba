"""The seccomp filter as data.

The rules are evaluated here by a small model of libseccomp's comparison
semantics, so the tests ask "is socket(AF_PACKET, ...) refused?" rather than
"is there a tuple that looks like this", and a rule with a wrong operator or
operand fails them.
"""

import errno
import socket

import pytest

from ringfence.errors import BackendUnavailable
from ringfence.backends.linux import seccomp

# From libseccomp's seccomp.h (enum scmp_compare and the action encoding),
# written out here so that a wrong constant in the module is caught.
SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, SCMP_CMP_EQ, SCMP_CMP_GE, SCMP_CMP_GT, SCMP_CMP_MASKED_EQ = range(1, 8)


def errno_action(code):
    return 0x00050000 | code


AF_UNIX, AF_INET, AF_INET6, AF_NETLINK, AF_PACKET = 1, 2, 10, 16, 17
SOCK_STREAM, SOCK_DGRAM, SOCK_RAW, SOCK_PACKET = 1, 2, 3, 10
SOCK_NONBLOCK, SOCK_CLOEXEC = 0o4000, 0o2000000
ALLOWED = {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK}


def _holds(op, value, a, b):
    value &= 0xFFFFFFFFFFFFFFFF
    if op == SCMP_CMP_NE:
        return value != a
    if op == SCMP_CMP_LT:
        return value < a
    if op == SCMP_CMP_LE:
        return value <= a
    if op == SCMP_CMP_EQ:
        return value == a
    if op == SCMP_CMP_GE:
        return value >= a
    if op == SCMP_CMP_GT:
        return value > a
    if op == SCMP_CMP_MASKED_EQ:
        return value & a == b
    raise AssertionError(f"unknown comparison {op}")


def verdict(rules, syscall, *args):
    """The action for this call, or None when no rule matches (allowed)."""
    actions = []
    for name, action, comparisons in rules:
        if name.lstrip("?") != syscall:
            continue
        if all(_holds(op, args[arg] if arg < len(args) else 0, a, b) for arg, op, a, b in comparisons):
            actions.append(action)
    assert len(set(actions)) <= 1, f"conflicting actions for {syscall}{args}: {actions}"
    return actions[0] if actions else None


@pytest.fixture(params=[False, True], ids=["base", "nounix"])
def rules(request):
    return seccomp.rules(deny_unix_sockets=request.param)


@pytest.mark.parametrize("name", ["ptrace", "process_vm_readv", "process_vm_writev"])
def test_reading_other_processes_is_eperm(rules, name):
    assert verdict(rules, name, 0, 0, 0) == errno_action(errno.EPERM)
    entries = [entry for entry in rules if entry[0] == name]
    assert len(entries) == 1 and entries[0][2] == (), "must be unconditional"


@pytest.mark.parametrize("name", ["io_uring_setup", "io_uring_enter", "io_uring_register", "clone3"])
def test_io_uring_and_clone3_are_enosys_so_programs_fall_back(rules, name):
    assert verdict(rules, name, 0) == errno_action(errno.ENOSYS)
    assert [entry[2] for entry in rules if entry[0] == name] == [()]


def test_optional_names_are_marked_and_never_the_core_ones(rules):
    optional = {name[1:] for name, _, _ in rules if name.startswith("?")}
    assert "reboot" in optional
    assert not optional & {"ptrace", "process_vm_readv", "process_vm_writev", "io_uring_setup", "clone3",
                           "socket", "mount"}


@pytest.mark.parametrize("family", [f for f in range(64) if f not in ALLOWED])
def test_every_family_outside_the_allowed_set_is_refused(rules, family):
    action = verdict(rules, "socket", family, SOCK_STREAM, 0)
    assert action is not None and action & 0xFFFF0000 == 0x00050000, family


def test_each_family_below_af_max_has_its_own_rule(rules):
    single = {cmp[0][2] for name, _, cmp in rules
              if name == "socket" and len(cmp) == 1 and cmp[0][:2] == (0, SCMP_CMP_EQ)}
    assert {f for f in range(seccomp.AF_MAX) if f not in ALLOWED} <= single


def test_families_at_or_above_af_max_are_caught_by_one_ge_rule(rules):
    ge = [cmp for name, _, cmp in rules if name == "socket" and len(cmp) == 1 and cmp[0][1] == SCMP_CMP_GE]
    assert ge == [((0, SCMP_CMP_GE, seccomp.AF_MAX, 0),)]
    # Every family this Python knows must fall under a rule, whatever AF_MAX says.
    known = {int(f) for f in socket.AddressFamily}
    assert max(known) < seccomp.AF_MAX
    # High bits set: the kernel would truncate to an allowed family.
    assert verdict(rules, "socket", (1 << 32) | AF_INET, SOCK_STREAM, 0) is not None
    assert verdict(rules, "socket", 0xFFFFFFFF, SOCK_STREAM, 0) is not None


@pytest.mark.parametrize("family", [AF_INET, AF_INET6])
@pytest.mark.parametrize("sock_type", [SOCK_STREAM, SOCK_DGRAM, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK])
def test_ordinary_inet_sockets_are_allowed(rules, family, sock_type):
    assert verdict(rules, "socket", family, sock_type, 0) is None


@pytest.mark.parametrize("family", [AF_INET, AF_INET6])
@pytest.mark.parametrize("sock_type", [SOCK_RAW, SOCK_PACKET, SOCK_RAW | SOCK_CLOEXEC, SOCK_RAW | SOCK_NONBLOCK])
def test_raw_and_packet_inet_sockets_are_refused(rules, family, sock_type):
    assert verdict(rules, "socket", family, sock_type, 0) == errno_action(errno.EPERM)


def test_netlink_stays_allowed(rules):
    assert verdict(rules, "socket", AF_NETLINK, SOCK_RAW, 0) is None


def test_unix_sockets_depend_on_the_variant():
    base, nounix = seccomp.rules(False), seccomp.rules(True)
    assert verdict(base, "socket", AF_UNIX, SOCK_STREAM, 0) is None
    assert verdict(nounix, "socket", AF_UNIX, SOCK_STREAM, 0) is not None
    # A stream pair stays: connected, it cannot reach anything outside the sandbox.
    for rules in (base, nounix):
        assert verdict(rules, "socketpair", AF_UNIX, SOCK_STREAM, 0) is None
        assert verdict(rules, "socketpair", AF_UNIX, SOCK_STREAM | 0o2000000, 0) is None  # SOCK_CLOEXEC
        assert verdict(rules, "socketpair", AF_INET, SOCK_STREAM, 0) is not None
    # A datagram pair's ends can connect(2) to any pathname socket later.
    SOCK_DGRAM, SOCK_SEQPACKET = 2, 5
    assert verdict(base, "socketpair", AF_UNIX, SOCK_DGRAM, 0) is None
    for sock_type in (SOCK_DGRAM, SOCK_SEQPACKET, SOCK_DGRAM | 0o4000):
        assert verdict(nounix, "socketpair", AF_UNIX, sock_type, 0) is not None
    assert set(map(repr, base)) < set(map(repr, nounix))


def test_memory_files_are_refused_only_in_their_variant():
    assert verdict(seccomp.rules(), "memfd_create", 0) is None
    assert verdict(seccomp.rules(False, True), "memfd_create", 0) == errno_action(errno.ENOSYS)
    assert verdict(seccomp.rules(True, True), "socket", AF_UNIX, SOCK_STREAM, 0) is not None


def test_new_user_namespaces_are_refused(rules):
    CLONE_NEWUSER = 0x10000000
    assert verdict(rules, "unshare", CLONE_NEWUSER) == errno_action(errno.EPERM)
    assert verdict(rules, "clone", CLONE_NEWUSER | 0x11) == errno_action(errno.EPERM)
    assert verdict(rules, "clone", 0x01200011) is None  # what fork() passes


def test_terminal_injection_ioctls_are_refused(rules):
    TIOCSTI = 0x5412
    assert verdict(rules, "ioctl", 0, TIOCSTI) == errno_action(errno.EPERM)
    assert verdict(rules, "ioctl", 0, (1 << 32) | TIOCSTI) == errno_action(errno.EPERM)
    assert verdict(rules, "ioctl", 0, 0x5401) is None  # TCGETS


def test_rules_are_pure_data(rules):
    for name, action, comparisons in rules:
        assert isinstance(name, str) and isinstance(action, int)
        for comparison in comparisons:
            assert len(comparison) == 4 and all(isinstance(x, int) for x in comparison)


def _libseccomp_or_skip():
    try:
        seccomp._library()
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("deny_unix", [False, True])
def test_compiled_program_is_whole_sock_filter_entries(deny_unix):
    _libseccomp_or_skip()
    program = seccomp.compile_program(deny_unix)
    assert program
    assert len(program) % 8 == 0


def test_compiled_variants_differ():
    _libseccomp_or_skip()
    assert seccomp.compile_program(False) != seccomp.compile_program(True)
