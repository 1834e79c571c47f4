"""The report's LR plot ends at the last LR applied: a value logged at the end of training (the controller's decision
after the last epoch, never applied) is left out, and the last applied LR is held to the end."""

from __future__ import annotations

import pandas as pd

from adaptive_lr.reporting.plots import applied_lr


def test_the_post_run_lr_is_dropped_and_the_last_applied_lr_held_to_the_end():
    # 2 epochs of 4 steps: LR 0.1 in epoch 1, 0.05 in epoch 2, then the decision after epoch 2 (0.025) at step 8
    steps, values = pd.Series([0, 2, 4, 6, 8]), pd.Series([0.1, 0.1, 0.05, 0.05, 0.025])
    x, y = applied_lr(steps, values, epochs_trained=2, steps_per_epoch=4)
    assert (x, y) == ([0.0, 0.5, 1.0, 1.5, 2.0], [0.1, 0.1, 0.05, 0.05, 0.05])


def test_a_run_that_stopped_early_ends_at_its_last_epoch_and_unknown_lengths_keep_every_point():
    steps, values = pd.Series([0, 4, 8, 12]), pd.Series([0.1, 0.2, 0.4, 0.8])
    assert applied_lr(steps, values, epochs_trained=2, steps_per_epoch=4) == ([0.0, 1.0, 2.0], [0.1, 0.2, 0.2])
    assert applied_lr(steps, values, epochs_trained=None, steps_per_epoch=4) == ([0.0, 1.0, 2.0, 3.0],
                                                                                 [0.1, 0.2, 0.4, 0.8])
    assert applied_lr(steps, values, epochs_trained=pd.NA, steps_per_epoch=4)[0] == [0.0, 1.0, 2.0, 3.0]
