"""Isolated runs: a copy-on-write workspace, a reviewable changeset, a journaled apply.

The run's writes land in an overlay's upper layer under the state directory
(store.py, overlay.py, overlaymount.py); afterwards the upper layer is read
into a `Changeset` (changeset.py), rendered as JSON or as a patch `git
apply` takes (diff.py), applied to the real workspace only where it is still
what the run started from (apply.py, journal.py), or discarded. Commits come
back as a bundle (inrun_bundle.py inside, bundle.py on the host). Every
command first calls `recovery.recover(state)`, which finishes what a killed
run or apply left.

Nothing is imported here: each module loads when its step is used.
"""
