"""`NoProfiler`, the no-op profiler the runner hands to the Trainer (`tasks/base.py`, module docstring 10)."""

from __future__ import annotations

from lightning.pytorch.profilers import PassThroughProfiler

from adaptive_lr.tasks.base import NoProfiler


def test_no_profiler_hands_out_one_reusable_no_op_context():
    profiler = NoProfiler()
    assert isinstance(profiler, PassThroughProfiler)  # Lightning treats it as its default no-op profiler
    first, second = profiler.profile("[Callback]a.on_train_batch_end"), profiler.profile("b")
    assert first is second  # no generator or context object per hook call
    with first as value, second:  # reentrant: Lightning nests profiled hooks
        assert value is None
    assert profiler.summary() == ""
