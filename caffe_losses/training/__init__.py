"""Training through pycaffe as ``caffe train`` does, with progress, curves and safe interrupts.

``train(solver_path)`` runs the solver iteration by iteration and follows
Caffe's ``Solver::Solve`` and ``Solver::Step`` (BVLC ``src/caffe/solver.cpp``):

* Tests: before the update of iteration ``it``, when ``test_interval > 0``,
  ``it % test_interval == 0`` and (``it > 0`` or ``test_initialization``);
  after the last iteration, once more when ``it % test_interval == 0``.
  Each test net is run ``test_iter`` times on the trained weights
  (``share_with``), every output summed in float32 and divided by
  ``test_iter``, the loss too with ``test_compute_loss``: Caffe's ``Test``.
  pycaffe's ``step`` would run Caffe's own ``TestAll``, which only writes
  glog lines, so the solver handed to Caffe has its testing turned off
  (``test_interval`` 2^31-1, ``test_initialization: false``) and the tests
  run here, at Caffe's iterations, with Caffe's arithmetic; each result is
  printed (the format of Caffe's "Test net output" lines, numbers to 6
  significant digits as glog prints them) and kept in the history.
* Snapshots: Caffe writes ``PREFIX_iter_N.caffemodel`` and
  ``.solverstate`` (``.caffemodel.h5`` / ``.solverstate.h5`` with
  ``snapshot_format: HDF5``) every ``snapshot`` iterations, and after the
  last one when ``snapshot_after_train`` unless that iteration was just
  written. Each is written once. Without ``snapshot_prefix`` the prefix is
  the solver file's path without its extension, and a prefix naming a folder
  gets the solver file's stem appended, as Caffe's
  ``UpgradeSnapshotPrefixProperty`` does. Caffe writes each snapshot under
  a hidden temporary prefix in the same folder (on the CPU in a forked
  child, so that a full disk, where Caffe's writers abort, ends only the
  child); the files are renamed into place once complete
  (:meth:`caffe_losses.training.loop._Run.write_snapshot`).
* Interrupts: Ctrl-C (SIGINT) and SIGTERM (``docker stop``) stop training
  after the current iteration (or test batch) and save a snapshot at that
  iteration; SIGHUP saves one and goes on (Caffe's ``-sighup_effect``
  default). A second SIGINT stops at once (:class:`StoppedAgain`, whose
  message says which snapshot of the run is complete), a second SIGTERM
  ends the process; either while a snapshot is being written drops it
  (never left half-written under its final name) and says so, and either
  after it (while the curve is drawn) says which snapshot is complete and
  the command that resumes from it.
  Every message about a snapshot names its files, after they exist.

Before building the nets it checks what Caffe would abort on (solver
structure, ``snapshot_prefix``'s folder, data sources, weights and solver
state files: :mod:`caffe_losses.nets.preflight`); errors raised by Python layers
(while building the nets or training) become a :class:`TrainingError` that
names the layer as written in the prototxt.

The parts: :mod:`~caffe_losses.training.loop` (:func:`train`, the run loop),
:mod:`~caffe_losses.training.solver` (the solver handed to Caffe, CPU or GPU),
:mod:`~caffe_losses.training.snapshots` (atomic snapshots),
:mod:`~caffe_losses.training.console` (the progress line, signals),
:mod:`~caffe_losses.training.errors` (errors naming the layer) and
:mod:`~caffe_losses.training.curves` (the training curve).  The names below
are the package's public ones.
"""

from caffe_losses.nets.preflight import snapshot_prefix
from caffe_losses.training.curves import CURVE_EXTRA_NOTE, plot_curve
from caffe_losses.training.errors import StoppedAgain, TrainingError, with_blob_names
from caffe_losses.training.loop import format_test, net_loss, train
from caffe_losses.training.snapshots import snapshot_files
from caffe_losses.training.solver import check_max_iter, read_solver

__all__ = ["read_solver", "train", "plot_curve", "check_max_iter", "StoppedAgain", "net_loss",
           "snapshot_prefix", "snapshot_files", "format_test", "TrainingError", "CURVE_EXTRA_NOTE",
           "with_blob_names"]
