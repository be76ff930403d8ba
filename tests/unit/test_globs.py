"""Glob patterns and the start-up scan that turns them into concrete rules.

A glob only protects the files the scan finds, so every way the scan can
miss a file (depth, symlinks, unreadable directories, a second pattern)
is a way a secret stays readable.
"""

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringfence.config import load_config
from ringfence.errors import PolicyError
from ringfence.policy import build_policy, globs
from ringfence.policy.filesystem import NONE, READ, WRITE
from ringfence.policy.globs import compile_pattern, is_glob, scan, static_prefix, translate


def matches(pattern, relative):
    return compile_pattern(pattern).fullmatch(relative) is not None


# -- pattern semantics -----------------------------------------------------------------

@pytest.mark.parametrize("relative, expected", [
    (".env", True),
    ("a/.env", True),
    ("a/b/.env", True),
    ("a/b/prod.env", True),
    ("a/b/x.envx", False),
    ("a/b/.env/c", False),
    (".envrc", False),
])
def test_double_star_slash_matches_any_depth_including_none(relative, expected):
    assert matches("**/*.env", relative) is expected


NAME_ALPHABET = "ab.*"


@settings(max_examples=400, database=None, deadline=None)
@given(st.lists(st.text(NAME_ALPHABET, min_size=1, max_size=6), min_size=1, max_size=5),
       st.lists(st.text("ab.", min_size=1, max_size=7), min_size=1, max_size=8))
def test_name_matcher_agrees_with_the_regex_reference(bodies, names):
    # The scan's matcher skips the regex engine with prefilters and an index
    # by extension; any name it drops that the regex accepts is an unmasked secret.
    from ringfence.policy.globs import _Matcher

    patterns = sorted({f"**/{body}" for body in bodies})
    matcher = _Matcher(patterns)
    # Random names rarely match; names made from the patterns always do.
    names += [body.replace("*", fill) for body in bodies for fill in ("", "b.a")]
    for name in names:
        expected = sorted(p for p in patterns if compile_pattern(p).fullmatch(name))
        assert sorted(matcher.match(name, name, False)) == expected, name

@settings(max_examples=400, database=None, deadline=None)
@given(st.lists(st.text(NAME_ALPHABET, min_size=1, max_size=5), min_size=1, max_size=5),
       st.lists(st.text("ab.", min_size=1, max_size=6), max_size=12))
def test_candidate_prefilter_keeps_every_name_a_pattern_could_match(bodies, names):
    # Leaf directories are filtered on one joined string; a name dropped there
    # is never looked at again.
    from ringfence.policy.globs import _Matcher

    patterns = sorted({f"**/{body}" for body in bodies})
    matcher = _Matcher(patterns)
    if matcher.always or matcher.by_name or matcher.by_path:
        return  # such a matcher looks at every name; there is nothing to filter
    names = sorted({name for name in names + [body.replace("*", fill) for body in bodies for fill in ("", "a.b")]
                    if name})
    candidates = matcher.candidates(names)
    assert {name for name in names if matcher.match(name, name, True)} <= set(candidates)
    # ... and exactly the names the per-name test would have let through.
    assert candidates == sorted(name for name in names if name in matcher.exact
                                or (matcher.tails and name.endswith(matcher.tails))
                                or (matcher.heads and name.startswith(matcher.heads)))

@pytest.mark.parametrize("relative, expected", [
    ("key.pem", True),
    (".pem", True),
    ("a/key.pem", False),
    ("key.pem.bak", False),
])
def test_single_star_stays_in_one_directory(relative, expected):
    assert matches("*.pem", relative) is expected


@pytest.mark.parametrize("pattern, relative, expected", [
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "ab/b", False),
    ("a/**", "a/x/y", True),
    ("a/**", "a", False),
    ("**", "any/thing/at/all", True),
    ("?.txt", "a.txt", True),
    ("?.txt", "ab.txt", False),
    ("?/x", "a/x", True),
    ("a?b", "a/b", False),
    ("[ab].txt", "a.txt", True),
    ("[ab].txt", "b.txt", True),
    ("[ab].txt", "c.txt", False),
    ("[!ab].txt", "c.txt", True),
    ("[!ab].txt", "a.txt", False),
    ("[a-c]x", "bx", True),
    ("[a-c]x", "dx", False),
    ("[]]x", "]x", True),
    ("a[.txt", "a[.txt", True),
    ("a.b", "axb", False),
    ("a+b(c)", "a+b(c)", True),
])
def test_wildcards_and_literals(pattern, relative, expected):
    assert matches(pattern, relative) is expected


def test_trailing_slash_marks_a_directory_pattern():
    assert translate("build/").endswith("(?=/?$)")
    assert not translate("build").endswith("(?=/?$)")
    assert matches("**/build/", "a/build")


def test_is_glob():
    assert is_glob("**/*.env") and is_glob("a?") and is_glob("[ab]")
    assert not is_glob("/plain/path.txt")


def test_negated_class_starting_with_bracket():
    # Regression: "[!]" used to compile to the invalid regex "[^]" and raise re.error.
    assert matches("[!]a]", "b")
    assert not matches("[!]a]", "]")
    assert not matches("[!]a]", "a")


@pytest.mark.parametrize("pattern, prefix", [
    ("/w/a/**/*.pem", "/w/a"),
    ("/w/a/*.pem", "/w/a"),
    ("/w/x[ab]/y", "/w"),
    ("/w/a?/b", "/w"),
    ("/**/*.pem", "/"),
    ("/*", "/"),
    ("/w/a/b.txt", "/w/a/b.txt"),
])
def test_static_prefix(pattern, prefix):
    assert static_prefix(pattern) == prefix


# -- the scan ---------------------------------------------------------------------------------

def make(root, *relatives):
    for relative in relatives:
        path = os.path.join(str(root), relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as handle:
            handle.write("x")


def found(matches_):
    return sorted(m.path for m in matches_)


def test_scan_finds_matches_at_every_depth(tmp_path):
    make(tmp_path, ".env", "a/.env", "a/b/c/prod.env", "a/b/keep.txt", "a/x.envx")
    result = scan(str(tmp_path), ["**/*.env"], None)
    assert found(result) == sorted(str(tmp_path / p) for p in (".env", "a/.env", "a/b/c/prod.env"))
    assert {m.pattern for m in result} == {"**/*.env"}
    assert not any(m.is_dir for m in result)


@pytest.mark.parametrize("depth, expected", [
    (1, [".env"]),
    (2, [".env", "a/.env"]),
    (3, [".env", "a/.env", "a/b/.env"]),
    (None, [".env", "a/.env", "a/b/.env", "a/b/c/.env"]),
])
def test_scan_honours_max_depth(tmp_path, depth, expected):
    make(tmp_path, ".env", "a/.env", "a/b/.env", "a/b/c/.env")
    assert found(scan(str(tmp_path), ["**/.env"], depth)) == sorted(str(tmp_path / p) for p in expected)


def test_scan_of_a_missing_root_finds_nothing(tmp_path):
    assert scan(str(tmp_path / "missing"), ["**"], None) == []


def test_directory_pattern_matches_directories_only(tmp_path):
    make(tmp_path, "a/build/out.o", "b/build")
    result = scan(str(tmp_path), ["**/build/"], None)
    assert found(result) == [str(tmp_path / "a" / "build")]
    assert result[0].is_dir


def test_scan_does_not_follow_directory_symlinks(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    make(outside, "deep/secret.env")
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    assert scan(str(root), ["**/*.env"], None) == []


def test_matching_symlink_yields_its_canonical_target(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    make(outside, "real-secret")
    root.mkdir()
    (root / "prod.env").symlink_to(outside / "real-secret")
    (root / "dir.env").symlink_to(outside, target_is_directory=True)
    result = {m.path: m.is_dir for m in scan(str(root), ["*.env"], None)}
    assert result == {str(outside / "real-secret"): False, str(outside): True}


def test_scan_skip_prunes_subtrees(tmp_path):
    make(tmp_path, "a/.env", "b/.env")
    result = scan(str(tmp_path), ["**/.env"], None, skip=lambda path: path.endswith("/a"))
    assert found(result) == [str(tmp_path / "b" / ".env")]


@pytest.mark.skipif(os.geteuid() == 0, reason="root can list a mode-000 directory")
def test_unreadable_directory_fails_closed(tmp_path):
    make(tmp_path, "open/.env", "locked/inner/.env")
    locked = tmp_path / "locked"
    locked.chmod(0)
    try:
        with pytest.raises(PolicyError) as info:
            scan(str(tmp_path), ["**/.env"], None)
    finally:
        locked.chmod(0o755)
    assert str(locked) in str(info.value)


@pytest.fixture
def unlistable(monkeypatch):
    """Make listing one directory fail, as an unreadable one does for a
    normal user; this runs the fail-closed path even as root."""
    refused = set()

    def refusing(real):
        def listing(path="."):
            if os.fspath(path) in refused:
                raise PermissionError(13, "Permission denied", os.fspath(path))
            return real(path)
        return listing

    monkeypatch.setattr(os, "scandir", refusing(os.scandir))
    monkeypatch.setattr(os, "listdir", refusing(os.listdir))
    return refused


def test_leaf_directory_shortcut_finds_what_a_full_listing_finds(tmp_path, monkeypatch):
    # Directories without subdirectories are listed by name only; links,
    # directory-only patterns and path patterns must come out the same.
    make(tmp_path, "a/.env", "a/b/x.pem", "a/b/keep.txt", "c/d/e/id_rsa", "target/y.txt", "c/d/secrets/z")
    os.symlink(str(tmp_path / "target"), str(tmp_path / "a" / "b" / "link.pem"))
    os.symlink(str(tmp_path / "a" / "b" / "x.pem"), str(tmp_path / "c" / "d" / "e" / "other.pem"))
    os.mkdir(str(tmp_path / "c" / "empty"))
    patterns = ["**/.env", "**/*.pem", "**/id_rsa", "**/secrets/", "c/d/**/z", "**/*.pem/"]
    from ringfence.policy import globs

    def every(matches_):
        return sorted((m.path, m.is_dir, m.pattern, m.via_link) for m in matches_)

    assert os.lstat(str(tmp_path / "a" / "b")).st_nlink == 2  # a leaf, where link counts are kept
    shortcut = every(scan(str(tmp_path), patterns, None))
    monkeypatch.setattr(globs, "_NLINK_FILESYSTEMS", set())
    assert shortcut == every(scan(str(tmp_path), patterns, None))
    assert (str(tmp_path / "target"), True, "**/*.pem/", True) in shortcut


def test_leaf_shortcut_notices_a_subdirectory_made_during_the_listing(tmp_path, monkeypatch):
    make(tmp_path, "a/x.txt")
    real = os.listdir

    def listdir_then_mkdir(path="."):
        names = real(path)
        if os.fspath(path).endswith("/a") and not os.path.exists(os.path.join(path, "late")):
            make(tmp_path, "a/late/.env")
        return names

    monkeypatch.setattr(os, "listdir", listdir_then_mkdir)
    assert found(scan(str(tmp_path), ["**/.env"], None)) == [str(tmp_path / "a" / "late" / ".env")]

def test_listing_error_fails_closed_even_as_root(tmp_path, unlistable):
    make(tmp_path, "open/.env", "locked/inner/.env")
    unlistable.add(str(tmp_path / "locked"))
    with pytest.raises(PolicyError) as info:
        scan(str(tmp_path), ["**/.env"], None)
    message = str(info.value)
    assert str(tmp_path / "locked") in message
    assert "Permission denied" in message
    assert "glob_scan_max_depth" in info.value.hint


def test_an_entry_matching_two_patterns_is_reported_for_both(tmp_path):
    # Regression: the scan stopped at the first matching pattern.
    make(tmp_path, "private.txt")
    result = scan(str(tmp_path), ["**/*.txt", "**/private*"], None)
    assert sorted(m.pattern for m in result) == ["**/*.txt", "**/private*"]


# -- globs through the policy ------------------------------------------------------------------

class Project:
    def __init__(self, root, monkeypatch):
        monkeypatch.setenv("RINGFENCE_CONFIG_DIR", str(root / "userconf"))
        monkeypatch.setenv("RINGFENCE_STATE_DIR", str(root / "state"))
        self.root = root
        self.ws = root / "ws"
        (self.ws / ".git").mkdir(parents=True)
        self.home = "/srv/ringfence-unit-tests/home"

    def build(self, text=None):
        files = []
        if text is not None:
            given = self.root / "given.toml"
            given.write_text(text)
            files.append(str(given))
        config = load_config(cwd=str(self.ws), home=self.home, config_files=files)
        return build_policy(config, env={})

    def access(self, policy, relative):
        return policy.filesystem.access(str(self.ws / relative)).access


@pytest.fixture
def project(tmp_path, monkeypatch):
    return Project(tmp_path, monkeypatch)


def test_credential_layer_honours_its_except_list(project):
    make(project.ws, ".env", ".env.local", ".env.example", "svc/.env.sample", "svc/.env.production",
         "svc/.env.template", "certs/site.pem", "notes.txt")
    policy = project.build()
    for denied in (".env", ".env.local", "svc/.env.production", "certs/site.pem"):
        assert project.access(policy, denied) == NONE, denied
    for kept in (".env.example", "svc/.env.sample", "svc/.env.template", "notes.txt"):
        assert project.access(policy, kept) == WRITE, kept
    rule = policy.filesystem.access(str(project.ws / ".env.local")).rule
    assert rule.kind == "credentials"
    assert "built-in :credentials" in rule.label


WORKSPACE_SECRETS = ("prod.env", "deploy/Staging.ENV", ".netrc", "db/.pgpass", ".PyPIrc", "infra/prod.tfvars",
                     "infra/secrets.auto.tfvars", "infra/vars.tfvars.json", "keys/id_ecdsa", "keys/ID_ED25519",
                     "keys/id_dsa", "keys/id_ed25519_sk")
WORKSPACE_LOOK_ALIKES = ("example.env", "svc/sample.env", "prod.example.env", "svc/dev.template.env",
                         "keys/id_ecdsa.pub", "keys/id_ed25519.pub", "infra/prod.tfvars.example", "env.py",
                         "public/locales/en/auth.json")


def test_credential_layer_denies_the_other_workspace_secrets_whatever_their_case(project):
    make(project.ws, *WORKSPACE_SECRETS, *WORKSPACE_LOOK_ALIKES)
    policy = project.build()
    for denied in WORKSPACE_SECRETS:
        assert project.access(policy, denied) == NONE, denied
        assert policy.filesystem.access(str(project.ws / denied)).rule.kind == "credentials", denied
    for kept in WORKSPACE_LOOK_ALIKES:
        assert project.access(policy, kept) == WRITE, kept
    make(project.ws, ".envrc")
    assert project.access(project.build(), ".envrc") == READ  # direnv's code: protected, not a secret


def test_an_auth_json_is_denied_only_when_it_holds_composer_credentials(project):
    (project.ws / "auth.json").write_text('{"http-basic": {"repo.example": {"username": "u", "password": "p"}}}')
    (project.ws / "api").mkdir()
    (project.ws / "api" / "auth.json").write_text('{"GitLab-Token": {"gitlab.example": "t"}}')
    (project.ws / "locales").mkdir()
    (project.ws / "locales" / "auth.json").write_text('{"signIn": "Sign in", "password": "Password"}')
    policy = project.build()
    assert project.access(policy, "auth.json") == NONE
    assert project.access(policy, "api/auth.json") == NONE
    assert project.access(policy, "locales/auth.json") == WRITE


def test_credential_layer_can_be_turned_off(project):
    make(project.ws, ".env")
    policy = project.build("[protection]\ncredentials = false\n")
    assert project.access(policy, ".env") == WRITE


def test_user_glob_rule_replaces_credential_glob_for_the_same_file(project):
    make(project.ws, "fixtures/test.pem")
    policy = project.build('default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n'
                           '":project_roots" = { "." = "write", "fixtures/*.pem" = "read" }\n')
    assert project.access(policy, "fixtures/test.pem") == READ


def test_profile_glob_depth_limit(project):
    make(project.ws, "top.secret", "a/b/deep.secret")
    body = ('default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n{depth}'
            '":project_roots" = {{ "." = "write", "**/*.secret" = "none" }}\n')
    shallow = project.build(body.format(depth="glob_scan_max_depth = 1\n"))
    assert project.access(shallow, "top.secret") == NONE
    assert project.access(shallow, "a/b/deep.secret") == WRITE
    unlimited = project.build(body.format(depth=""))
    assert project.access(unlimited, "a/b/deep.secret") == NONE
    summary = [g for g in unlimited.filesystem.globs if g.pattern == "**/*.secret"]
    assert len(summary) == 1
    assert sorted(summary[0].matches) == sorted(str(project.ws / p) for p in ("top.secret", "a/b/deep.secret"))


def test_glob_scan_failure_refuses_the_policy(project, unlistable):
    make(project.ws, "locked/x.txt")
    unlistable.add(str(project.ws / "locked"))
    with pytest.raises(PolicyError):
        project.build()


def test_glob_through_policy_covers_only_files_present_at_start(project):
    make(project.ws, "a.env")
    policy = project.build('default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n'
                           '":project_roots" = { "." = "write", "*.env" = "none" }\n')
    assert project.access(policy, "a.env") == NONE
    later = str(project.ws / "b.env")
    assert policy.filesystem.access(later).access == WRITE
    assert "present when the run starts" in policy.filesystem.glob_note(later)


def test_stricter_of_two_matching_globs_wins(project):
    # Regression: only the first (sorted) pattern became a rule, so the file stayed readable.
    make(project.ws, "private.txt")
    policy = project.build('default_permissions = "p"\n[permissions.p.filesystem]\n":root" = "read"\n'
                           '":project_roots" = { "." = "write", "**/*.txt" = "read", "**/private*" = "none" }\n')
    assert project.access(policy, "private.txt") == NONE


def test_an_unreachable_directory_is_never_cached_as_empty(tmp_path, monkeypatch, unlistable):
    # Reachability depends on this user's groups, which no ctime records: a
    # directory passed by once must be looked at again on the next scan.
    from ringfence.policy import globs

    make(tmp_path, "ws/team/.env")
    cache = tmp_path / "cache"
    cache.mkdir()
    import time

    time.sleep(2.1)  # older than the cache's racy window, so unchanged directories are trusted
    root = str(tmp_path / "ws")
    unlistable.add(os.path.join(root, "team"))
    monkeypatch.setattr(globs, "_unreachable", lambda directory: True)
    assert scan(root, ["**/.env"], None, cache_dir=str(cache)) == []
    unlistable.clear()
    assert found(scan(root, ["**/.env"], None, cache_dir=str(cache))) == [os.path.join(root, "team", ".env")]



def test_a_directory_changed_just_before_a_scan_is_trusted_once_it_has_aged(tmp_path, monkeypatch):
    # Made moments before the first scan, the folders are listed again by the
    # next one (they may have changed within the same tick). That listing
    # must be kept, or every later scan lists them again for good.
    import time

    monkeypatch.setattr(globs, "_RACY_NS", 200_000_000)
    for index in range(3):
        make(tmp_path, f"ws/pkg{index}/key.pem")
    root, cache = str(tmp_path / "ws"), tmp_path / "cache"
    cache.mkdir()
    listed = []
    real = globs._list_directory
    monkeypatch.setattr(globs, "_list_directory", lambda directory, *args: listed.append(directory) or
                        real(directory, *args))

    def listings():
        listed.clear()
        assert len(scan(root, ["**/*.pem"], None, cache_dir=str(cache))) == 3
        return len(listed)

    assert listings() == 4  # the first scan lists everything
    time.sleep(0.3)  # the folders age past the racy window of this scan, not of the first
    assert listings() == 4  # changed just before the first scan: listed again
    assert listings() == 0  # and now trusted
    make(tmp_path, "ws/pkg1/new.pem")
    assert len(scan(root, ["**/*.pem"], None, cache_dir=str(cache))) == 4  # control: a change is seen


def test_the_cap_counts_each_pattern_and_refuses_only_above_it(tmp_path, monkeypatch):
    monkeypatch.setattr(globs, "MAX_MATCHES", 3)
    for index in range(3):
        (tmp_path / f"f{index}.secret").write_text("")
    (tmp_path / ".git").mkdir()  # a protected name scanned alongside: no mask of the glob's
    assert len(scan(str(tmp_path), ["**/*.secret", "**/.git"], None)) == 4
    (tmp_path / "f3.secret").write_text("")
    with pytest.raises(PolicyError, match=r"'\*\*/\*\.secret' matched more than 3 paths"):
        scan(str(tmp_path), ["**/*.secret", "**/.git"], None)
