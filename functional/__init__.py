"""The papers' math as pure functions of tensors: no Lightning, only torch, numpy and scipy (torchmetrics style).

One module per paper or tool, each public function citing its paper's arXiv id and equation (or section,
algorithm, table), each checked against an independent reference in ``tests/functional/test_<module>.py``:

- ``ebgan``: EBGAN's energies, margin hinge, pulling-away term and the MNIST score I' (arXiv:1609.03126).
- ``entnet``: the Recurrent Entity Network's fused memory recurrence (arXiv:1612.03969 section 2.2, eqs 2-5).
- ``ladder``: the Ladder Network's encoder, gaussian combinator and denoising costs (arXiv:1507.02672), for
  EBGAN-LN (arXiv:1609.03126 section 4.2).
- ``hessian``: Hessian-vector products, Lanczos, SLQ densities and trace estimators (arXiv:1611.07476,
  arXiv:1706.04454).
- ``halting``: halting times, their fluctuations and the universality tests (arXiv:1511.06444).
- ``spin_glass``: the p = 3 spherical spin glass and its projected gradient descent (arXiv:1511.06444).
- ``conjugate_gradient``: conjugate gradient on Wishart systems until it halts (arXiv:1511.06444).
- ``qr_algorithm``: the unshifted QR eigenvalue algorithm on Wigner matrices until it first deflates (arXiv:1511.06444).
- ``preprocessing``: global contrast normalisation and ZCA whitening (All-CNN's CIFAR-10 input, arXiv:1611.01838;
  arXiv:1302.4389).
- ``philox``: counter-based standard normal draws (Philox4x32-10 and Box-Muller), Entropy-SGD's Langevin noise on
  the CPU (arXiv:1611.01838 Algorithm 1).
- ``compiled``: building the C++ kernels (``entnet_loops.cpp``, ``philox_normal.cpp``) on first use.
"""
