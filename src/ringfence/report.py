"""`status` and `explain`: the resolved policy, rule by rule, for people and machines."""

from __future__ import annotations

import os
import sys

from .policy.filesystem import NONE
from .printable import printable


def _decision_word(decision) -> str:
    return "private" if decision.private else decision.access


def _limits(policy, backend) -> dict:
    data = {"processes": policy.limits.processes, "memory": policy.limits.memory,
            "cpu_time": policy.limits.cpu_time, "timeout": policy.limits.timeout,
            "set_by": dict(policy.limits.origins), "summary": policy.limits.describe(),
            "temporary_space": policy.limits.temporary_space}
    data.update(backend.limits(policy))
    return data


def _backend_for(policy, backend):
    if backend is None and policy.sandboxed:
        from .backends import select_backend

        backend = select_backend()
    return backend


def status_data(policy, backend=None) -> dict:
    """Everything `status` shows; `backend` is the one a run would use."""
    backend = _backend_for(policy, backend)
    fs = policy.filesystem
    unenforceable = backend.check(policy) if backend is not None else ()
    env = policy.environment.apply(os.environ)
    data = {
        "profile": policy.profile,
        "chosen_by": policy.profile_origin,
        "sandboxed": policy.sandboxed,
        "cwd": policy.cwd,
        "project_roots": list(policy.project_roots),
        "project_trusted": policy.project_trusted,
        "config_files": list(policy.sources),
        "ignored_keys": list(policy.ignored_keys),
        "backend": backend.describe(policy) if backend is not None else
        {"name": "none", "detail": "danger-full-access: no sandbox"},
        "network": {"mode": policy.network.mode, "rule": policy.network.origin,
                    "domains": [list(d) for d in policy.network.domains],
                    "unix_sockets": [list(s) for s in policy.network.unix_sockets],
                    "new_unix_sockets": "refused" if policy.network.unix_sockets_refused else "allowed",
                    "socks5": policy.network.enable_socks5, "upstream_proxy": policy.network.allow_upstream_proxy},
        "filesystem": [
            {"path": rule.path, "access": "private" if rule.private else fs.decide_canonical(rule.path).access,
             "rule": rule.label, "origin": rule.origin, "kind": rule.kind}
            for rule in fs.winning_rules()],
        "caps": [{"path": cap.path, "max_access": cap.access, "rule": cap.rule.label} for cap in fs.caps],
        "protected": [{"path": entry.path, "kind": entry.kind, "exists": entry.exists, "rule": entry.label}
                      for entry in fs.protected],
        "globs": [{"root": g.root, "pattern": g.pattern, "access": g.access, "rule": g.label,
                   "origin": g.origin, "matched_at_start": len(g.matches), "max_depth": g.max_depth}
                  for g in fs.globs],
        "globs_cover": "files present when the run starts; files created later are not covered",
        "environment": {"inherit": policy.environment.inherit,
                        "default_excludes": not policy.environment.ignore_default_excludes,
                        "dropped": [{"name": name, "reason": reason} for name, reason in env.dropped],
                        "set_by_ringfence": [name for name, _ in policy.environment.added]},
        "limits": _limits(policy, backend) if backend is not None else {"summary": ["none (no sandbox)"]},
        "approval_policy": policy.approval_policy,
        "command_rules": [{"prefix": " ".join(r.prefix), "decision": r.decision, "origin": r.origin}
                          for r in policy.commands.rules],
        "builtin_protections": [{"protection": what, "opt_out": how} for what, how in policy.builtins],
        "refusals": [{"message": refusal.message, "hint": refusal.hint} for refusal in policy.refusals]
        + [{"message": item.message(), "hint": item.hint} for item in unenforceable],
        "notices": list(policy.notices),
    }
    return data


def status(policy, *, as_json: bool, backend=None) -> int:
    data = status_data(policy, backend)
    if as_json:
        import json

        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return 0
    out: list[str] = []
    add = out.append
    for refusal in data["refusals"]:
        add(f"CANNOT RUN: {refusal['message']}")
        if refusal["hint"]:
            add(f"  fix: {refusal['hint']}")
    for notice in data["notices"]:
        add(f"NOTE: {notice}")
    if data["refusals"] or data["notices"]:
        add("")
    add(f"profile        {data['profile']}   (chosen by {data['chosen_by']})")
    backend = data["backend"]
    if "error" in backend:
        add(f"backend        {backend['name']}: UNAVAILABLE: {backend['error']}")
    elif backend["name"] == "none":
        add("backend        NONE: danger-full-access runs commands without a sandbox")
    elif "version" in backend:
        add(f"backend        {backend['name']} {backend['version']} ({backend['origin']}: {backend['path']})")
    else:
        add(f"backend        {backend['name']}: {backend.get('detail', '')}")
    trust = "trusted" if data["project_trusted"] else "untrusted: its config may only tighten"
    add(f"project root   {', '.join(data['project_roots'])} ({trust})")
    add(f"config files   {', '.join(data['config_files']) or '(none)'}")
    network = data["network"]
    words = {"off": "off: own network namespace, loopback only", "full": "full: the host's network",
             "limited": "limited: own network namespace, out only through the egress proxy"}
    add(f"network        {words[network['mode']]}   [{network['rule']}]")
    if network["mode"] == "limited":
        for pattern, action, origin in network["domains"]:
            add(f"  {action:<8} {pattern:<44} [{origin}]")
        if not any(action == "allow" for _p, action, _o in network["domains"]):
            add("  (no domain is allowed: every connection is refused)")
        for path, action, origin in network["unix_sockets"]:
            add(f"  {action:<8} unix socket {path}   [{origin}]")
        add("  new unix sockets: " + ("refused (only the proxy leads out)" if network["new_unix_sockets"] ==
                                      "refused" else "allowed: host sockets in visible folders stay reachable"))
        if network["socks5"]:
            add("  SOCKS5 offered beside HTTP (ALL_PROXY=socks5h://...)")
    add("")
    add("filesystem (the most specific rule decides; access shown after caps)")
    for row in data["filesystem"]:
        add(f"  {row['access']:<8} {row['path']:<44} {row['rule']}  [{row['origin']}]")
    add("caps (a subtree never gets more than this)")
    for cap in data["caps"]:
        add(f"  {cap['max_access']:<8} {cap['path']:<44} {cap['rule']}")
    if data["protected"]:
        missing = [p["path"] for p in data["protected"] if not p["exists"]]
        if missing:
            add("  missing protected names get an empty read-only placeholder while a run lasts: "
                + ", ".join(os.path.basename(p) for p in missing))
    if data["globs"]:
        add(f"globs (cover {data['globs_cover']})")
        for glob in data["globs"]:
            add(f"  {glob['access']:<8} {glob['root']}/{glob['pattern']:<30} {glob['matched_at_start']} "
                f"match(es)  {glob['rule']}")
    env = data["environment"]
    add("")
    from .policy.environment import DEFAULT_EXCLUDES

    add(f"environment    inherit {env['inherit']}; default excludes ({' '.join(DEFAULT_EXCLUDES)}) "
        f"{'on' if env['default_excludes'] else 'OFF'}")
    if env["dropped"]:
        add("  dropped (names only): " + ", ".join(f"{d['name']} ({d['reason']})" for d in env["dropped"]))
    add("  set by ringfence: " + ", ".join(env["set_by_ringfence"]))
    limits = data["limits"]
    add(f"limits         {', '.join(limits['summary'])}")
    if "enforcement" not in limits:
        limits = dict(limits, enforcement="nothing", memory_enforced_by="nothing", cpu_time_enforced_by="nothing",
                      shared_counters={}, shared_rlimits="nothing", temporary_space=0)
    add(f"  process cap enforced by: {limits['enforcement']}")
    add(f"  memory: {limits['memory_enforced_by']}; cpu time: {limits['cpu_time_enforced_by']}")
    counters = ", ".join(f"{name.removeprefix('max_')} {value}" for name, value in limits["shared_counters"].items())
    add(f"  counted per user: the sandbox's user namespace gets half ({counters}), and "
        f"{limits['shared_rlimits']}")
    add("  temporary space: private tmpfs mounts bounded together "
        f"({(limits['temporary_space'] or 0) >> 20} MiB; [limits] temporary_space); /dev read-only")
    add(f"approval       {data['approval_policy']}")
    if data["command_rules"]:
        add("command rules  " + "; ".join(f"{r['prefix']} -> {r['decision']}" for r in data["command_rules"]))
    add("")
    add("built-in protections in force (and how to opt out)")
    for row in data["builtin_protections"]:
        add(f"  {row['protection']:<58} opt out: {row['opt_out']}")
    if data["ignored_keys"]:
        add("")
        add("ignored keys (Codex settings with no meaning for the sandbox): "
            + ", ".join(data["ignored_keys"]))
    _write_lines(out)
    return 0


def _write_lines(lines):
    # Paths come from the disk (a folder the sandbox named, a link's target),
    # rules from a project's configuration: each line is shown escaped.
    sys.stdout.write("".join(printable(line) + "\n" for line in lines))


def explain_data(policy, path: str) -> dict:
    # Relative paths mean what they mean to `run` with the same --cd.
    absolute = os.path.normpath(os.path.join(policy.cwd, os.path.expanduser(path)))
    decision = policy.filesystem.access(absolute)
    rule = decision.rule
    data = {"path": absolute, "canonical": decision.path, "access": _decision_word(decision),
            "rule": rule.label if rule else None, "origin": rule.origin if rule else None,
            "kind": rule.kind if rule else None, "note": decision.note}
    notes = []
    if not policy.sandboxed:
        notes.append("danger-full-access: nothing is enforced")
    if policy.refusals:
        notes.append(f"this policy cannot run as it stands ({len(policy.refusals)} problem(s)): "
                     "`ringfence status` lists them")
    if decision.path != absolute:
        notes.append(f"reached through a symlink; rules apply to {decision.path}")
    if rule is not None and rule.kind == "glob":
        notes.append("matched by a glob when the run starts; files created later are not covered")
    glob_note = policy.filesystem.glob_note(absolute)
    if glob_note:
        notes.append(glob_note)
    if decision.private:
        notes.append("private to each run: a fresh tmpfs, gone afterwards; the host's files here are not "
                     "visible. Opt out with \":slash_tmp\" = \"write\" or a rule for the path")
    if rule is not None and rule.kind == "credentials" and decision.access == NONE:
        notes.append(f'to allow it, add "{_rule_key(decision.path, policy.home)}" = "read" to the profile\'s '
                     "filesystem table, or turn the layer off with [protection] credentials = false")
    if rule is not None and rule.kind == "protected":
        notes.append("protected metadata: read-only, and not creatable when missing")
    data["notes"] = notes
    return data


def _rule_key(path: str, home: str) -> str:
    """How to write `path` as a filesystem key: absolute, or under ~."""
    if home and path.startswith(home.rstrip("/") + "/"):
        return "~/" + path[len(home.rstrip("/")) + 1:]
    return path


def explain(policy, paths, *, as_json: bool) -> int:
    rows = [explain_data(policy, path) for path in paths]
    if as_json:
        import json

        sys.stdout.write(json.dumps(rows if len(rows) > 1 else rows[0], indent=2) + "\n")
        return 0
    out = []
    for row in rows:
        out.append(f"{row['path']}: {row['access']}")
        if row["rule"]:
            out.append(f"  rule:   {row['rule']}  [{row['origin']}]")
        elif row["note"]:
            out.append(f"  rule:   none ({row['note']})")
        out += [f"  note:   {note}" for note in row["notes"]]
    _write_lines(out)
    return 0
