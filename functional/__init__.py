"""The papers' math as pure functions of tensors: no Lightning, only torch, numpy and scipy (torchmetrics style).

One module per paper or tool, each function citing its paper's equation, each checked against an independent
reference in ``tests/functional``:

- ``ebgan``: EBGAN's energies, margin hinge, pulling-away term and the MNIST inception score (arXiv:1609.03126).
- ``entnet``: the Recurrent Entity Network's fused memory recurrence (arXiv:1612.03969, eqs. 2-4).
- ``hessian``: Hessian-vector products, Lanczos, SLQ densities and trace estimators (arXiv:1611.07476).
- ``halting``: halting times, their fluctuations and the universality tests (arXiv:1511.06444).
- ``spin_glass``: the p = 3 spherical spin glass and its projected gradient descent (arXiv:1511.06444).
- ``conjugate_gradient``: conjugate gradient on Wishart systems until it halts (arXiv:1511.06444).
- ``preprocessing``: global contrast normalisation and ZCA whitening (All-CNN's CIFAR-10 input, arXiv:1611.01838).
"""
