"""FilesystemPolicy precedence: the most specific rule decides, ties go to the
stricter word, a higher tier replaces a lower one, caps only ever lower.

The property tests compare against a brute-force reading of the documented
rules rather than against the implementation's own tables (RANK, TIE_ORDER),
so a wrong constant in the source shows up as a failure here.
"""

import itertools
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.policy.filesystem import (NONE, READ, TIER_BUILTIN, TIER_PROFILE, TIER_PROTECTED, WRITE, Cap,
                                         FilesystemPolicy, PathRule)

# "ab" sits next to "a" so that a string-prefix match ("/w/a" covering
# "/w/ab") would be caught.
COMPONENTS = ("a", "ab", "b")


def _universe():
    paths = ["/", "/w"]
    frontier = ["/w"]
    for _ in range(4):
        frontier = [f"{parent}/{name}" for parent in frontier for name in COMPONENTS]
        paths += frontier
    return tuple(paths)


# decide_canonical does no I/O, so whether these exist on this machine does
# not matter; only access() canonicalises, and it is tested separately.
UNIVERSE = _universe()

# Independent of the module: how permissive each word is, and the tie-break
# at equal specificity documented by Codex (none > write > read).
PERMISSIVE = {NONE: 0, READ: 1, WRITE: 2}
STRICTER_AT_TIE = {READ: 0, WRITE: 1, NONE: 2}

ACCESS = st.sampled_from((NONE, READ, WRITE))
TIER = st.sampled_from((TIER_BUILTIN, TIER_PROFILE, TIER_PROTECTED))
PATH = st.sampled_from(UNIVERSE)
RULES = st.lists(st.tuples(PATH, ACCESS, TIER), max_size=14)
CAPS = st.lists(st.tuples(PATH, st.sampled_from((NONE, READ, WRITE))), max_size=3)

PROPERTY = settings(max_examples=300, database=None, deadline=None)


def _rule(path, access, tier, index=0):
    return PathRule(path, access, "test", f"rule {index}", tier=tier)


def _policy(rule_specs, cap_specs=()):
    rules = [_rule(path, access, tier, i) for i, (path, access, tier) in enumerate(rule_specs)]
    caps = [Cap(path, access, PathRule(path, access, "test", f"cap {path}", kind="protected",
                                       tier=TIER_PROTECTED))
            for path, access in cap_specs]
    return FilesystemPolicy(rules, caps)


def _within(path, root):
    return root == "/" or path == root or path.startswith(root + "/")


def reference(rule_specs, cap_specs, query):
    """(access, (rule path, access, tier) of the deciding rule or None)."""
    winners = {}
    for path, access, tier in rule_specs:
        current = winners.get(path)
        if current is None or (tier, STRICTER_AT_TIE[access]) > (current[1], STRICTER_AT_TIE[current[0]]):
            winners[path] = (access, tier)
    covering = [path for path in winners if _within(query, path)]
    if covering:
        deepest = max(covering, key=len)
        access, tier = winners[deepest]
        decided_by = (deepest, access, tier)
    else:
        access, decided_by = NONE, None
    for path, cap_access in cap_specs:
        if _within(query, path) and PERMISSIVE[cap_access] < PERMISSIVE[access]:
            access = cap_access
    return access, decided_by


@PROPERTY
@given(RULES, CAPS, PATH)
def test_adding_a_none_rule_never_widens_any_path(rule_specs, cap_specs, denied):
    before = _policy(rule_specs, cap_specs)
    after = _policy(rule_specs + [(denied, NONE, TIER_PROFILE)], cap_specs)
    for path in UNIVERSE:
        old = before.decide_canonical(path).access
        new = after.decide_canonical(path).access
        assert PERMISSIVE[new] <= PERMISSIVE[old], (path, old, new)


@PROPERTY
@given(RULES)
def test_most_specific_rule_decides(rule_specs):
    policy = _policy(rule_specs)
    for query in UNIVERSE:
        decision = policy.decide_canonical(query)
        access, decided_by = reference(rule_specs, (), query)
        assert decision.access == access, query
        if decided_by is None:
            assert decision.rule is None
        else:
            assert (decision.rule.path, decision.rule.access, decision.rule.tier) == decided_by, query


@PROPERTY
@given(RULES, CAPS)
def test_caps_agree_with_reference_and_never_raise(rule_specs, cap_specs):
    uncapped = _policy(rule_specs)
    capped = _policy(rule_specs, cap_specs)
    for query in UNIVERSE:
        access = capped.decide_canonical(query).access
        assert access == reference(rule_specs, cap_specs, query)[0], query
        assert PERMISSIVE[access] <= PERMISSIVE[uncapped.decide_canonical(query).access]


@PROPERTY
@given(RULES)
def test_rule_order_does_not_matter(rule_specs):
    forward = _policy(rule_specs)
    backward = _policy(list(reversed(rule_specs)))
    for query in UNIVERSE:
        assert forward.decide_canonical(query).access == backward.decide_canonical(query).access


def test_no_rule_means_no_access():
    decision = FilesystemPolicy([_rule("/w/a", WRITE, TIER_PROFILE)]).decide_canonical("/w/b")
    assert decision.access == NONE
    assert decision.rule is None
    assert decision.note


def test_a_rule_does_not_cover_a_sibling_sharing_its_prefix():
    policy = FilesystemPolicy([_rule("/", READ, TIER_PROFILE), _rule("/w/a", NONE, TIER_PROFILE)])
    assert policy.decide_canonical("/w/a/x").access == NONE
    assert policy.decide_canonical("/w/ab").access == READ
    assert policy.decide_canonical("/w/ab/x").access == READ


def test_deeper_rule_reopens_inside_a_denied_directory():
    policy = FilesystemPolicy([_rule("/", READ, TIER_PROFILE), _rule("/w/a", NONE, TIER_PROFILE),
                               _rule("/w/a/b", WRITE, TIER_PROFILE)])
    assert policy.decide_canonical("/w/a").access == NONE
    assert policy.decide_canonical("/w/a/b/c").access == WRITE
    assert policy.decide_canonical("/w/a/ab").access == NONE


@pytest.mark.parametrize("order", list(itertools.permutations((READ, WRITE, NONE))))
def test_tie_at_equal_path_none_beats_write_beats_read(order):
    rules = [_rule("/w/a", access, TIER_PROFILE, i) for i, access in enumerate(order)]
    assert FilesystemPolicy(rules).decide_canonical("/w/a/b").access == NONE
    without_none = [rule for rule in rules if rule.access != NONE]
    assert FilesystemPolicy(without_none).decide_canonical("/w/a/b").access == WRITE


@pytest.mark.parametrize("builtin_first", [True, False])
def test_profile_rule_replaces_stricter_builtin_rule_for_same_path(builtin_first):
    # This is how a user re-opens one built-in credential path on purpose.
    builtin = _rule("/w/a", NONE, TIER_BUILTIN)
    profile = _rule("/w/a", READ, TIER_PROFILE)
    rules = [builtin, profile] if builtin_first else [profile, builtin]
    decision = FilesystemPolicy(rules).decide_canonical("/w/a/key")
    assert decision.access == READ
    assert decision.rule is profile


def test_protected_tier_replaces_profile_rule_for_same_path():
    profile = _rule("/w/a", WRITE, TIER_PROFILE)
    protected = _rule("/w/a", READ, TIER_PROTECTED)
    decision = FilesystemPolicy([protected, profile]).decide_canonical("/w/a")
    assert decision.access == READ
    assert decision.rule is protected


def test_builtin_rule_cannot_replace_profile_rule_even_when_stricter():
    profile = _rule("/w/a", WRITE, TIER_PROFILE)
    builtin = _rule("/w/a", NONE, TIER_BUILTIN)
    assert FilesystemPolicy([profile, builtin]).decide_canonical("/w/a").access == WRITE


def _cap(path, access):
    return Cap(path, access, PathRule(path, access, "test", f"cap {path}", kind="protected", tier=TIER_PROTECTED))


def test_read_cap_lowers_a_writable_subtree_and_names_itself():
    cap = _cap("/w/a", READ)
    policy = FilesystemPolicy([_rule("/w", WRITE, TIER_PROFILE)], [cap])
    inside = policy.decide_canonical("/w/a/b/c")
    assert inside.access == READ
    assert inside.rule is cap.rule
    assert policy.decide_canonical("/w/ab").access == WRITE
    assert policy.decide_canonical("/w").access == WRITE


def test_none_cap_hides_even_a_deeper_write_rule():
    policy = FilesystemPolicy([_rule("/w", WRITE, TIER_PROFILE), _rule("/w/a/b", WRITE, TIER_PROTECTED)],
                              [_cap("/w/a", NONE)])
    assert policy.decide_canonical("/w/a/b/c").access == NONE


@pytest.mark.parametrize("cap_access", [READ, WRITE])
def test_cap_never_raises_access(cap_access):
    policy = FilesystemPolicy([_rule("/", READ, TIER_PROFILE), _rule("/w/a", NONE, TIER_PROFILE)],
                              [_cap("/w", cap_access)])
    assert policy.decide_canonical("/w/a/x").access == NONE
    assert policy.decide_canonical("/w/b").access == READ
    # With no rule at all the cap must not invent access either.
    assert FilesystemPolicy([], [_cap("/w", cap_access)]).decide_canonical("/w/b").access == NONE


def test_access_canonicalises_the_query_so_symlinks_meet_their_target(tmp_path):
    real = tmp_path / "real"
    (real / "inner").mkdir(parents=True)
    link = tmp_path / "link"
    link.symlink_to(real)
    policy = FilesystemPolicy([_rule("/", READ, TIER_PROFILE), _rule(os.path.realpath(real), NONE, TIER_PROFILE)])
    assert policy.access(str(link / "inner")).access == NONE
    assert policy.access(str(link)).access == NONE


@PROPERTY
@given(RULES, CAPS)
def test_shared_decider_agrees_with_single_decisions(rule_specs, cap_specs):
    # The mount planner decides thousands of paths through one memo; any drift
    # from the single-path answer would mount the wrong access.
    policy = _policy(rule_specs, cap_specs)
    decide = policy.decider()
    for query in UNIVERSE[::-1] + UNIVERSE:
        single, shared = policy.decide_canonical(query), decide(query)
        assert (shared.access, shared.rule, shared.private) == (single.access, single.rule, single.private), query


def test_shared_decider_keeps_the_nearer_of_two_equal_caps():
    policy = _policy([("/w", WRITE, TIER_PROFILE)], [("/w", READ), ("/w/a", READ)])
    decide = policy.decider()
    assert decide("/w/a/b").rule.path == policy.decide_canonical("/w/a/b").rule.path == "/w/a"
