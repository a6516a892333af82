"""Angular-margin logits (SphereFace, CosFace / AM-Softmax, ArcFace, insightface's combined margin).

Pure NumPy, no caffe import.  :func:`margin_forward` -> ``(logits, cache)``,
:func:`margin_backward` -> ``(d features, d weights)``; a softmax loss follows
the logits in the net.  Everything works in the dtype it is given (float64
for the exact checks, float32 inside a Caffe net).

Forward.  For N features ``x_i`` (D values) and the class weights ``W`` (C x D)::

    u_i = x_i / |x_i|,   v_j = W_j / |W_j|,   c_ij = <u_i, v_j> = cos(theta_ij)
    s_i = scale                  (or |x_i| with feature_norm, SphereFace's choice)
    z_ij = s_i c_ij              for j != y_i  (and every j without a label)
    z_iy = s_i g(c_iy)           the target logit, y = y_i

The target function ``g`` of ``t = cos(theta)`` (``theta`` in [0, pi]):

* ``m1 = 1`` (ArcFace ``m2``, CosFace / AM-Softmax ``m3``, insightface's
  combination of both)::

      g(t) = cos(theta + m2) - m3 = t cos(m2) - sin(theta) sin(m2) - m3   if t > cos(pi - m2)
      g(t) = t - m2 sin(m2) - m3                                       otherwise

  The second line is insightface's monotonic fallback past ``theta + m2 = pi``
  (``t <= cos(pi - m2)``), where ``cos(theta + m2)`` would rise again.  With
  ``easy_margin`` (ArcFace's option) the margin applies where ``t > 0``
  and ``g(t) = t - m3`` elsewhere (no fallback then).  ``m2 = 0``: ``g = t - m3``.

* ``m1 > 1`` (SphereFace's A-Softmax, ``m2 = m3 = 0``)::

      psi(theta) = (-1)^k cos(m1 theta) - 2k     theta in [k pi / m1, (k + 1) pi / m1]
      g(t)       = (lambda t + psi) / (1 + lambda)

  ``cos(m1 theta) = T_m1(t)`` (Chebyshev polynomial of the first kind), and
  ``k`` is the number of ``j`` in 1..m1-1 with ``t < cos(j pi / m1)``: no
  ``arccos`` anywhere.  ``psi`` is continuous and so is its slope (0 at every
  ``k pi / m1``), so the choice of ``k`` at a boundary does not matter.

Backward.  ``dz`` is the logits' diff.  Write ``g'(t) = a(t) + b(t) / sin(theta)``
with ``a``, ``b`` bounded::

    ArcFace region:   a = cos(m2),                  b = t sin(m2)
                      (d/dt cos(arccos t + m2) = cos(m2) + t sin(m2) / sin(theta))
    fallback, easy, CosFace:  a = 1, b = 0
    SphereFace:       a = (lambda + (-1)^k m1 U_{m1-1}(t)) / (1 + lambda),  b = 0
                      (d/dt T_m(t) = m U_{m-1}(t), U of the second kind: sin(m theta) / sin(theta))

The chain rule through ``c_ij = <x_i, W_j> / (|x_i| |W_j|)``::

    dc_ij/dx_i = (v_j - c_ij u_i) / |x_i|,      dc_ij/dW_j = (u_i - c_ij v_j) / |W_j|

so with ``e_ij = dz_ij s_i`` (times ``a`` at the target)::

    dx_i = (sum_j e_ij v_j - (sum_j e_ij c_ij) u_i) / |x_i|  [+ (sum_j dz_ij z_ij / s_i) u_i with feature_norm]
    dW_j = (sum_i e_ij u_i - (sum_i e_ij c_ij) v_j) / |W_j|

and the ``b / sin(theta)`` part at the target, with ``q_i = dz_iy s_i b(t_i)``::

    dx_i += q_i p_i / |x_i|,    p_i = (v_y - t u_i) / |v_y - t u_i|
    dW_y += q_i r_i / |W_y|,    r_i = (u_i - t v_y) / |u_i - t v_y|

``|v_y - t u_i| = |u_i - t v_y| = sin(theta)``, computed from the vectors
(accurate where ``sqrt(1 - t^2)`` loses every digit in float32) and used for
``sin(theta)`` in the forward too.  At ``t = +-1`` exactly (a feature along
its class weight) the direction ``p`` is undefined and ``|g'| = sin(m2)/0``:
the derivative does not exist there (a kink of the angle); the backward takes
``p = r = 0`` for that term (the one-sided limits average out over the
directions), and ``a`` keeps its value, so the gradient stays finite.  Zero
vectors have no direction: a feature or class-weight row whose norm is 0 (or
not finite) is refused with its index.

Reference:
  W. Liu et al., "SphereFace: Deep Hypersphere Embedding for Face
  Recognition", CVPR 2017; H. Wang et al., "CosFace", CVPR 2018 and F. Wang
  et al., "Additive Margin Softmax", SPL 2018; J. Deng et al., "ArcFace:
  Additive Angular Margin Loss for Deep Face Recognition", CVPR 2019
  (insightface's combined margin ``cos(m1 theta + m2) - m3``).
"""

import math
from dataclasses import dataclass

import numpy as np

from caffe_losses.losses import common

__all__ = ["margin_forward", "margin_backward", "sphereface_fork_backward", "target_margin",
           "sphereface_lambda", "chebyshev", "row_norms"]


def target_margin(t, sin_t, *, m1=1, m2=0.5, m3=0.0, easy_margin=False, lam=0.0):
    """``g(t)`` and its slope's parts ``a``, ``b`` (``g' = a + b / sin(theta)``), elementwise."""
    one = np.ones_like(t)
    if m1 > 1:
        k = sum((t < math.cos(j * math.pi / m1)).astype(t.dtype) for j in range(1, m1))
        sign = 1 - 2 * np.mod(k, 2)                       # (-1)^k
        cheb, cheb_u = chebyshev(t, m1)
        psi = sign * cheb - 2 * k
        inv = t.dtype.type(1.0 / (1.0 + lam))
        return (lam * t + psi) * inv, (lam + sign * m1 * cheb_u) * inv, np.zeros_like(t)
    if m2 == 0:
        return t - m3, one, np.zeros_like(t)
    cos_m, sin_m = t.dtype.type(math.cos(m2)), t.dtype.type(math.sin(m2))
    arc = t > (0 if easy_margin else -math.cos(m2))       # cos(pi - m2) = -cos(m2)
    other = t if easy_margin else t - t.dtype.type(m2 * math.sin(m2))
    g = np.where(arc, t * cos_m - sin_t * sin_m, other) - t.dtype.type(m3)
    return g, np.where(arc, cos_m, one), np.where(arc, t * sin_m, 0 * t)


def chebyshev(t, m):
    """``(T_m(t), U_{m-1}(t))``: ``cos(m theta)`` and ``sin(m theta) / sin(theta)`` for ``t = cos(theta)``."""
    t_prev, t_cur = np.ones_like(t), t                   # T_0, T_1
    u_prev, u_cur = np.zeros_like(t), np.ones_like(t)    # U_{-1}, U_0
    for _ in range(m - 1):
        t_prev, t_cur = t_cur, 2 * t * t_cur - t_prev
        u_prev, u_cur = u_cur, 2 * t * u_cur - u_prev
    return t_cur, u_cur


def sphereface_lambda(iteration, *, base=1.0, gamma=0.0, power=1.0, lambda_min=0.0):
    """SphereFace's ``lambda = max(lambda_min, base (1 + gamma iteration)^(-power))`` (its fork's Forward)."""
    return max(lambda_min, base * (1.0 + gamma * iteration) ** (-power))


def row_norms(a):
    """Euclidean norm of each row, without overflow or underflow of the squares (float32 features ~1e20)."""
    sq = np.einsum("ij,ij->i", a, a)
    norms = np.sqrt(sq)
    bad = ~np.isfinite(sq) | ((sq < np.finfo(a.dtype).tiny * 4) & (sq >= 0))
    if bad.any():
        rows = a[bad]
        big = np.abs(rows).max(axis=1)
        with np.errstate(invalid="ignore", over="ignore"):  # inf / inf: NaN, refused by the caller
            scaled = rows / np.where(big > 0, big, 1)[:, None]
            norms[bad] = big * np.sqrt(np.einsum("ij,ij->i", scaled, scaled))
    return norms


@dataclass
class MarginCache:
    """What :func:`margin_backward` needs (arrays in the features' dtype)."""

    u: np.ndarray          # (N, D) x / |x|
    v: np.ndarray          # (C, D) W / |W|
    x_norm: np.ndarray     # (N,)
    w_norm: np.ndarray     # (C,)
    cos: np.ndarray        # (N, C) c_ij
    scale: object          # float, or (N,) |x| with feature_norm
    feature_norm: bool
    rows: np.ndarray       # samples with a (kept) label
    y: np.ndarray          # their labels
    t: np.ndarray          # their c_iy
    a: np.ndarray          # g' = a + b / sin(theta) at the target
    b: np.ndarray
    p: np.ndarray          # (n, D) unit (v_y - t u) / sin(theta), 0 where sin(theta) = 0
    r: np.ndarray          # (n, D) unit (u - t v_y) / sin(theta)
    g: np.ndarray          # g(t), the target's logit / s
    shape: tuple           # the features' shape
    x: np.ndarray = None   # (N, D) the features (read by sphereface_fork_backward)
    m1: int = 1
    lam: float = 0.0


def _unit_rows(owner, a, what):
    norms = row_norms(a)
    bad = ~(np.isfinite(norms) & (norms > 0))
    if bad.any():
        finite = np.isfinite(a[bad]).all(axis=1) & (norms[bad] > 0)   # a norm beyond the dtype
        if not finite.all():
            i = int(np.flatnonzero(bad)[np.flatnonzero(~finite)[0]])
            count = int((~finite).sum())
            raise ValueError(f"{owner}: {what} row {i} has norm {float(norms[i])} ({count} such "
                             f"row(s)): the cosine needs a direction; a zero or non-finite row has none")
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = a / norms[:, None]
    if bad.any():              # finite rows of infinite norm: their direction from the rows scaled down
        rows = a[bad] / np.abs(a[bad]).max(axis=1, keepdims=True)
        unit[bad] = rows / np.sqrt(np.einsum("ij,ij->i", rows, rows))[:, None]
    return unit, norms


def margin_forward(x, weight, labels=None, *, scale=64.0, feature_norm=False, m1=1, m2=0.5, m3=0.0,
                   easy_margin=False, lam=0.0, ignore_label=None, owner="MarginProduct"):
    """Margin logits ``(N, C)`` and the cache for :func:`margin_backward` (formulas: the module's doc).

    Args:
      x: features (N, D...) (dims after the first flattened).
      weight: class weights (C, D).
      labels: N class indices in [0, C) (or ``ignore_label``), or None: plain ``s cos``.
      scale, feature_norm, m1, m2, m3, easy_margin: as the layer's keys.
      lam: SphereFace's lambda (``m1 > 1``).
      ignore_label: a label whose sample gets no margin.

    Raises:
      ValueError for a zero / non-finite feature or weight row, labels out of range.
    """
    f = np.asarray(x).reshape(len(x), -1)
    weight = np.asarray(weight)
    if weight.ndim != 2 or weight.shape[1] != f.shape[1]:
        raise ValueError(f"{owner}: class weights must be (num_classes, {f.shape[1]}); got {weight.shape}")
    u, x_norm = _unit_rows(owner, f, "bottom 'features'")
    v, w_norm = _unit_rows(owner, weight, "the class weights (blob 0)")
    cos = u @ v.T
    np.clip(cos, -1, 1, out=cos)
    s = x_norm if feature_norm else f.dtype.type(scale)
    logits = cos * (s[:, None] if feature_norm else s)
    rows = np.zeros(0, np.int64)
    y = rows
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        common.check_label_count(owner, f.shape[0], labels.shape, "features", np.shape(x))
        y, keep = common.check_labels(owner, labels, weight.shape[0], ignore_label=ignore_label)
        rows = np.arange(f.shape[0]) if keep is None else np.flatnonzero(keep)
        y = y[rows]
    t = cos[rows, y]
    pv = v[y] - t[:, None] * u[rows]                      # sin(theta) p
    ru = u[rows] - t[:, None] * v[y]                      # sin(theta) r
    sin_t = row_norms(pv) if len(rows) else t
    g, a, b = target_margin(t, sin_t, m1=m1, m2=m2, m3=m3, easy_margin=easy_margin, lam=lam)
    logits[rows, y] = g * (s[rows] if feature_norm else s)
    safe = np.where(sin_t > 0, sin_t, 1)[:, None]
    p = np.where(sin_t[:, None] > 0, pv / safe, 0)
    r = np.where(sin_t[:, None] > 0, ru / row_norms(ru).clip(min=np.finfo(f.dtype).tiny)[:, None], 0)
    return logits, MarginCache(u, v, x_norm, w_norm, cos, s, feature_norm, rows, y, t, a, b, p, r, g,
                               np.shape(x), f, m1, lam)


def margin_backward(cache, dz, *, out_x=None, out_w=None, accumulate_w=False):
    """``(dL/dx, dL/dW)`` from the logits' diff ``dz`` (N, C); derivation in the module's doc.

    ``out_x`` receives the features' gradient (any C-contiguous array of its
    count); ``out_w`` the weights' (added to it with ``accumulate_w``, as Caffe
    accumulates parameter diffs).
    """
    c = cache
    s = c.scale[:, None] if c.feature_norm else c.scale
    e = dz * s                                            # dz_ij s_i
    rows, y = c.rows, c.y
    dz_t = dz[rows, y]
    e[rows, y] *= c.a
    q = (dz_t * (c.scale[rows] if c.feature_norm else s) * c.b)[:, None]
    ec = np.einsum("ij,ij->i", e, c.cos)                  # sum_j e_ij c_ij
    dx = e @ c.v
    dx -= ec[:, None] * c.u
    np.add.at(dx, rows, q * c.p)
    if c.feature_norm:                                    # through s_i = |x_i|: d|x|/dx = u
        z_over_s = c.cos.copy()
        z_over_s[rows, y] = c.g
        dx += (np.einsum("ij,ij->i", dz, z_over_s) * c.x_norm)[:, None] * c.u
    dx /= c.x_norm[:, None]
    dw = e.T @ c.u
    dw -= np.einsum("ij,ij->j", e, c.cos)[:, None] * c.v
    np.add.at(dw, y, q * c.r)
    dw /= c.w_norm[:, None]
    gx = common.out_view(out_x, dx.shape, dx.dtype)
    gx[...] = dx
    if out_w is None:
        return gx.reshape(c.shape) if out_x is None else out_x, dw
    if accumulate_w:
        out_w += dw
    else:
        out_w[...] = dw
    return (gx.reshape(c.shape) if out_x is None else out_x), out_w


def sphereface_fork_backward(cache, dz, *, out_x=None, out_w=None, accumulate_w=False):
    """The gradients SphereFace's fork computes (``gradient: sphereface``), not the exact ones.

    wy1iu/sphereface's ``MarginInnerProductLayer::Backward_cpu`` (its weights
    are unit rows, normalised in place by its forward):

    * features, at a label: the exact derivative of ``|x| psi(t)`` is
      ``c_w W_y + c_x x`` with ``c_w = psi'(t)``, ``c_x = (psi - t psi') / |x|``;
      the fork divides ``(c_w, c_x)`` by its length, then mixes it as the
      forward does: ``dz (c_w W_y + c_x x) / (1 + lambda) + lambda / (1 + lambda) dz W_y``;
      elsewhere ``dz_j W_j`` (exact: ``|x| cos_j = <x, W_j>``);
    * weights: ``dW = dz^T x``, as a plain ``InnerProduct`` (margin and
      normalisation left out).

    Only for ``feature_norm`` with ``m2 = m3 = 0`` (SphereFace's own logits).
    """
    c = cache
    dx = dz @ c.v
    if c.m1 > 1 and len(c.rows):
        rows, y = c.rows, c.y
        psi, slope, _ = target_margin(c.t, c.t, m1=c.m1, lam=0.0)
        cw, cx = slope, (psi - c.t * slope) / c.x_norm[rows]
        length = np.sqrt(cw * cw + cx * cx)
        cw, cx = cw / length, cx / length
        dt = dz[rows, y][:, None]
        inv = c.x.dtype.type(1.0 / (1.0 + c.lam))
        dx[rows] += dt * inv * (cw[:, None] * c.v[y] + cx[:, None] * c.x[rows]) \
            + dt * c.x.dtype.type(c.lam * inv - 1) * c.v[y]   # the mixed lambda W_y term, less dz W_y above
    dw = dz.T @ c.x
    gx = common.out_view(out_x, dx.shape, dx.dtype)
    gx[...] = dx
    if out_w is not None:
        if accumulate_w:
            out_w += dw
        else:
            out_w[...] = dw
        dw = out_w
    return (gx.reshape(c.shape) if out_x is None else out_x), dw
