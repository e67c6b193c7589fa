"""``EntropySGD``: gradient descent on the local entropy (Chaudhari et al., ICLR 2017, Algorithm 1), a plain
``torch.optim.Optimizer`` usable with or without Lightning.

One ``step(closure)`` is one outer step and calls ``closure`` ``L + 1`` times (arXiv:1611.01838
Algorithm 1): once at the current weights ``x`` (its loss is returned; its gradient is used only by
``outer_grad="v1"``), then ``L`` times at the Langevin weights ``x'``. The closure should draw a FRESH
minibatch on every call (the paper's semantics), compute the loss, call ``backward()`` and return the loss;
gradients are zeroed before each call. Used in a plain loop::

    optimizer = EntropySGD(model.parameters(), lr=1.0, L=20)
    batches = itertools.cycle(loader)                     # any iterator of fresh minibatches
    def closure():
        x, y = next(batches); loss = F.cross_entropy(model(x), y); loss.backward(); return loss
    for _ in range(n_outer_steps):
        optimizer.step(closure)

Each outer step with scope ``gamma_t = gamma0 (1 + gamma1)^t`` (eq. 8 and "scoping", section 4.3):

    x' <- x;  mu <- x
    L times:  dx' = grad f(x') + weight_decay x' - gamma_t (x - x')
              x'  <- x' - eta' dx' + sqrt(eta') eps xi,   xi ~ N(0, I)
              mu  <- (1 - alpha) mu + alpha x'
    g = x - mu;  x <- x - lr * momentum(g + weight_decay * x);  t <- t + 1

The paper (v1 and v5) does not say where weight decay enters; both of the authors' codes add it to the gradient
inside the Langevin loop, so every preset does (``weight_decay_in_langevin``), and all but the Lua code add it to
the outer gradient too (``outer_weight_decay``).

Switches reproduce the documented variants (``docs/papers/entropy_sgd.md``); ``variant`` picks a consistent
set and any switch given explicitly overrides it:

========================  ==============  ==============  ===============  ===================
switch                    ``paper_v5``    ``arxiv_v1``    ``official_lua`` ``official_python``
========================  ==============  ==============  ===============  ===================
outer_grad                x_minus_mu      v1              x_minus_mu       x_minus_mu
mu_update                 new_weighted    new_weighted    old_weighted     old_weighted
noise                     paper_v5        v1              code             code
alpha                     0.75            0.9             0.75             0.75
eta_prime_relative        False           True            False            False
outer_momentum            True            True            False            True
inner_momentum            False           False           True             True
scoping                   advance         advance         advance          frozen
momentum_init             zero            zero            zero             first_grad
weight_decay_in_langevin  True            True            True             True
inner_weight_decay        before_momentum before_momentum after_momentum   before_momentum
outer_weight_decay        True            True            False            True
========================  ==============  ==============  ===============  ===================

With ``inner_momentum`` the inner loop follows the reference code: momentum acts on the gradient (plus weight
decay, before or after the momentum as ``inner_weight_decay`` says), and the coupling ``gamma (x' - x)`` is added
after it. The Lua code applies weight decay in the inner loop only (``outer_weight_decay=False``).

The Langevin noise comes from the optimizer's own generators, keyed by ``seed``: every DDP replica with the
same seed draws the same noise, so replicas fed averaged gradients stay identical. On the CPU it is the
counter-based generator of :mod:`iclr17.functional.philox` (Philox4x32-10 and Box-Muller in float32, cast to the
parameters' dtype): draw k is a pure function of (seed, k), computed on every thread, so the values depend on
neither the thread count nor the vector unit, and the state is the number of draws so far. On a GPU there are
``NOISE_STREAMS`` CUDA generators, seeded from one generator seeded by ``seed``, each drawing a fixed slice of every
noise vector. Both states (and the seed) are part of ``state_dict``, so a resumed run continues bit-identically.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Literal, get_args

import torch
from torch import Tensor

from iclr17.functional.philox import philox_normal

Variant = Literal["paper_v5", "arxiv_v1", "official_lua", "official_python"]
Base = Literal["sgd", "adam"]
OuterGrad = Literal["x_minus_mu", "gamma_x_minus_mu", "v1"]
MuUpdate = Literal["new_weighted", "old_weighted"]
Noise = Literal["paper_v5", "code", "v1"]
Scoping = Literal["advance", "frozen"]
MomentumInit = Literal["zero", "first_grad"]
InnerWeightDecay = Literal["before_momentum", "after_momentum"]

CHOICES: dict[str, Any] = dict(  # every enumerated switch and its choices
    base=Base,
    outer_grad=OuterGrad,
    mu_update=MuUpdate,
    noise=Noise,
    scoping=Scoping,
    momentum_init=MomentumInit,
    inner_weight_decay=InnerWeightDecay,
)
FLAGS = (
    "nesterov", "eta_prime_relative", "outer_momentum", "inner_momentum", "weight_decay_in_langevin",
    "outer_weight_decay",
)  # fmt: skip
RANGES: dict[str, tuple[Callable[[Any], bool], str]] = {  # every number: (holds, what is expected)
    "lr": (lambda v: v >= 0, ">= 0"),
    "L": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "a positive integer"),
    "gamma0": (lambda v: v >= 0, ">= 0"),
    "gamma1": (lambda v: v >= 0, ">= 0"),  # the scope gamma0 (1 + gamma1)^t grows (section 4.3)
    "eta_prime": (lambda v: v > 0, "> 0"),
    "eps": (lambda v: v >= 0, ">= 0"),
    "alpha": (lambda v: 0 < v <= 1, "in (0, 1]"),
    "momentum": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "weight_decay": (lambda v: v >= 0, ">= 0"),
    "rho": (lambda v: v >= 0, ">= 0"),
    "betas": (lambda v: len(v) == 2 and all(0 <= b < 1 for b in v), "two numbers in [0, 1)"),
    "adam_eps": (lambda v: v >= 0, ">= 0"),
}

PAPER_V5: dict[str, Any] = dict(
    outer_grad="x_minus_mu",
    mu_update="new_weighted",
    noise="paper_v5",
    alpha=0.75,
    eta_prime_relative=False,
    outer_momentum=True,
    inner_momentum=False,
    scoping="advance",
    momentum_init="zero",
    weight_decay_in_langevin=True,  # the paper is silent; both of the authors' codes decay x' in the Langevin loop
    inner_weight_decay="before_momentum",
    outer_weight_decay=True,
)
HYPERPARAMETERS = (  # the constructor's arguments that every variant shares (the rest are PAPER_V5's switches)
    "lr", "L", "gamma0", "gamma1", "eta_prime", "eps", "momentum", "nesterov", "weight_decay", "rho", "base", "betas",
    "adam_eps",
)  # fmt: skip
_CODE = dict(mu_update="old_weighted", noise="code", inner_momentum=True)  # what both of the authors' codes share
VARIANTS: dict[str, dict[str, Any]] = {  # each preset is the paper's switches with its differences
    "paper_v5": PAPER_V5,
    "arxiv_v1": {**PAPER_V5, "outer_grad": "v1", "noise": "v1", "alpha": 0.9, "eta_prime_relative": True},
    "official_lua": {
        **PAPER_V5,
        **_CODE,
        "outer_momentum": False,
        "inner_weight_decay": "after_momentum",
        "outer_weight_decay": False,
    },
    "official_python": {**PAPER_V5, **_CODE, "scoping": "frozen", "momentum_init": "first_grad"},
}


NOISE_STREAMS = 8  # CUDA noise generators: stream k draws the k-th of 8 equal slices of each noise vector


def _stream_seeds(root: torch.Generator) -> list[int]:
    """``NOISE_STREAMS`` distinct seeds drawn from ``root``, below 2^32 (the CPU's Mersenne twister keeps only the
    low 32 bits of a seed, so distinct seeds give distinct streams)."""
    while True:
        seeds = torch.randint(2**32, (NOISE_STREAMS,), generator=root, device=root.device).tolist()
        if len(set(seeds)) == NOISE_STREAMS:
            return seeds


def _shared_seed() -> int:
    """``torch.initial_seed()``, taken from process 0 when a process group is up: replicas must draw the same
    Langevin noise even when the user did not seed every process alike."""
    seed = [int(torch.initial_seed()) % 2**63]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.broadcast_object_list(seed, src=0)
    return seed[0]


def _check_arguments(group: dict[str, Any], where: str) -> None:
    """Every switch of ``group`` against its choices and every number against its range."""
    for name, choices in CHOICES.items():
        if group[name] not in get_args(choices):
            allowed = ", ".join(get_args(choices))
            raise ValueError(f"EntropySGD: {name}{where} must be one of {allowed}; got {group[name]!r}")
    for name in FLAGS:
        if not isinstance(group[name], bool):
            raise ValueError(f"EntropySGD: {name}{where} must be True or False; got {group[name]!r}")
    for name, (holds, expected) in RANGES.items():
        if not holds(group[name]):
            raise ValueError(f"EntropySGD: {name}{where} must be {expected}; got {group[name]!r}")


def scope(gamma0: float, gamma1: float, t: int) -> float:
    """``gamma_t = gamma0 (1 + gamma1)^t``: the scoping schedule (section 4.3)."""
    return gamma0 * (1.0 + gamma1) ** t


def langevin_noise_std(noise: str, eta_prime: float, eps: float) -> float:
    """Standard deviation of the noise added to ``x'`` per inner step: ``paper_v5`` sqrt(eta') eps (Alg. 1);
    ``code`` eps sqrt(2 eta') (the code adds eps / sqrt(0.5 eta') xi to the gradient before the eta' step);
    ``v1`` 2 sqrt(eta'), without eps (arXiv v1)."""
    if noise == "paper_v5":
        return math.sqrt(eta_prime) * eps
    if noise == "code":
        return eps * math.sqrt(2.0 * eta_prime)
    if noise == "v1":
        return 2.0 * math.sqrt(eta_prime)
    raise ValueError(f"noise must be paper_v5, code or v1; got {noise!r}")


class EntropySGD(torch.optim.Optimizer):
    """Entropy-SGD (and Entropy-Adam with ``base="adam"``); see the module docstring for the algorithm.

    Args:
        params: parameters or parameter groups (every group is updated; each may override any argument).
        lr: outer learning rate (the paper absorbs gamma into it; Lua code: 1, then 0.1).
        L: Langevin steps per outer step (20 for the CNNs, 5 for the LSTMs).
        gamma0: initial scope gamma.
        gamma1: scoping rate: gamma_t = gamma0 (1 + gamma1)^t, t the outer step.
        eta_prime: inner (Langevin) learning rate; with ``eta_prime_relative`` it is multiplied by ``lr``.
        eps: thermal noise scale (1e-4 in all the paper's experiments).
        alpha: weight of the running average mu (0.75; see ``mu_update``).
        momentum: momentum of the outer step (and of the inner loop with ``inner_momentum``).
        nesterov: Nesterov momentum.
        weight_decay: L2 coefficient, added to the Langevin gradient (``weight_decay_in_langevin``) and to the
            outer gradient (``outer_weight_decay``).
        rho: weight of grad f(x) in the ``v1`` outer gradient (0 worked on MNIST, 0.01 for All-CNN in v1).
        base: ``sgd`` or ``adam`` (Entropy-Adam: Adam in both loops; its inner moments persist across outer
            steps, an assumption since no Entropy-Adam code was released).
        betas: Adam's betas for ``base="adam"``.
        adam_eps: Adam's epsilon for ``base="adam"``.
        variant: preset of the switches below (table in the module docstring); default the v5 paper.
        outer_grad: ``x_minus_mu`` (g = x - mu), ``gamma_x_minus_mu`` (g = gamma_t (x - mu)) or ``v1``
            (g = rho grad f(x) + gamma_t (x - mu)).
        mu_update: ``new_weighted`` (mu <- (1 - alpha) mu + alpha x', the v5 text) or ``old_weighted``
            (mu <- alpha mu + (1 - alpha) x', the code).
        noise: ``paper_v5``, ``code`` or ``v1`` (see :func:`langevin_noise_std`).
        eta_prime_relative: inner rate ``eta_prime * lr`` (v1) instead of ``eta_prime``.
        outer_momentum: apply momentum to g (False: plain x <- x - lr g, what the Lua code effectively did).
        inner_momentum: momentum in the inner loop too, buffer reset every outer step (the Python port; uncertain
            for Lua).
        scoping: ``advance`` (t counts outer steps) or ``frozen`` (gamma stays gamma0: the Python port's bug).
        momentum_init: outer momentum buffer starts at ``zero`` or at the ``first_grad`` (the Python port).
        weight_decay_in_langevin: add ``weight_decay * x'`` to the gradient of every Langevin step (True: what
            both of the authors' codes do; the paper does not say). False: weight decay on the outer step only.
        inner_weight_decay: where that Langevin weight decay enters when the inner loop has momentum
            (``inner_momentum``, or Adam's moments): ``before_momentum`` (the Python port) or ``after_momentum``
            (the Lua code); without inner momentum the two are the same.
        outer_weight_decay: add weight decay to the outer gradient (the Lua code does not).
        seed: seeds the Langevin noise generator; default ``torch.initial_seed()`` of process 0, shared with every
            DDP replica (so each experiment seed also draws its own noise).
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 1.0,
        L: int = 20,
        gamma0: float = 1e-4,
        gamma1: float = 1e-3,
        eta_prime: float = 0.1,
        eps: float = 1e-4,
        alpha: float | None = None,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        rho: float = 0.0,
        base: Base = "sgd",
        betas: tuple[float, float] = (0.9, 0.999),
        adam_eps: float = 1e-8,
        variant: Variant = "paper_v5",
        outer_grad: OuterGrad | None = None,
        mu_update: MuUpdate | None = None,
        noise: Noise | None = None,
        eta_prime_relative: bool | None = None,
        outer_momentum: bool | None = None,
        inner_momentum: bool | None = None,
        scoping: Scoping | None = None,
        momentum_init: MomentumInit | None = None,
        weight_decay_in_langevin: bool | None = None,
        inner_weight_decay: InnerWeightDecay | None = None,
        outer_weight_decay: bool | None = None,
        seed: int | None = None,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"EntropySGD: variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
        arguments = locals()  # the constructor's arguments by name: a variant's switch is one where it is None
        switches = {k: arguments[k] if arguments[k] is not None else preset for k, preset in VARIANTS[variant].items()}
        defaults = {k: arguments[k] for k in HYPERPARAMETERS} | switches
        super().__init__(params, defaults)
        for i, group in enumerate(self.param_groups):  # a group may override any argument: check them all
            _check_arguments(group, "" if len(self.param_groups) == 1 else f" (parameter group {i})")
        if len({g["L"] for g in self.param_groups}) != 1:
            raise ValueError("every parameter group must use the same L: one step calls the closure L + 1 times")
        self.L = L
        self.seed = _shared_seed() if seed is None else seed
        self._generators: dict[torch.device, list[torch.Generator]] = {}  # the CUDA noise streams per device
        self._generator_states: dict[str, Tensor] = {}
        self.cpu_noise_draws = 0  # the counter of the CPU's noise: draws made so far
        self._noise_buffer: Tensor | None = None  # the CPU's noise, filled in place each Langevin step
        self.diagnostics: dict[str, Tensor | float] = {}

    # ----------------------------------------------------------------------------------------- the step

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:  # type: ignore[override]
        """One outer step; calls ``closure`` ``L + 1`` times and returns its first loss (at ``x``)."""
        if closure is None:
            raise ValueError(
                "EntropySGD.step needs a closure that draws a fresh minibatch, computes the loss, calls backward "
                "and returns the loss: it is called L + 1 times per step"
            )
        loss = self._evaluate(closure)
        groups = [self._active(group) for group in self.param_groups]
        for group, params in zip(self.param_groups, groups, strict=True):
            self._start_outer_step(group, params)
        inner_losses = []
        for _ in range(self.L):
            inner_losses.append(self._evaluate(closure))
            for group, params in zip(self.param_groups, groups, strict=True):
                self._langevin_step(group, params)
        gaps = [
            self._outer_step(group, params).to(loss.device)
            for group, params in zip(self.param_groups, groups, strict=True)
        ]
        self.diagnostics = {  # tensors stay on the device: reading them is the caller's choice (and sync)
            "gamma": self.param_groups[0]["gamma"],
            "x_minus_mu_norm": torch.stack(gaps).sum().sqrt(),
            "inner_loss": torch.stack(inner_losses).float().mean(),
        }
        return loss

    def _evaluate(self, closure: Callable[[], Tensor]) -> Tensor:
        self.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = closure()
        if not isinstance(loss, Tensor):
            raise TypeError(f"EntropySGD: the closure must return the loss as a tensor; got {type(loss).__name__}")
        return loss.detach()

    @staticmethod
    def _active(group: dict[str, Any]) -> list[Tensor]:
        """Parameters that received a gradient at ``x`` (the others are left alone, as other optimizers do)."""
        return [p for p in group["params"] if p.grad is not None]

    def _start_outer_step(self, group: dict[str, Any], params: list[Tensor]) -> None:
        """Save ``x`` and its gradient (v1, first momentum), set ``mu <- x``, fix gamma_t and the noise."""
        for p in params:
            state = self.state[p]
            if "step" not in state:
                state["step"] = 0
                state["mu"] = torch.empty_like(p)
                state["x"] = torch.empty_like(p)
            state["x"].copy_(p)
            state["mu"].copy_(p)
            state["grad_at_x"] = p.grad.clone() if group["outer_grad"] == "v1" else None
            if group["inner_momentum"]:
                state["inner_momentum_buffer"] = torch.zeros_like(p)
            if group["momentum_init"] == "first_grad" and "momentum_buffer" not in state:
                state["momentum_buffer"] = p.grad.clone()  # the port's buffer starts at the first grad f(x)
        t = self.state[params[0]]["step"] if params else 0
        group["gamma"] = scope(group["gamma0"], group["gamma1"], t if group["scoping"] == "advance" else 0)
        group["eta_prime_effective"] = group["eta_prime"] * (group["lr"] if group["eta_prime_relative"] else 1.0)

    def _langevin_step(self, group: dict[str, Any], params: list[Tensor]) -> None:
        """One SGLD step on ``x'`` (the parameters) and the running-average update of ``mu``."""
        if not params:
            return
        states = [self.state[p] for p in params]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        eta, gamma = group["eta_prime_effective"], group["gamma"]
        wd = group["weight_decay"] if group["weight_decay_in_langevin"] else 0.0
        xs = [s["x"] for s in states]
        if group["base"] == "sgd" and not group["inner_momentum"]:
            # x' <- x' - eta (grad + wd x' + gamma (x' - x)) = (1 - eta (wd + gamma)) x' - eta grad + eta gamma x
            torch._foreach_mul_(params, 1.0 - eta * (wd + gamma))
            torch._foreach_add_(params, grads, alpha=-eta)
            torch._foreach_add_(params, xs, alpha=eta * gamma)
        elif group["base"] == "adam":  # our assumption (no Entropy-Adam code): Adam on the coupled gradient
            dx = torch._foreach_add(grads, torch._foreach_sub(params, xs), alpha=gamma)
            if wd and group["inner_weight_decay"] == "before_momentum":
                torch._foreach_add_(dx, params, alpha=wd)
            d = self._adam_direction(group, states, dx, prefix="inner_")
            if wd and group["inner_weight_decay"] == "after_momentum":
                torch._foreach_add_(d, params, alpha=wd)
            torch._foreach_add_(params, d, alpha=-eta)
        else:
            # the reference code: momentum on the gradient (with weight decay before it in the Python port, after it
            # in the Lua code), then the coupling gamma (x' - x) added outside the momentum
            d = (
                torch._foreach_add(grads, params, alpha=wd)
                if wd and group["inner_weight_decay"] == "before_momentum"
                else grads
            )
            d = self._momentum(group, [s["inner_momentum_buffer"] for s in states], list(d))
            d = torch._foreach_add(d, torch._foreach_sub(params, xs), alpha=gamma)
            if wd and group["inner_weight_decay"] == "after_momentum":
                torch._foreach_add_(d, params, alpha=wd)
            torch._foreach_add_(params, d, alpha=-eta)
        std = langevin_noise_std(group["noise"], eta, group["eps"])
        if std > 0:  # the code adds its noise to the gradient just before the eta' step: the same thing
            torch._foreach_add_(params, self._gaussians(params), alpha=std)
        weight = group["alpha"] if group["mu_update"] == "new_weighted" else 1.0 - group["alpha"]
        torch._foreach_lerp_([s["mu"] for s in states], params, weight)

    def _outer_step(self, group: dict[str, Any], params: list[Tensor]) -> Tensor:
        """Restore ``x``, form the local-entropy gradient g and take the base optimizer's step; returns
        ``||x - mu||^2`` for this group."""
        if not params:
            return torch.zeros((), dtype=torch.float64)
        states = [self.state[p] for p in params]
        for p, s in zip(params, states, strict=True):
            p.copy_(s["x"])
        g = torch._foreach_sub(params, [s["mu"] for s in states])
        gap_sq = torch.stack(torch._foreach_norm(g)).double().pow(2).sum()
        if group["outer_grad"] == "gamma_x_minus_mu":
            torch._foreach_mul_(g, group["gamma"])
        elif group["outer_grad"] == "v1":
            torch._foreach_mul_(g, group["gamma"])
            torch._foreach_add_(g, [s["grad_at_x"] for s in states], alpha=group["rho"])
        if group["weight_decay"] and group["outer_weight_decay"]:
            torch._foreach_add_(g, params, alpha=group["weight_decay"])
        if group["base"] == "adam":
            g = self._adam_direction(group, states, g, prefix="")
        elif group["outer_momentum"] and group["momentum"] > 0:
            for p, s in zip(params, states, strict=True):
                s.setdefault("momentum_buffer", torch.zeros_like(p))
            g = self._momentum(group, [s["momentum_buffer"] for s in states], g)
        torch._foreach_add_(params, g, alpha=-group["lr"])
        for s in states:
            s["step"] += 1
            s["grad_at_x"] = None
        return gap_sq

    @staticmethod
    def _momentum(group: dict[str, Any], buffers: list[Tensor], d: list[Tensor]) -> list[Tensor]:
        """``buf <- m buf + d``; returns ``d + m buf`` (Nesterov) or ``buf``."""
        m = group["momentum"]
        if m == 0:
            return d
        torch._foreach_mul_(buffers, m)
        torch._foreach_add_(buffers, d)
        return torch._foreach_add(d, buffers, alpha=m) if group["nesterov"] else [b.clone() for b in buffers]

    @staticmethod
    def _adam_direction(group: dict[str, Any], states: list[dict], d: list[Tensor], prefix: str) -> list[Tensor]:
        """Adam's bias-corrected direction for gradient ``d`` (moments kept under ``<prefix>exp_avg*``)."""
        beta1, beta2 = group["betas"]
        if f"{prefix}exp_avg" not in states[0]:
            for s, di in zip(states, d, strict=True):
                s[f"{prefix}exp_avg"], s[f"{prefix}exp_avg_sq"], s[f"{prefix}adam_step"] = (
                    torch.zeros_like(di),
                    torch.zeros_like(di),
                    0,
                )
        for s in states:
            s[f"{prefix}adam_step"] += 1
        k = states[0][f"{prefix}adam_step"]
        m, v = [s[f"{prefix}exp_avg"] for s in states], [s[f"{prefix}exp_avg_sq"] for s in states]
        torch._foreach_lerp_(m, d, 1 - beta1)
        torch._foreach_mul_(v, beta2)
        torch._foreach_addcmul_(v, d, d, value=1 - beta2)
        denominator = torch._foreach_sqrt(torch._foreach_div(v, 1 - beta2**k))
        torch._foreach_add_(denominator, group["adam_eps"])
        return torch._foreach_div(torch._foreach_div(m, 1 - beta1**k), denominator)

    # ------------------------------------------------------------------------------------ the noise

    def _streams(self, device: torch.device) -> list[torch.Generator]:
        """The ``NOISE_STREAMS`` generators on ``device``, seeded from one generator seeded by ``seed`` (or restored
        from a checkpoint, keyed by device type: one saved on rank 0 ("cuda") restores on cuda:k for every k)."""
        if device not in self._generators:
            saved = self._generator_states.pop(device.type, None)
            root = torch.Generator(device=device).manual_seed(self.seed)
            if saved is not None and saved.dim() == 1:  # a checkpoint from before the streams: its one generator
                root.set_state(saved)
            streams = [torch.Generator(device=device).manual_seed(seed) for seed in _stream_seeds(root)]
            if saved is not None and saved.dim() == 2:
                if len(saved) != NOISE_STREAMS:
                    raise ValueError(
                        f"EntropySGD.load_state_dict: noise_generators[{device.type!r}] holds {len(saved)} generator "
                        f"states; expected {NOISE_STREAMS}"
                    )
                for stream, state in zip(streams, saved, strict=True):
                    stream.set_state(state.clone())  # a row of the stack is a view: set_state wants its own storage
            self._generators[device] = streams
        return self._generators[device]

    def _gaussians(self, params: list[Tensor]) -> list[Tensor]:
        """Standard normal draws shaped like ``params``, one flat vector: on the CPU the next draw of the Philox
        generator keyed by ``seed``; on a GPU cut into ``NOISE_STREAMS`` equal slices, slice k drawn by stream k.
        The values depend on the seed only (not on the thread count or the device index), so every replica with the
        same seed draws the same."""
        device = params[0].device
        sizes = [p.numel() for p in params]
        if device.type == "cpu":
            if self._noise_buffer is None or self._noise_buffer.numel() != sum(sizes):
                self._noise_buffer = torch.empty(sum(sizes), dtype=torch.float32)  # kept: fresh costs more
            philox_normal(sum(sizes), self.seed % 2**64, self.cpu_noise_draws, out=self._noise_buffer)
            flat = self._noise_buffer.to(params[0].dtype)
            self.cpu_noise_draws += 1
        else:
            flat = torch.empty(sum(sizes), device=device, dtype=params[0].dtype)
            bounds = [len(flat) * k // NOISE_STREAMS for k in range(NOISE_STREAMS + 1)]
            for (a, b), stream in zip(itertools.pairwise(bounds), self._streams(device), strict=True):
                flat[a:b].normal_(generator=stream)
        return [chunk.view(p.shape) for chunk, p in zip(torch.split_with_sizes(flat, sizes), params, strict=True)]

    # ------------------------------------------------------------------------------ saving and loading

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        streams = {d.type: torch.stack([g.get_state() for g in gs]) for d, gs in self._generators.items()}
        state["noise_generators"] = {**self._generator_states, **streams}  # one row per stream
        state["cpu_noise"] = {"seed": self.seed, "draws": self.cpu_noise_draws}  # the Philox key and counter
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        saved = state_dict.pop("noise_generators", {})
        cpu_noise = state_dict.pop("cpu_noise", None)
        if "cpu" in {k.split(":")[0] for k in saved} and cpu_noise is None:
            warnings.warn(
                "EntropySGD.load_state_dict: this checkpoint's CPU noise came from torch generators, which the "
                "counter-based CPU noise replaced; the resumed run draws new noise from draw 0 of its seed (not the "
                "old stream)",
                stacklevel=2,
            )
        if cpu_noise is not None:
            self.seed, self.cpu_noise_draws = int(cpu_noise["seed"]), int(cpu_noise["draws"])
        else:
            self.cpu_noise_draws = 0
        self._generator_states = {  # "cuda:0" -> "cuda"
            k.split(":")[0]: v.clone() for k, v in saved.items() if not k.startswith("cpu")
        }
        self._generators = {}
        super().load_state_dict(state_dict)
