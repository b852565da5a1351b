"""Progress output: a log that is not a terminal gets a line now and then and the final one."""

from __future__ import annotations

import io

from vla_pruner_ros import progress


def test_progress_in_a_log(monkeypatch):
    err = io.StringIO()
    monkeypatch.setattr(progress.sys, "stderr", err)
    clock = iter([100.0, 101.0, 140.0, 141.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    p = progress.Progress("eval", "episodes")
    for done in (1, 2, 3, 4):
        p(done, 4, float(done))
    lines = err.getvalue().splitlines()
    # t=100: first line; t=101: too soon; t=140: 40 s later; the last one always
    assert [line.split("]")[1].split()[0] for line in lines] == ["1/4", "3/4", "4/4"]
