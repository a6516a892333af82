"""An embedded, age-like regression dataset: synthetic 16 x 16 "faces" with ages 0..99.

No downloads and no real faces: each image is drawn from its age by a fixed
recipe, so a small convolutional net can learn the age from the pixels, and
the three age-regression templates (``prototxt_templates/age_*``) can be
trained and compared in seconds.  What the age changes, as in real faces:

* head size grows until about 18 (children's heads are smaller in the frame);
* forehead "wrinkles" (horizontal stripes) deepen with age, ``(age/99)^1.4``;
* the hair turns grey around 45-60 (a sigmoid in age);
* the skin darkens a little, linearly.

Nuisances that the net must ignore: the face's position (+-1.5 px), the
illumination gain and offset, the stripes' phase, and pixel noise.  Ages are
integers, drawn as in face datasets: most between 15 and 50, a uniform
remainder over 0..99.

``write_age(folder)`` writes ``data/train.h5`` and ``data/test.h5`` with
datasets ``data`` (N, 1, 16, 16) and ``true_age`` (N, 1), and their list
files for ``HDF5Data``; the ``prepare_*`` functions are the templates' hooks
(see :mod:`caffe_losses.nets.templates`).  Training rows are written in a seeded
shuffled order and read with ``shuffle: false`` (Caffe's HDF5 shuffle is not
seeded by the solver's ``random_seed``).
"""

import io
import os

import numpy as np

from caffe_losses.nets.prototxt import working_directory
from caffe_losses.nets.surgery import surgery
from caffe_losses.data import write_splits

__all__ = ["make_ages", "render_faces", "load_age", "write_age", "trivial_mae",
           "prepare_smooth_l1", "prepare_surgery", "prepare_expectation", "prepare_mean_variance",
           "SIZE", "N_TRAIN", "N_TEST", "SMALL_TRAIN", "SMALL_TEST"]

SIZE = 16            # images are SIZE x SIZE, one channel
N_TRAIN = 4000
N_TEST = 1000        # 10 test batches of 100
SMALL_TRAIN = 256    # rows written with small=True (tests)
SMALL_TEST = 100


def make_ages(n, rng):
    """``n`` integer ages in 0..99: 75% N(32, 13) clipped, 25% uniform."""
    normal = rng.normal(32.0, 13.0, n)
    uniform = rng.uniform(0.0, 99.0, n)
    ages = np.where(rng.rand(n) < 0.75, normal, uniform)
    return np.clip(np.rint(ages), 0, 99).astype(np.float32)


def render_faces(ages, rng):
    """(N, 1, SIZE, SIZE) float32 images in about [0, 1] drawn from ``ages``.

    Vectorised over samples: every quantity is an (N, 1, 1) array broadcast
    against the (SIZE, SIZE) pixel grid.
    """
    a = np.asarray(ages, dtype=np.float64).reshape(-1, 1, 1)
    n = a.shape[0]
    u = a / 99.0
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    c = (SIZE - 1) / 2.0
    cy = c + rng.uniform(-1.5, 1.5, (n, 1, 1))
    cx = c + rng.uniform(-1.5, 1.5, (n, 1, 1))
    radius = 4.5 + 2.5 * np.minimum(a, 18.0) / 18.0             # head grows until 18
    dy, dx = yy - cy, xx - cx
    dist = np.sqrt(dx * dx + (dy * 0.9) ** 2)
    face = 1.0 / (1.0 + np.exp((dist - radius) * 3.0))           # soft disc
    skin = 0.75 - 0.15 * u                                        # darkens slowly
    wrinkle_amp = 0.45 * u ** 1.4                                 # deepens with age
    phase = rng.uniform(0, 2 * np.pi, (n, 1, 1))
    forehead = face * (dy < -0.5) * (dy > -radius * 0.8)
    stripes = wrinkle_amp * np.sin(2 * np.pi * dy / 2.5 + phase) * forehead
    grey = 1.0 / (1.0 + np.exp(-(a - 52.0) / 7.0))                # hair greys at 45-60
    hair_band = (dy < -radius * 0.55) * (dist < radius + 1.5)
    hair = hair_band * (0.1 + 0.8 * grey - skin * face)          # replaces the skin there
    eyes = face * np.exp(-((dy + 0.0) ** 2 + (np.abs(dx) - radius * 0.45) ** 2) / 1.2) * 0.35
    img = 0.15 + face * skin + stripes + hair - eyes
    gain = rng.uniform(0.85, 1.15, (n, 1, 1))
    offset = rng.uniform(-0.05, 0.05, (n, 1, 1))
    img = img * gain + offset + rng.normal(0.0, 0.03, img.shape)
    return img[:, None, :, :].astype(np.float32)


def load_age(split="train", *, seed=0, n=None):
    """``(images, ages)``: (N, 1, 16, 16) float32 and (N, 1) float32 in 0..99.

    Args:
      split: "train" (4,000 rows) or "test" (1,000 rows); different seeds.
      seed: base seed; the same seed gives the same data, bit for bit.
      n: number of rows (default: the split's full size).
    """
    if split not in ("train", "test"):
        raise ValueError(f"load_age: split must be 'train' or 'test'. Received: split={split!r}")
    n = (N_TRAIN if split == "train" else N_TEST) if n is None else int(n)
    rng = np.random.RandomState([seed, 0 if split == "train" else 1])
    ages = make_ages(n, rng)
    return render_faces(ages, rng), ages.reshape(-1, 1)


def trivial_mae(train_ages, test_ages):
    """Test MAE of the constant predictors: ``{"median": ..., "mean": ...}`` of the training ages."""
    train_ages, test_ages = np.ravel(train_ages), np.ravel(test_ages)
    return {"median": float(np.mean(np.abs(test_ages - np.median(train_ages)))),
            "mean": float(np.mean(np.abs(test_ages - np.mean(train_ages))))}


def write_age(folder, *, small=False, seed=0):
    """Writes ``folder/data/{train,test}.{h5,txt}`` (datasets ``data``, ``true_age``).

    Returns:
      dict with the list files ``train`` and ``test``, the row counts, and the
      trivial predictors' test MAE (``trivial``).
    """
    n_train, n_test = (SMALL_TRAIN, SMALL_TEST) if small else (N_TRAIN, N_TEST)
    x_train, y_train = load_age("train", seed=seed, n=n_train)
    x_test, y_test = load_age("test", seed=seed, n=n_test)
    info = write_splits(folder, {"data": x_train, "true_age": y_train},
                        {"data": x_test, "true_age": y_test})
    return {**info, "trivial": trivial_mae(y_train, y_test)}



def prepare_smooth_l1(folder, *, small=False, seed=0):
    """Template ``age_sigmoid_smoothl1``: writes the data."""
    return write_age(folder, small=small, seed=seed)


def prepare_expectation(folder, *, small=False, seed=0):
    """Template ``age_expectation``: writes the data."""
    return write_age(folder, small=small, seed=seed)


def prepare_mean_variance(folder, *, small=False, seed=0):
    """Template ``age_mean_variance``: writes the data."""
    return write_age(folder, small=small, seed=seed)


def prepare_surgery(folder, *, small=False, seed=0, quiet=True):
    """Template ``age_softmax_surgery``: writes the data, then does the answer's net surgery.

    The same surgery as the template's comment runs with the tool, from the
    template folder (the prototxt's paths are relative to it)::

        caffe-losses net-surgery --model train_val.prototxt --layer pred_age \\
            --values 0:100 --output init_weights.caffemodel

    and so writes ``init_weights.caffemodel``, the template's ``weights:``.
    """
    info = write_age(folder, small=small, seed=seed)
    sink = io.StringIO() if quiet else None
    with working_directory(os.path.abspath(folder)):
        kwargs = {"out": sink, "err": sink} if quiet else {}
        surgery("train_val.prototxt", "pred_age", np.arange(100, dtype=np.float32),
                "init_weights.caffemodel", **kwargs)
    info["weights"] = os.path.join(os.path.abspath(folder), "init_weights.caffemodel")
    return info
