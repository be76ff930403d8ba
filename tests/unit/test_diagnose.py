"""The reasons a sandbox cannot start, diagnosed on simulated hosts."""

import os

import pytest

from ringfence.backends.linux.diagnose import findings, in_container


def host(tmp_path, files: dict) -> str:
    for path, text in files.items():
        full = tmp_path / path.lstrip("/")
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(text)
    return str(tmp_path)


HEALTHY = {"/proc/version": "Linux version 6.8.0-45-generic", "/proc/sys/user/max_user_namespaces": "15000",
           "/proc/1/cgroup": "0::/init.scope", "/proc/self/status": "Name: x\nSeccomp:\t0\n"}


def kinds(root):
    return [kind for kind, _explanation, _fix in findings(root)]


def test_a_healthy_host_has_no_findings(tmp_path):
    assert findings(host(tmp_path, HEALTHY)) == []


def test_ubuntu_apparmor_restriction(tmp_path):
    root = host(tmp_path, dict(HEALTHY, **{"/proc/sys/kernel/apparmor_restrict_unprivileged_userns": "1"}))
    [(kind, explanation, fix)] = findings(root)
    assert kind == "apparmor" and "AppArmor" in explanation
    assert "apt install bubblewrap" in fix and "apparmor_restrict_unprivileged_userns=0" in fix


@pytest.mark.parametrize("path,value,fix", [
    ("/proc/sys/kernel/unprivileged_userns_clone", "0", "unprivileged_userns_clone=1"),
    ("/proc/sys/user/max_user_namespaces", "0", "max_user_namespaces=15000"),
])
def test_sysctls_that_forbid_user_namespaces(tmp_path, path, value, fix):
    root = host(tmp_path, dict(HEALTHY, **{path: value}))
    [(kind, _explanation, remedy)] = findings(root)
    assert kind == "sysctl" and fix in remedy and remedy.startswith("sudo sysctl -w")


@pytest.mark.parametrize("marker,expected", [("/.dockerenv", "docker"), ("/run/.containerenv", "podman")])
def test_containers_by_marker_file(tmp_path, marker, expected):
    root = host(tmp_path, dict(HEALTHY, **{marker: ""}))
    assert in_container(root) == expected
    [(kind, explanation, fix)] = findings(root)
    assert kind == "container" and expected in explanation and "--security-opt" in fix


def test_container_by_cgroup(tmp_path):
    root = host(tmp_path, dict(HEALTHY, **{"/proc/1/cgroup": "0::/kubepods/besteffort/pod1/abc"}))
    assert in_container(root) == "kubepods"


def test_wsl1_is_told_apart_from_wsl2(tmp_path):
    wsl1 = host(tmp_path / "1", dict(HEALTHY, **{"/proc/version": "Linux version 4.4.0-19041-Microsoft"}))
    wsl2 = host(tmp_path / "2", dict(HEALTHY, **{"/proc/version":
                                                  "Linux version 5.15.90.1-microsoft-standard-WSL2"}))
    assert kinds(wsl1) == ["wsl1"] and "WSL2" in findings(wsl1)[0][2]
    assert kinds(wsl2) == []


def test_several_problems_are_all_reported(tmp_path):
    root = host(tmp_path, dict(HEALTHY, **{"/proc/sys/user/max_user_namespaces": "0", "/.dockerenv": ""}))
    assert sorted(kinds(root)) == ["container", "sysctl"]


def test_this_machine_can_be_diagnosed():
    """The real host: whatever it says must be well-formed."""
    for kind, explanation, fix in findings():
        assert kind and explanation and fix
    assert os.path.exists("/proc/version")
