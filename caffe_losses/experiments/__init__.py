"""The demo's engine: each family's recipe against its plain-loss baseline, over several seeds.

``runner`` runs the jobs, ``report`` judges and prints them.  Each family
with a ``demo`` name (:data:`caffe_losses.losses.DEMOS`) has a recipe, its
``experiment`` module, with

* ``plan(out_dir, *, small=False, seeds=None) -> list[runner.Job]``: copies
  the template(s) into the new folder ``out_dir``, writes the data, builds
  the baseline net beside the recipe's, and returns one job per net and
  solver seed;
* ``summarize(results, out_dir, *, small=False) -> (rows, figures)``: the
  result rows (:mod:`caffe_losses.experiments.report`: each with its role,
  per-seed values and verdict) and the pictures.

``caffe-losses demo`` plans them all, runs the jobs of every family together
(:func:`.runner.run_jobs`), summarizes each and prints one table.
"""
