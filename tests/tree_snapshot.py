"""A tree as data, for comparing workspaces: also run inside sandboxes, so it imports no test library."""

import hashlib
import os
import stat


def snapshot(root: str) -> dict:
    """{relative path: [kind, mode, content digest or link target]} for everything below `root`.

    A run may leave entries their owner cannot read (mode 0200) or list
    (0300); only a process with CAP_DAC_OVERRIDE reads them as they are
    (not root in a sandbox). The reader owns them here, so such an entry is
    opened for the moment of reading it and its mode put back; a folder that
    still cannot be listed is an error, never skipped."""
    result = {}

    def readable(path, info, needed):
        wanted = os.R_OK | (os.X_OK if needed & 0o100 else 0)
        if stat.S_IMODE(info.st_mode) & needed == needed or os.access(path, wanted):
            return None
        os.chmod(path, stat.S_IMODE(info.st_mode) | needed)
        return stat.S_IMODE(info.st_mode)

    def walk(folder):
        for name in sorted(os.listdir(folder)):
            path = os.path.join(folder, name)
            relative = os.path.relpath(path, root)
            info = os.lstat(path)
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                result[relative] = ["symlink", 0, os.readlink(path)]
            elif stat.S_ISDIR(info.st_mode):
                result[relative] = ["dir", mode, ""]
                previous = readable(path, info, 0o500)
                try:
                    walk(path)
                finally:
                    if previous is not None:
                        os.chmod(path, previous)
            else:
                previous = readable(path, info, 0o400)
                try:
                    with open(path, "rb") as handle:
                        result[relative] = ["file", mode, hashlib.sha256(handle.read()).hexdigest()]
                finally:
                    if previous is not None:
                        os.chmod(path, previous)

    walk(root)
    return result
