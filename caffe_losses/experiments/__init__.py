"""Small, deterministic training experiments on the embedded data.

Each module (``infogain``, ``sigmoid``, ``age``, ``center``) has
``run(out_dir, *, small=False, progress=False) -> list[dict]``: it trains a
template and its plain-loss baseline and returns result rows::

    {"loss": "SoftmaxWithInfogainLoss", "recipe": "...", "metric": "...",
     "value": 0.91, "baseline": "SoftmaxWithLoss", "baseline_value": 0.80,
     "higher_is_better": True, "claim": "...", "figure": "path.png" (optional)}

``caffe-losses demo`` runs them all and prints one table.
"""

MODULES = ("infogain", "sigmoid", "age", "center")
