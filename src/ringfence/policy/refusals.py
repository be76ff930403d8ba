"""What keeps a policy from being enforced exactly, found while it is built.

Recorded as data on the policy (a run refuses; `status` and `explain` still
show everything else); the workspace refusals stop the build itself, since
they come before a scan of the whole home would.
"""

from __future__ import annotations

import os
import stat

from ..config.vocabulary import PROJECT_ROOTS, WORKSPACE_ROOTS
from ..errors import PolicyError
from ..paths import canonical, is_within, symlink_components
from .filesystem import MISSING, NONE, WRITE, FilesystemPolicy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .filesystem import PathRule
from .globs import hard_link_count


def refuse(refusals, error: PolicyError):
    """Record what keeps the policy from being enforced; the run refuses, while
    `status` and `explain` still show everything else. Without a list (a caller
    that only wants a policy it can run), refuse at once."""
    if refusals is None:
        raise error
    refusals.append(error)


def other_names(path: str, root: str, limit: int = 5, seconds: float = 2.0) -> list[str]:
    """Other names of `path`'s inode under `root`. Only on the error path, and
    a home can be large: the walk stops after `seconds`."""
    import time

    try:
        target = os.stat(path)
    except OSError:
        return []
    found = []
    deadline = time.monotonic() + seconds
    for directory, _dirs, files in os.walk(root):
        if time.monotonic() > deadline:
            break
        for name in files:
            candidate = os.path.join(directory, name)
            try:
                info = os.lstat(candidate)
            except OSError:
                continue
            if (info.st_dev, info.st_ino) == (target.st_dev, target.st_ino) and candidate != path:
                found.append(candidate)
                if len(found) >= limit:
                    return found
    return found


def hard_link_refusal(path: str, label: str, root: str) -> PolicyError:
    others = other_names(path, root)
    where = ("; other names: " + ", ".join(others)) if others else f"; none of them under {root}"
    return PolicyError(
        f"{path} is denied by {label} but has {hard_link_count(path)} hard links, "
        f"and a mask covers one name only{where}",
        hint=f"find every name with `find / -xdev -samefile '{path}'` and delete the ones "
             "that should not hold the secret (copying the file would leave the secret in them)")


def refuse_home_as_workspace(project_roots, home, provisional):
    """With no project marker between the working directory and $HOME, the
    project root is the working directory itself; when that is $HOME (or
    above it), making it writable would hand the sandbox the user's shell
    start-up files and ringfence's own configuration."""
    for root in project_roots:
        rule = provisional.index.get(root)
        implicit = rule is not None and rule.access == WRITE and rule.token in (PROJECT_ROOTS, WORKSPACE_ROOTS)
        if implicit and is_within(home, root):
            what = "is your home directory" if root == home else f"contains your home directory ({home})"
            raise PolicyError(
                f"refusing to make {root} the writable workspace: it {what}, and a sandbox that can write "
                "there can change your shell start-up files and ringfence's own configuration",
                hint="run from a project directory (one holding .git or a project_root_markers entry), "
                     'or name the directories to write explicitly, e.g. "~/scratch" = "write"')


def refuse_credentials_as_workspace(project_roots, provisional):
    """Run from inside ~/.aws or ~/.ssh with no project marker, the working
    directory would become the writable workspace, and its rule, being more
    specific, would open the very folder the credential layer denies."""
    for root in project_roots:
        rule = provisional.index.get(root)
        if rule is None or rule.access != WRITE or rule.token not in (PROJECT_ROOTS, WORKSPACE_ROOTS):
            continue
        for denied in provisional.rules:
            if denied.kind == "credentials" and denied.access == NONE and is_within(root, denied.path):
                raise PolicyError(
                    f"refusing to make {root} the writable workspace: it lies in {denied.path}, which "
                    f"{denied.label} denies",
                    hint="run from a project directory, or allow that folder explicitly with a rule "
                         f'("{denied.spelled or denied.path}" = "read" or "write") if you mean to')


def check_symlinks(rules, provisional: FilesystemPolicy, refusals=None):
    """A denied or read-only path reached through a symlink that the sandbox can
    rewrite is refused: the protection would follow the link, not the name."""
    for rule in rules:
        if rule.kind != "path" or rule.access == WRITE or not rule.spelled:
            continue
        for link in symlink_components(rule.spelled):
            parent = os.path.dirname(link)
            if provisional.decide_canonical(canonical(parent)).access == WRITE:
                refuse(refusals, PolicyError(
                    f"{rule.describe()} reaches {rule.path} through the symlink {link}, "
                    f"which the sandbox can rewrite ({parent} is writable)",
                    hint=f"write the rule for the real path {rule.path}, or make {parent} read-only"))


# Credential folders hold tens of files; a denied folder of more than this is
# a user's choice (~/Documents) whose every start should not pay for a full walk.
MAX_DENIED_FOLDER_WALK = 20_000


def check_hard_links(rules: list[PathRule], provisional: FilesystemPolicy, home: str, refusals=None, notices=None,
                     kinds=None):
    """A denied file with other hard links (~/netrc.bak made from ~/.netrc)
    is readable under the other names, which a mask on this one cannot cover;
    so is a file inside a denied folder (~/old-creds linked to
    ~/.aws/credentials). Globs' matches are checked as they are found; these
    are the path rules'. `kinds` gets what each path was found to be (see
    FilesystemPolicy.kinds): one lstat serves this check and the mount plan."""
    if kinds is None:
        kinds = {}
    for rule in rules:
        if rule.access != NONE or rule.kind not in ("path", "credentials"):
            continue
        if provisional.index.get(rule.path) is not rule:
            continue  # replaced at its path by a rule that allows it
        try:
            info = os.lstat(rule.path)
        except OSError:
            kinds[rule.path] = MISSING
            continue
        where = home if is_within(rule.path, home) else os.path.dirname(rule.path)
        if stat.S_ISDIR(info.st_mode):
            kinds[rule.path] = "dir"
            linked, complete = _hard_linked_inside(rule.path, MAX_DENIED_FOLDER_WALK)
            if linked:
                refuse(refusals, hard_link_refusal(linked, rule.describe(), where))
            elif not complete and notices is not None:
                notices.append(f"{rule.path} (denied by {rule.describe()}) holds more than "
                               f"{MAX_DENIED_FOLDER_WALK} entries: only the first were checked for hard links "
                               "readable under another name")
        else:
            kinds[rule.path] = "file"
            if stat.S_ISREG(info.st_mode) and info.st_nlink > 1:
                refuse(refusals, hard_link_refusal(rule.path, rule.describe(), where))


def _hard_linked_inside(folder: str, limit: int) -> tuple[str | None, bool]:
    """(the first file below `folder` with more than one name, whether the
    walk saw everything). Links are not followed: a link's target is judged
    by the rules for its own path."""
    seen = 0
    stack = [folder]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as entries:
                for entry in entries:
                    seen += 1
                    if seen > limit:
                        return None, False
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            stack.append(entry.path)
                        elif entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_nlink > 1:
                            return entry.path, True
                    except OSError:
                        continue
        except OSError:
            continue
    return None, True
