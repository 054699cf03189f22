"""Tests for lib.model.losses: naive loop references, pytorch-metric-learning (PML 2.9.0) as an
independent reference, gradients, degenerate batches, bounded memory and the spec language."""
from __future__ import annotations

import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lib.model.losses import (
    LOSS_NAMES,
    NAMED_SPECS,
    ArcFaceLoss,
    CrossEntropyLoss,
    SupConLoss,
    TripletLoss,
    WeightedSumLoss,
    build_loss,
    format_loss_spec,
    parse_loss_spec,
)

pml_losses = pytest.importorskip("pytorch_metric_learning.losses")
pml_miners = pytest.importorskip("pytorch_metric_learning.miners")
pml_distances = pytest.importorskip("pytorch_metric_learning.distances")

MININGS = ("all", "semihard", "hard")
DISTANCES = ("euclidean", "cosine")
SEEDS = (0, 1, 2)


def make_batch(seed, b=12, c=4, d=8, dtype=torch.float64, scale=0.4, balanced=None):
    """Random embeddings and labels; even seeds get balanced classes, odd seeds random ones."""
    g = torch.Generator().manual_seed(seed)
    x = (scale * torch.randn(b, d, generator=g)).to(dtype)
    if balanced if balanced is not None else seed % 2 == 0:
        y = (torch.arange(b) % c)[torch.randperm(b, generator=g)]
    else:
        y = torch.randint(0, c, (b,), generator=g)
    return x, y


# ----------------------------------------------------------------------------- naive references


def naive_dist(u, v, distance):
    if distance == "euclidean":
        return torch.sqrt(sum((u[k] - v[k]) ** 2 for k in range(len(u))))
    dot = sum(u[k] * v[k] for k in range(len(u)))
    nu = torch.sqrt(sum(u[k] ** 2 for k in range(len(u))))
    nv = torch.sqrt(sum(v[k] ** 2 for k in range(len(v))))
    return 1 - dot / (nu * nv)


def naive_triplet(x, y, margin, mining, distance):
    """Loop over anchors/triplets; returns (loss, number of selected triplets with loss > 0)."""
    b = len(y)
    labels = y.tolist()
    d = [[naive_dist(x[i], x[j], distance) if i != j else None for j in range(b)] for i in range(b)]
    triplets = []
    for a in range(b):
        pos = [p for p in range(b) if p != a and labels[p] == labels[a]]
        neg = [n for n in range(b) if labels[n] != labels[a]]
        if mining == "hard":
            if pos and neg:
                p = max(pos, key=lambda j: d[a][j].item())
                n = min(neg, key=lambda j: d[a][j].item())
                triplets.append((a, p, n))
            continue
        for p in pos:
            for n in neg:
                dap, dan = d[a][p].item(), d[a][n].item()
                if mining == "semihard" and not (dap < dan < dap + margin):
                    continue
                triplets.append((a, p, n))
    losses = [torch.relu(d[a][p] - d[a][n] + margin) for a, p, n in triplets]
    nonzero = [l for l in losses if l.item() > 0]
    if not nonzero:
        return x.sum() * 0, 0
    return sum(nonzero) / len(nonzero), len(nonzero)


def naive_supcon(x, y, temperature):
    b = len(y)
    labels = y.tolist()
    z = [x[i] / torch.sqrt((x[i] ** 2).sum()) for i in range(b)]
    s = [[(z[i] * z[j]).sum() / temperature for j in range(b)] for i in range(b)]
    per_anchor = []
    for i in range(b):
        pos = [p for p in range(b) if p != i and labels[p] == labels[i]]
        if not pos:
            continue
        denom = sum(torch.exp(s[i][a]) for a in range(b) if a != i)
        per_anchor.append(-sum(torch.log(torch.exp(s[i][p]) / denom) for p in pos) / len(pos))
    if not per_anchor:
        return x.sum() * 0
    return sum(per_anchor) / len(per_anchor)


def naive_arcface(x, y, centres, margin, scale):
    """Angle-based textbook form (acos, add margin, cos), float64."""
    total = 0
    for i in range(len(y)):
        logits = []
        for j in range(centres.shape[0]):
            cos = (x[i] * centres[j]).sum() / (x[i].norm() * centres[j].norm())
            if j == y[i].item():
                theta = torch.acos(cos)
                # past pi - m the textbook ArcFace switches to the monotone cos(theta) - m sin(m)
                cos = torch.cos(theta + margin) if theta <= math.pi - margin else cos - margin * math.sin(margin)
            logits.append(scale * cos)
        total = total - torch.log(torch.exp(logits[y[i].item()]) / sum(torch.exp(l) for l in logits))
    return total / len(y)


def naive_ce(logits, y):
    total = 0
    for i in range(len(y)):
        row = logits[i]
        total = total - torch.log(torch.exp(row[y[i].item()]) / sum(torch.exp(v) for v in row))
    return total / len(y)


def value_and_grad(fn, x, *more):
    """Evaluate fn on fresh leaf copies; return (value, grad wrt x, grads wrt more)."""
    leaves = [t.detach().clone().requires_grad_(True) for t in (x, *more)]
    out = fn(*leaves)
    out.backward()
    grads = [t.grad if t.grad is not None else torch.zeros_like(t) for t in leaves]
    return out.detach(), grads


# ----------------------------------------------------------------------------- cross-entropy


@pytest.mark.parametrize("seed", SEEDS)
def test_cross_entropy_matches_naive_and_uses_raw_logits(seed):
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(12, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 5, (12,), generator=g)
    ours, (g_ours,) = value_and_grad(lambda z: CrossEntropyLoss()(z, y), logits)
    ref, (g_ref,) = value_and_grad(lambda z: naive_ce(z, y), logits)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-12)
    # The original study's bug (softmax before CE) gives a different value.
    assert abs(CrossEntropyLoss()(logits.softmax(1), y) - ours) > 1e-3


def test_cross_entropy_large_logits_finite():
    logits = torch.tensor([[1e4, -1e4, 0.0], [0.0, 1e4, -1e4]], requires_grad=True)
    loss = CrossEntropyLoss()(logits, torch.tensor([1, 0]))
    loss.backward()
    assert torch.isfinite(loss) and loss > 1e3 and torch.isfinite(logits.grad).all()


# ----------------------------------------------------------------------------- triplet


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("mining", MININGS)
def test_triplet_matches_naive(seed, mining, distance):
    margin = 0.5 if distance == "euclidean" else 0.3
    x, y = make_batch(seed)
    if seed == 2:
        y[0] = 99  # a singleton class: an anchor without positives, a negative for all others
    loss = TripletLoss(margin, mining, distance)
    ours, (g_ours,) = value_and_grad(lambda e: loss(e, y), x)
    leaf = x.clone().requires_grad_(True)
    ref, n_active = naive_triplet(leaf, y, margin, mining, distance)
    ref.backward()
    assert n_active > 0, "test batch selects no triplet: the comparison would be vacuous"
    torch.testing.assert_close(ours, ref.detach(), rtol=0, atol=1e-10)
    torch.testing.assert_close(g_ours, leaf.grad, rtol=0, atol=1e-10)


def pml_distance(distance):
    if distance == "euclidean":
        return pml_distances.LpDistance(normalize_embeddings=False)
    return pml_distances.CosineSimilarity()


@pytest.mark.parametrize("seed", SEEDS + (3, 4))
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("mining", MININGS)
def test_triplet_matches_pml(seed, mining, distance):
    """PML's TripletMarginLoss (AvgNonZeroReducer) on all triplets or on a miner's triplets.

    PML semihard (TripletMarginMiner) keeps 0 < d_an - d_ap <= margin: its upper boundary is
    inclusive where ours is strict, but a triplet on that boundary has loss exactly 0 and the
    AvgNonZero reduction drops it, so both give the same loss. For CosineSimilarity PML works
    with similarities and margin s_an - s_ap, which equals d_ap - d_an for d = 1 - s.
    """
    margin = 0.5 if distance == "euclidean" else 0.3
    x, y = make_batch(seed, b=16, dtype=torch.float32, scale=1.0)
    dist = pml_distance(distance)
    ref_loss = pml_losses.TripletMarginLoss(margin=margin, distance=dist)
    if mining == "all":
        miner = None
    elif mining == "semihard":
        miner = pml_miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard", distance=dist)
    else:
        miner = pml_miners.BatchHardMiner(distance=dist)

    def ref_fn(e):
        return ref_loss(e, y) if miner is None else ref_loss(e, y, miner(e, y))

    ours, (g_ours,) = value_and_grad(lambda e: TripletLoss(margin, mining, distance)(e, y), x)
    ref, (g_ref,) = value_and_grad(ref_fn, x)
    assert ref > 0
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-5)


def unchunked_triplet(x, y, margin, mining, distance):
    """Straightforward B^3 vectorised version (autograd through every triplet)."""
    if distance == "euclidean":
        d = torch.cdist(x, x)
    else:
        z = F.normalize(x, dim=1)
        d = 1 - z @ z.T
    same = y[:, None] == y[None, :]
    pos = same & ~torch.eye(len(y), dtype=torch.bool)
    valid = pos[:, :, None] & ~same[:, None, :]
    if mining == "semihard":
        valid &= d[:, None, :] > d[:, :, None]
    losses = torch.relu(d[:, :, None] - d[:, None, :] + margin)
    sel = losses[valid & (losses > 0)]
    return sel.mean() if sel.numel() else x.sum() * 0


@pytest.mark.parametrize("mining", ("all", "semihard"))
@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("classes", (2, 6, 40))
def test_triplet_counting_matches_explicit_enumeration(mining, distance, classes):
    """The O(B^2 log B) counting form equals autograd through every one of the B^3 triplets."""
    x, y = make_batch(7, b=96, c=classes, d=16, scale=0.3, balanced=False)
    margin = 0.4
    ref, (g_ref,) = value_and_grad(lambda e: unchunked_triplet(e, y, margin, mining, distance), x)
    ours, (g_ours,) = value_and_grad(lambda e: TripletLoss(margin, mining, distance)(e, y), x)
    assert ref > 0
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("mining", MININGS)
def test_triplet_exact_ties(mining):
    """Distances that tie exactly (dyadic 1-D points, so every step is exact in float):
    d_an == d_ap is active for "all" (loss = margin) but not semihard (strict d_ap < d_an);
    d_an == d_ap + margin has loss 0 and never counts."""
    x = torch.tensor([[0.0], [1.0], [1.0], [1.5], [3.0], [4.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    leaf = x.clone().requires_grad_(True)
    ref, _ = naive_triplet(leaf, y, 0.5, mining, "euclidean")
    ours = TripletLoss(0.5, mining)(x, y)
    torch.testing.assert_close(ours, ref.detach(), rtol=0, atol=1e-12)
    dist = pml_distances.LpDistance(normalize_embeddings=False)
    miner = {
        "all": None,
        "semihard": pml_miners.TripletMarginMiner(margin=0.5, type_of_triplets="semihard", distance=dist),
        "hard": pml_miners.BatchHardMiner(distance=dist),
    }[mining]
    pml = pml_losses.TripletMarginLoss(margin=0.5, distance=dist)
    pml_value = pml(x, y) if miner is None else pml(x, y, miner(x, y))
    torch.testing.assert_close(ours, pml_value, rtol=0, atol=1e-12)


_BIG_BATCH_SCRIPT = textwrap.dedent(
    """
    import resource, sys, torch
    from lib.model.losses import TripletLoss
    torch.manual_seed(0)
    x = torch.randn(1024, 128, requires_grad=True)
    y = torch.arange(1024) % 32
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loss = TripletLoss(0.3, "all", "euclidean")(x, y)
    loss.backward()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ok = bool(torch.isfinite(x.grad).all()) and x.grad.abs().sum().item() > 0
    per_mib = 2**20 if sys.platform == "darwin" else 2**10  # ru_maxrss: bytes on macOS, KiB on Linux
    print(repr(loss.item()), (after - before) // per_mib, ok)
    """
)


def test_triplet_all_big_batch_bounded_memory():
    """B=1024 "all" mining in a child process (so its peak RSS is its own): the full B^3
    float tensor would be 4 GiB; ours must stay far below that."""
    proc = subprocess.run(
        [sys.executable, "-c", _BIG_BATCH_SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[1],  # the checkout whose lib/ is under test
    )
    assert proc.returncode == 0, proc.stderr
    value_text, rss_mib, ok = proc.stdout.split()
    assert ok == "True"
    assert int(rss_mib) < 512, f"peak RSS grew by {rss_mib} MiB"
    # Independent reference: a per-anchor loop in float64 on the same data.
    torch.manual_seed(0)
    x = torch.randn(1024, 128).double()
    y = torch.arange(1024) % 32
    d = torch.cdist(x, x)
    total, count = 0.0, 0
    for a in range(len(y)):
        pos = (y == y[a]) & (torch.arange(len(y)) != a)
        neg = y != y[a]
        v = torch.relu(d[a, pos][:, None] - d[a, neg][None, :] + 0.3)
        total += v.sum().item()
        count += int((v > 0).sum())
    assert math.isclose(float(value_text), total / count, rel_tol=1e-5)


@pytest.mark.parametrize("mining", MININGS)
def test_triplet_float32_accurate_with_large_offset(mining):
    """Un-normalised head outputs can share a large offset; the Gram-matrix distance formula
    must not lose the (small) differences to cancellation in float32."""
    x, y = make_batch(5, b=16, c=4, d=8, scale=1.0)
    ref = TripletLoss(0.5, mining)(x, y)  # float64
    ours = TripletLoss(0.5, mining)((x + 300.0).float(), y)
    torch.testing.assert_close(ours.double(), ref, rtol=0, atol=1e-4)


@pytest.mark.parametrize("mining", MININGS)
def test_triplet_every_class_is_a_negative(mining):
    """Only a sample of the LAST class (C-1) violates the margin: the loss must see it
    (the original study built negatives from classes 0..C-2 only)."""
    c = 4
    x = torch.tensor(
        [
            [0.0, 0.0],  # anchor, class 0
            [1.0, 0.0],  # positive, class 0, d_ap = 1
            [0.0, 10.0],  # class 1, far
            [0.0, -10.0],  # class 2, far
            [0.0, 1.2],  # class C-1 = 3, d_an = 1.2 < d_ap + margin
        ],
        dtype=torch.float64,
    )
    y = torch.tensor([0, 0, 1, 2, c - 1])
    loss = TripletLoss(margin=0.5, mining=mining)(x, y)
    assert loss > 0
    # Violating triplets: (0,1,4) with 1 - 1.2 + 0.5 = 0.3, and (1,0,4) with
    # d(1,0) = 1, d(1,4) = sqrt(1 + 1.44): 1 - sqrt(2.44) + 0.5 < 0, so only one is active.
    torch.testing.assert_close(loss, torch.tensor(0.3, dtype=torch.float64))


# ----------------------------------------------------------------------------- ArcFace


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("margin", (0.0, 0.5, 1.2))
def test_arcface_matches_naive(seed, margin):
    x, y = make_batch(seed, b=12, c=4, d=8)
    # A different stream from make_batch's: with the same seed some embeddings would be exactly
    # parallel to their centre, where cos(theta + m) has a cone point (no unique gradient).
    torch.manual_seed(1000 + seed)
    loss = ArcFaceLoss(4, 8, margin=margin, scale=8.0)
    centres = loss.centres.detach().double()
    ours, (g_x, g_w) = value_and_grad(
        lambda e, w: torch.func.functional_call(loss, {"centres": w}, (e, y)), x, centres.float()
    )
    ref, (r_x, r_w) = value_and_grad(lambda e, w: naive_arcface(e, y, w, margin, 8.0), x, centres)
    assert ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(g_x, r_x, rtol=0, atol=1e-5)
    torch.testing.assert_close(g_w.double(), r_w, rtol=0, atol=1e-5)


@pytest.mark.parametrize("seed", SEEDS)
def test_arcface_matches_pml(seed):
    """PML's ArcFaceLoss takes its margin in DEGREES and stores W as (embedding_size x classes)."""
    x, y = make_batch(seed, b=16, c=5, d=16, dtype=torch.float32, scale=1.0)
    torch.manual_seed(100 + seed)
    ours = ArcFaceLoss(5, 16, margin=0.5, scale=8.0)
    ref = pml_losses.ArcFaceLoss(5, 16, margin=math.degrees(0.5), scale=8.0)
    with torch.no_grad():
        ref.W.copy_(ours.centres.T)
    v_ours, (g_ours,) = value_and_grad(lambda e: ours(e, y), x)
    v_ref, (g_ref,) = value_and_grad(lambda e: ref(e, y), x)
    torch.testing.assert_close(v_ours, v_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-5)
    # value_and_grad's backward also filled the centre gradients (once each).
    torch.testing.assert_close(ours.centres.grad, ref.W.grad.T, rtol=0, atol=1e-5)


def _at_angles(centres: torch.Tensor, labels: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Embeddings at the given angles from their own class centre (in a plane through it)."""
    g = torch.Generator().manual_seed(7)
    c = F.normalize(centres[labels].double(), dim=1)
    u = torch.randn(c.shape, generator=g, dtype=torch.float64)
    u = F.normalize(u - (u * c).sum(1, keepdim=True) * c, dim=1)  # orthogonal to the centre
    theta = torch.deg2rad(degrees.double())[:, None]
    return (torch.cos(theta) * c + torch.sin(theta) * u).float()


def test_arcface_matches_pml_at_wide_angles():
    """150-179 degrees from the own centre: past pi - m both use cos(theta) - m sin(m)."""
    torch.manual_seed(11)
    ours = ArcFaceLoss(4, 8, margin=0.5, scale=8.0)
    ref = pml_losses.ArcFaceLoss(4, 8, margin=math.degrees(0.5), scale=8.0)
    with torch.no_grad():
        ref.W.copy_(ours.centres.T)
    degrees = torch.arange(150.0, 180.0)
    y = torch.arange(len(degrees)) % 4
    x = _at_angles(ours.centres.detach(), y, degrees)
    v_ours, (g_ours,) = value_and_grad(lambda e: ours(e, y), x)
    v_ref, (g_ref,) = value_and_grad(lambda e: ref(e, y), x)
    torch.testing.assert_close(v_ours, v_ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("degrees", (100.0, 160.0, 175.0))
def test_arcface_gradient_step_moves_an_embedding_towards_its_centre(degrees):
    """A plain gradient step must reduce the angle to the own centre, also past pi - m."""
    loss = ArcFaceLoss(3, 8, margin=0.5, scale=8.0)
    with torch.no_grad():  # orthogonal centres: the other logits stay 0 along the path
        loss.centres.copy_(torch.eye(3, 8))
    centres = loss.centres.detach()
    y = torch.tensor([0])
    theta = math.radians(degrees)  # in the plane of e0 (own centre) and e3 (orthogonal to all centres)
    x = (math.cos(theta) * torch.eye(8)[0] + math.sin(theta) * torch.eye(8)[3])[None].requires_grad_(True)
    loss(x, y).backward()
    stepped = x.detach() - 0.005 * x.grad  # small: a big step could jump across 180 degrees
    angle = lambda e: math.degrees(math.acos(float(F.cosine_similarity(e, centres[:1]))))
    assert angle(stepped) < angle(x.detach()) - 1e-3


def test_arcface_logits_are_scaled_cosines_without_margin():
    torch.manual_seed(0)
    loss = ArcFaceLoss(3, 6, margin=0.5, scale=4.0)
    x = torch.randn(5, 6)
    expected = 4.0 * F.normalize(x, dim=1) @ F.normalize(loss.centres.detach(), dim=1).T
    torch.testing.assert_close(loss.logits(x), expected)
    y = torch.tensor([0, 1, 2, 0, 1])
    # With margin 0 the loss is plain CE on these logits.
    no_margin = ArcFaceLoss(3, 6, margin=0.0, scale=4.0)
    no_margin.load_state_dict(loss.state_dict())
    torch.testing.assert_close(no_margin(x, y), F.cross_entropy(loss.logits(x), y))
    assert loss(x, y) > no_margin(x, y)  # the margin makes the task harder


def test_losses_run_in_full_precision_under_autocast():
    """CPU autocast would run the Gram matmuls in bfloat16 (errors ~1e-2); the losses turn it off."""
    torch.manual_seed(0)
    arc = ArcFaceLoss(3, 16)
    x, y = torch.randn(8, 16), torch.randint(0, 3, (8,))
    others = [TripletLoss(0.3, "all", "euclidean"), TripletLoss(0.3, "hard", "cosine"), SupConLoss(0.1)]
    plain = [arc(x, y), arc.logits(x)] + [m(x, y) for m in others]
    with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
        auto = [arc(x, y), arc.logits(x)] + [m(x, y) for m in others]
    for p, a in zip(plain, auto):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, p, rtol=0, atol=1e-6)


def test_arcface_embedding_on_its_centre_is_finite():
    torch.manual_seed(0)
    loss = ArcFaceLoss(3, 8, margin=0.5)
    e = (2.0 * loss.centres.detach()).requires_grad_(True)  # theta_y = 0 for every sample
    value = loss(e, torch.arange(3))
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(e.grad).all() and torch.isfinite(loss.centres.grad).all()
    # cos(0 + m) = cos(m) up to the sin^2 floor.
    expected = F.cross_entropy(loss.logits(e).detach().fill_diagonal_(8.0 * math.cos(0.5)), torch.arange(3))
    torch.testing.assert_close(value.detach(), expected, rtol=0, atol=1e-2)


def test_arcface_centres_init_follows_global_seed():
    torch.manual_seed(3)
    a = ArcFaceLoss(4, 8)
    torch.manual_seed(3)
    b = ArcFaceLoss(4, 8)
    assert torch.equal(a.centres, b.centres) and a.centres.shape == (4, 8)
    assert a.centres.std() > 0


# ----------------------------------------------------------------------------- SupCon


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("temperature", (0.1, 0.5))
def test_supcon_matches_naive(seed, temperature):
    x, y = make_batch(seed, b=12, c=4, d=8)
    if seed == 2:
        y[0] = 99  # a singleton class: an anchor without positives (left out of the mean)
    ours, (g_ours,) = value_and_grad(lambda e: SupConLoss(temperature)(e, y), x)
    ref, (g_ref,) = value_and_grad(lambda e: naive_supcon(e, y, temperature), x)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-10)


@pytest.mark.parametrize("seed", SEEDS + (3, 4))
def test_supcon_matches_pml(seed):
    x, y = make_batch(seed, b=16, c=5, d=16, dtype=torch.float32, scale=1.0)
    ours, (g_ours,) = value_and_grad(lambda e: SupConLoss(0.1)(e, y), x)
    ref, (g_ref,) = value_and_grad(lambda e: pml_losses.SupConLoss(temperature=0.1)(e, y), x)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-5)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-5)


def test_supcon_differs_from_pml_only_on_exactly_zero_anchor_losses():
    """PML averages with AvgNonZeroReducer; we average over every anchor that has a positive
    (Khosla et al.). They differ only when an anchor's loss is exactly 0: here anchors 0 and 1
    coincide and all negatives' exp(s/T) underflow next to the positive's."""
    x = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [-1.0, 0.1, 0], [-1.0, 0, 0.2], [-1.0, -0.1, 0]])
    y = torch.tensor([0, 0, 1, 1, 1])
    t = 0.01
    ours = SupConLoss(t)(x, y)
    ref = pml_losses.SupConLoss(temperature=t)(x, y)
    per_anchor_nonzero = ref * 3  # PML: mean over the 3 non-zero anchors (2, 3, 4)
    torch.testing.assert_close(ours, per_anchor_nonzero / 5)  # ours: mean over all 5 anchors


# ----------------------------------------------------------------------------- gradients


def all_losses():
    """(name, factory) for every loss module, each called as fn(embeddings, logits, labels)."""
    out = [("ce", lambda: (lambda e, z, y, m=CrossEntropyLoss(): m(z, y)))]
    for mining in MININGS:
        for distance in DISTANCES:
            out.append(
                (
                    f"triplet-{mining}-{distance}",
                    lambda mining=mining, distance=distance: (
                        lambda e, z, y, m=TripletLoss(0.3, mining, distance): m(e, y)
                    ),
                )
            )
    out.append(("arcface", lambda: ArcFaceLoss(3, 6)))
    out.append(("supcon", lambda: SupConLoss(0.1)))
    out.append(
        (
            "sum-all",
            lambda: build_loss({"ce": 0.2, "triplet": 0.3, "arcface": 0.4, "supcon": 0.1}, 3, 6),
        )
    )
    return out


def call_loss(module, e, z, y):
    if isinstance(module, WeightedSumLoss):
        return module(e, z, y)[0]
    if isinstance(module, torch.nn.Module):
        return module(e, y)
    return module(e, z, y)


def test_gradients_reach_embeddings_and_centres():
    torch.manual_seed(0)
    e = torch.randn(12, 6, requires_grad=True)
    z = torch.randn(12, 3, requires_grad=True)
    y = torch.arange(12) % 3
    for name, factory in all_losses():
        module = factory()
        e.grad = z.grad = None
        call_loss(module, e, z, y).backward()
        grad = z.grad if name == "ce" else e.grad
        assert grad is not None and grad.abs().sum() > 0, name
        if isinstance(module, torch.nn.Module):
            for pname, p in module.named_parameters():
                assert p.grad is not None and p.grad.abs().sum() > 0, (name, pname)
    summed = build_loss(parse_loss_spec("combined"), 3, 6)
    assert [n for n, _ in summed.named_parameters()] == ["parts.arcface.centres"]
    e.grad = z.grad = None
    summed(e, z, y)[0].backward()
    assert e.grad.abs().sum() > 0 and z.grad.abs().sum() > 0


def _degenerate_batches():
    torch.manual_seed(1)
    base = torch.randn(6, 6)
    twins = base.clone()
    twins[1] = twins[0]
    return {
        "one-class": (base, torch.zeros(6, dtype=torch.long)),
        "one-sample": (base[:1], torch.tensor([2])),
        "no-valid-triplet": (base[:3], torch.tensor([0, 1, 2])),
        "two-identical": (twins, torch.tensor([0, 0, 1, 1, 2, 2])),
        "all-identical": (base[:1].repeat(6, 1), torch.tensor([0, 0, 1, 1, 2, 2])),
        "zero-vectors": (torch.zeros(4, 6), torch.tensor([0, 0, 1, 1])),
    }


@pytest.mark.parametrize("case", list(_degenerate_batches()))
@pytest.mark.parametrize("name,factory", all_losses(), ids=[n for n, _ in all_losses()])
def test_degenerate_batches_are_finite(case, name, factory):
    x, y = _degenerate_batches()[case]
    e = x.clone().requires_grad_(True)
    z = torch.randn(len(y), 3, requires_grad=True)
    module = factory()
    loss = call_loss(module, e, z, y)
    assert loss.dim() == 0 and torch.isfinite(loss), (name, case, loss)
    loss.backward()
    for t in [e, z] + (list(module.parameters()) if isinstance(module, torch.nn.Module) else []):
        assert t.grad is None or torch.isfinite(t.grad).all(), (name, case)
    if name.startswith("triplet") and case in ("one-class", "one-sample", "no-valid-triplet"):
        assert loss.item() == 0.0
    if name == "supcon" and case in ("one-sample", "no-valid-triplet"):
        assert loss.item() == 0.0


def test_weighted_sum_total_and_parts():
    torch.manual_seed(0)
    loss = build_loss({"ce": 0.15, "triplet": 0.4, "arcface": 0.45, "supcon": 0.2}, 3, 6)
    e = torch.randn(12, 6, requires_grad=True)
    z = torch.randn(12, 3, requires_grad=True)
    y = torch.arange(12) % 3
    total, parts = loss(e, z, y)
    assert list(parts) == ["ce", "triplet", "arcface", "supcon"]
    assert not any(p.requires_grad for p in parts.values()) and total.requires_grad
    torch.testing.assert_close(parts["ce"], CrossEntropyLoss()(z, y).detach())
    torch.testing.assert_close(parts["arcface"], loss.parts["arcface"](e, y).detach())
    expected = 0.15 * parts["ce"] + 0.4 * parts["triplet"] + 0.45 * parts["arcface"] + 0.2 * parts["supcon"]
    torch.testing.assert_close(total.detach(), expected)


def test_arcface_centres_are_trained_through_weighted_sum():
    torch.manual_seed(0)
    loss = build_loss(parse_loss_spec("combined"), num_classes=4, embedding_dim=8)
    centres = loss.parts["arcface"].centres
    assert any(p is centres for p in loss.parameters())
    before = centres.detach().clone()
    opt = torch.optim.SGD(loss.parameters(), lr=0.5)
    e = torch.randn(16, 8)
    z = torch.randn(16, 4)
    y = torch.arange(16) % 4
    opt.zero_grad()
    loss(e, z, y)[0].backward()
    opt.step()
    assert not torch.allclose(before, centres.detach())


def test_weighted_sum_validation():
    with pytest.raises(ValueError, match="at least one part"):
        WeightedSumLoss({})
    with pytest.raises(ValueError, match="'ce'.*>= 0"):
        WeightedSumLoss({"ce": (-1.0, CrossEntropyLoss())})
    with pytest.raises(ValueError, match="logits"):
        WeightedSumLoss({"ce": (1.0, CrossEntropyLoss())})(torch.randn(2, 3), None, torch.tensor([0, 1]))


# ----------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize(
    "make, pattern",
    [
        (lambda: TripletLoss(margin=0), "triplet_margin"),
        (lambda: TripletLoss(margin=float("nan")), "triplet_margin"),
        (lambda: TripletLoss(mining="easy"), "triplet_mining.*all, semihard, hard"),
        (lambda: TripletLoss(distance="l1"), "triplet_distance.*euclidean, cosine"),
        (lambda: ArcFaceLoss(3, 8, margin=28.6), "arcface_margin.*radians"),
        (lambda: ArcFaceLoss(3, 8, margin=-0.1), "arcface_margin"),
        (lambda: ArcFaceLoss(3, 8, margin=math.pi / 2), "arcface_margin"),
        (lambda: ArcFaceLoss(3, 8, scale=0), "arcface_scale"),
        (lambda: ArcFaceLoss(0, 8), "num_classes"),
        (lambda: SupConLoss(temperature=0), "supcon_temperature"),
        (lambda: SupConLoss(temperature=-1), "supcon_temperature"),
        (lambda: build_loss({"triplet": 1.0}, 3, 8, triplet_margin=-1), "triplet_margin"),
        (lambda: build_loss({"arcface": 1.0}, 3, 8, arcface_margin=30), "arcface_margin"),
        (lambda: build_loss({"supcon": 1.0}, 3, 8, supcon_temperature=0), "supcon_temperature"),
    ],
)
def test_argument_validation(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()


def test_input_shape_validation():
    with pytest.raises(ValueError, match="labels"):
        TripletLoss()(torch.randn(4, 3), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="2-D"):
        SupConLoss()(torch.randn(4), torch.tensor([0, 1, 1, 0]))


# ----------------------------------------------------------------------------- loss specs


@pytest.mark.parametrize(
    "text, expected",
    [
        ("combined", {"ce": 0.15, "triplet": 0.4, "arcface": 0.45}),
        ("  arcface ", {"arcface": 1.0}),
        ("ce=0.15+triplet=0.4+arcface=0.45", {"ce": 0.15, "triplet": 0.4, "arcface": 0.45}),
        (" ce = 0.15 +  triplet=0.4 + arcface =0.45 ", {"ce": 0.15, "triplet": 0.4, "arcface": 0.45}),
        ("ce+triplet", {"ce": 1.0, "triplet": 1.0}),
        ("supcon=2+ce", {"ce": 1.0, "supcon": 2.0}),
        ("ce=0+triplet=1e-3", {"triplet": 0.001}),
        ("arcface=1e+2+ce=.5", {"ce": 0.5, "arcface": 100.0}),
    ],
)
def test_parse_loss_spec(text, expected):
    parsed = parse_loss_spec(text)
    assert parsed == expected
    assert list(parsed) == [n for n in LOSS_NAMES if n in parsed]  # canonical order


def test_named_specs_and_round_trip():
    assert LOSS_NAMES == ("ce", "triplet", "arcface", "supcon")
    assert NAMED_SPECS["combined"] == {"ce": 0.15, "triplet": 0.4, "arcface": 0.45}
    assert format_loss_spec(parse_loss_spec("combined")) == "ce=0.15+triplet=0.4+arcface=0.45"
    assert format_loss_spec({"supcon": 1, "ce": 0.1}) == "ce=0.1+supcon=1.0"
    for name in NAMED_SPECS:
        spec = parse_loss_spec(name)
        assert parse_loss_spec(format_loss_spec(spec)) == spec
    g = torch.Generator().manual_seed(0)
    for _ in range(50):
        w = torch.rand(4, generator=g, dtype=torch.float64) * 10 ** torch.randint(-4, 4, (4,), generator=g)
        keep = torch.rand(4, generator=g) < 0.6
        weights = {n: float(v) for n, v, k in zip(LOSS_NAMES, w, keep) if k and v > 0}
        if not weights:
            continue
        text = format_loss_spec(weights)
        assert parse_loss_spec(text) == weights
        assert format_loss_spec(parse_loss_spec(text)) == text
    # Returned dicts are copies: mutating one does not change NAMED_SPECS.
    parse_loss_spec("combined")["ce"] = 9.0
    assert NAMED_SPECS["combined"]["ce"] == 0.15


@pytest.mark.parametrize(
    "text, problem",
    [
        ("ce+focal", "unknown loss name 'focal'"),
        ("Combined", "unknown loss name 'Combined'"),
        ("combined+ce", "named specs cannot be summed"),
        ("ce=0.1+ce=0.2", "'ce' appears more than once"),
        ("ce=abc", "weight 'abc' of 'ce' is not a number"),
        ("ce=", "weight '' of 'ce' is not a number"),
        ("ce=nan", "not a number"),
        ("triplet=-0.5", "negative"),
        ("ce=0+triplet=0", "all weights are zero"),
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("ce++triplet", "empty loss name"),
        ("=0.5", "empty loss name"),
    ],
)
def test_parse_loss_spec_errors(text, problem):
    with pytest.raises(ValueError) as info:
        parse_loss_spec(text)
    message = str(info.value)
    assert problem in message
    assert repr(text) in message  # quotes the offending text
    assert "ce, triplet, arcface, supcon" in message  # lists the valid names
    assert "combined" in message


def test_format_loss_spec_errors():
    with pytest.raises(ValueError, match="unknown loss name 'focal'"):
        format_loss_spec({"focal": 1.0})
    with pytest.raises(ValueError, match="negative"):
        format_loss_spec({"ce": -1.0})
    with pytest.raises(ValueError, match="all weights are zero"):
        format_loss_spec({})


def test_build_loss_parts():
    torch.manual_seed(0)
    loss = build_loss(
        {"triplet": 1.0, "ce": 0.5, "supcon": 0.0},
        num_classes=3,
        embedding_dim=8,
        triplet_margin=0.2,
        triplet_mining="hard",
        triplet_distance="cosine",
    )
    assert list(loss.parts) == ["ce", "triplet"] and loss.weights == {"ce": 0.5, "triplet": 1.0}
    t = loss.parts["triplet"]
    assert (t.margin, t.mining, t.distance) == (0.2, "hard", "cosine")
    arc = build_loss({"arcface": 1.0}, 5, 8, arcface_margin=0.3, arcface_scale=16.0).parts["arcface"]
    assert (arc.margin, arc.scale, arc.centres.shape) == (0.3, 16.0, (5, 8))
    assert build_loss({"supcon": 1.0}, 5, 8, supcon_temperature=0.07).parts["supcon"].temperature == 0.07
