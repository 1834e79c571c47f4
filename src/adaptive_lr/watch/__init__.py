"""`adaptive-lr watch`: a live page of one or two runs (LR per group, losses, task metric, controller decisions,
the parameter view's bars) with LR controls, served by Bokeh on 127.0.0.1.

- `runs`: which run a folder or ID names, its bounds and what it is (MLflow tags, stored config);
- `readers`: pure functions from what a run writes (MLflow metric histories, the view's `layer.npz`) to the
  columns the page plots, tested without a server;
- `controls`: the page's buttons and slider as commands in the run's control file (as `adaptive-lr set-lr`);
- `layer_file`: the parameter view's per-layer snapshot (written by `ParamView`, read by the page);
- `page` (the Bokeh document) and `server` (the Bokeh server) import Bokeh; nothing else here does, so the views
  can import `layer_file` without it.
"""
