"""GUIM model, losses and sampling: shapes on odd sizes, exact references, invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from guim.config import Config, ConfigError, LossConfig, load_config
from guim.data.batches import Batch
from guim.losses import full_softmax_nce, info_nce, interest_info_nce, view_info_nce
from guim.models.guim import GUIM
from guim.models.mor import InterestHead, interest_scores, nearest_interest
from guim.models.tokens import ItemTables
from guim.models.transformer import ATTENTION, Block, attention_mask
from guim.sampling import NegativeSampler

N_ITEMS, N_ATTRS = 23, 7


def tiny_config(*overrides: str) -> Config:
    return load_config(
        None,
        [
            "model.dim=12",
            "model.n_heads=3",
            "model.ffn_dim=20",
            "model.n_layers=2",
            "data.max_len=9",
            "model.dropout=0.0",
            "model.attn_dropout=0.0",
            *overrides,
        ],
    )


def tiny_model(*overrides: str, seed: int = 0) -> GUIM:
    cfg = tiny_config(*overrides)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(1)
    lengths = torch.randint(0, 4, (N_ITEMS + 1,), generator=g)
    lengths[0] = 0
    offsets = torch.zeros(N_ITEMS + 2, dtype=torch.int64)
    offsets[1:] = torch.cumsum(lengths, 0)
    flat = torch.randint(1, N_ATTRS + 1, (int(lengths.sum()),), generator=g)
    known = torch.ones(N_ITEMS + 1, dtype=torch.bool)
    known[[0, 5]] = False  # item 5 never seen in training
    text = torch.randn(N_ITEMS + 1, 10, generator=g)
    tables = ItemTables(N_ITEMS, N_ATTRS, offsets, flat, known, text)
    return GUIM(cfg.model, cfg.data, tables, causal=cfg.train.objective == "next").eval()


def batch(b: int = 7, t: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    items = torch.randint(1, N_ITEMS + 1, (b, t), generator=g)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    pad = torch.arange(t)[None, :] < (t - lengths)[:, None]
    items[pad] = 0
    events = torch.randint(1, 8, (b, t), generator=g) * (items > 0)
    times = torch.cumsum(torch.randint(0, 5000, (b, t), generator=g), dim=1)
    return items, events, times


@pytest.mark.parametrize("objective", ["next", "masked"])
@pytest.mark.parametrize("k", [1, 3])
def test_shapes_odd_sizes(objective, k):
    m = tiny_model(f"train.objective={objective}", f"model.n_interests={k}", "data.use_text=true")
    items, events, times = batch()
    assert m.encode(items, events, times).shape == (7, 5, k, 12)
    users = m.user_vectors(items, events, times)
    assert users.shape == (7, k, 12)
    assert m.item_vectors().shape == (N_ITEMS + 1, 12)
    assert m.score(users, m.item_vectors()).shape == (7, N_ITEMS + 1)
    assert torch.isfinite(users).all()


@pytest.mark.parametrize("objective", ["next", "masked"])
def test_left_padding_does_not_change_outputs(objective):
    m = tiny_model(f"train.objective={objective}", "model.n_interests=3")
    items, events, times = batch(t=5)
    pad = torch.zeros(7, 4, dtype=torch.int64)
    a = m.user_vectors(items, events, times)
    b = m.user_vectors(
        torch.cat([pad, items], 1), torch.cat([pad, events], 1), torch.cat([pad, times], 1)
    )
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("positions", ["from_start", "from_end"])
def test_causal_position_states_equal_prefix_outputs_only_from_start(positions):
    """With position ids from the start, the state at each position of a window is the user
    vector of the prefix ending there: training every position = one example per prefix."""
    m = tiny_model("train.objective=next", f"model.positions={positions}")
    items, events, times = batch(t=6)
    states = m.output(m.encode(items, events, times))  # (B, T, 1, D)
    gaps = []
    for end in range(1, 6):
        prefix = m.user_vectors(items[:, :end], events[:, :end], times[:, :end])
        real = items[:, end - 1] > 0
        gaps.append((states[real, end - 1] - prefix[real]).abs().max().item())
    if positions == "from_start":
        assert max(gaps) < 1e-5
    else:  # ids counted from the window's end shift with the window
        assert max(gaps) > 1e-3


@pytest.mark.parametrize("objective", ["next", "masked"])
@pytest.mark.parametrize("encoder", ["transformer", "sru"])
@pytest.mark.parametrize("k", [1, 3])
def test_last_only_encoding_equals_the_last_position_of_the_full_one(objective, encoder, k):
    """`encode(..., last_only=True)` (the top block at the last position alone with one
    interest; a slice otherwise) gives the full encoding's last position, with left padding."""
    m = tiny_model(
        f"train.objective={objective}", f"model.encoder={encoder}", f"model.n_interests={k}"
    )
    items, events, times = batch(t=6)
    full = m.encode(items, events, times)
    last = m.encode(items, events, times, last_only=True)
    assert last.shape == (7, 1, k, 12)
    torch.testing.assert_close(last, full[:, -1:], atol=1e-6, rtol=1e-6)


def _prefix_batch(b: int = 9, t: int = 6, seed: int = 3) -> Batch:
    """Prefix windows: every row's only target at the last position."""
    items, events, times = batch(b, t, seed)
    targets = torch.zeros_like(items)
    targets[:, -1] = torch.randint(1, N_ITEMS + 1, (b,), generator=torch.Generator().manual_seed(9))
    return Batch(items, events, times, targets, None)


def test_prefix_batches_compute_the_top_block_at_the_target_only_same_loss_and_gradients():
    """Under prefix windows the top block's feed-forward sees one position per row, and the
    loss and every gradient equal those of the full computation."""
    m = tiny_model("train.objective=next").train()
    seen = []
    hook = m.encoder.blocks[-1].ffn.register_forward_hook(lambda mod, i, o: seen.append(i[0].shape))
    b = _prefix_batch()
    grads, losses = {}, {}
    for fast in (False, True):
        m.top_at_targets = fast
        m.zero_grad(set_to_none=True)
        out = m(b)
        loss = info_nce_full(m, out, b)
        loss.backward()
        losses[fast] = float(loss.detach())
        grads[fast] = {n: p.grad.clone() for n, p in m.named_parameters() if p.grad is not None}
    hook.remove()
    assert seen == [(9, 6, 12), (9, 1, 12)]  # full top block, then the target position alone
    assert losses[True] == pytest.approx(losses[False], abs=1e-6)
    assert grads[True].keys() == grads[False].keys()
    for name, g in grads[False].items():
        torch.testing.assert_close(grads[True][name], g, atol=1e-6, rtol=1e-5, msg=name)


def test_windows_with_earlier_targets_keep_the_full_top_block():
    m = tiny_model("train.objective=next")
    b = _prefix_batch()
    b.targets[0, 2] = 4  # one earlier target: every position's state is needed
    out = m(b)
    assert out.states.shape == (9, 6, 1, 12)
    assert out.users.shape == (10, 1, 12)
    assert m(_prefix_batch()).states.shape == (9, 1, 1, 12)


def info_nce_full(m: GUIM, out, b: Batch) -> torch.Tensor:
    """The trainer's full-softmax loss of a batch's targets."""
    return interest_info_nce(out.users, out.items, b.targets[b.targets > 0], None, 1.0)


def test_cold_item_vector_ignores_its_id_embedding():
    m = tiny_model("data.use_text=true")
    before = m.item_vectors().detach().clone()
    with torch.no_grad():
        m.tokens.id_emb.weight[5] += 100.0  # an unseen item's id row must not matter
        m.tokens.id_emb.weight[6] += 1.0  # a seen item's id row does, one for one
    after = m.item_vectors().detach()
    torch.testing.assert_close(after[5], before[5])
    torch.testing.assert_close(after[6], before[6] + 1.0)


def test_attention_kernels_agree():
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 2, 6, 4) for _ in range(3))
    real = torch.tensor([[0, 0, 1, 1, 1, 1], [1] * 6, [0, 0, 0, 0, 0, 1]], dtype=torch.bool)
    for causal in (True, False):
        allowed = attention_mask(real, causal)
        a = ATTENTION["sdpa"](q, k, v, allowed, 0.0)
        b = ATTENTION["reference"](q, k, v, allowed, 0.0)
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    cfg = load_config(None, ["model.dim=12", "model.n_heads=3", "model.dropout=0.0"]).model
    block = Block(cfg).eval()
    x = torch.randn(3, 6, 12)
    allowed = attention_mask(real, True)
    ref = block(x, allowed)
    block.kernel = "reference"
    torch.testing.assert_close(block(x, allowed), ref, atol=1e-6, rtol=1e-5)


# ---- losses ---------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk", [1, 3, 7, 100])
def test_fused_full_softmax_matches_info_nce_in_value_and_gradients(chunk):
    """The fused, chunked full softmax is the same loss with the same gradients as the plain
    one, for any chunk size (including chunks that do not divide the rows), with blocked
    candidates (padding, items unknown in training) scored and updated as masked ones."""
    torch.manual_seed(0)
    users, items = torch.randn(7, 5, dtype=torch.float64), torch.randn(11, 5, dtype=torch.float64)
    positive = torch.tensor([1, 4, 10, 4, 2, 7, 9])
    allowed = torch.ones(11, dtype=torch.bool)
    allowed[[0, 3, 5]] = False  # padding row and two items never seen in training
    u1, i1 = users.clone().requires_grad_(), items.clone().requires_grad_()
    ref = info_nce(u1 @ i1.T, positive, temperature=0.3, allowed=allowed)
    ref.backward()
    u2, i2 = users.clone().requires_grad_(), items.clone().requires_grad_()
    got = interest_info_nce(u2[:, None], i2, positive, None, 0.3, allowed)
    got.backward()
    assert got.item() == pytest.approx(ref.item(), rel=1e-12)
    torch.testing.assert_close(u2.grad, u1.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(i2.grad, i1.grad, rtol=1e-10, atol=1e-12)
    assert not i2.grad[~allowed].any()  # blocked items get no gradient
    u3, i3 = users.clone().requires_grad_(), items.clone().requires_grad_()
    full_softmax_nce(u3, i3, positive, 0.3, allowed, chunk).backward()
    torch.testing.assert_close(u3.grad, u1.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(i3.grad, i1.grad, rtol=1e-10, atol=1e-12)
    assert torch.autograd.gradcheck(
        lambda u, i: full_softmax_nce(u, i, positive, 0.3, allowed, chunk), (u3, i3)
    )


@pytest.mark.parametrize("chunk", [1, 4, 100])
@pytest.mark.parametrize("masks", ["none", "columns", "rows"])
def test_fused_sampled_softmax_matches_info_nce_with_logq_and_masks(chunk, masks):
    """The sampled loss (candidates with a logQ correction, in-batch or per-row masks) goes
    through the same fused kernel: the same loss and gradients as the plain
    `info_nce(scores, positive, log_q, tau, allowed)`, masked candidates getting none."""
    torch.manual_seed(1)
    users, items = torch.randn(9, 4, dtype=torch.float64), torch.randn(13, 4, dtype=torch.float64)
    positive = torch.tensor([0, 5, 12, 5, 3, 8, 1, 11, 2])
    log_q = torch.randn(13, dtype=torch.float64).clamp(max=0) - 2.0
    log_q[7] = 0.0  # a candidate in the set for sure (a retrieved hard negative)
    allowed: torch.Tensor | None = None
    if masks == "columns":
        allowed = torch.ones(13, dtype=torch.bool)
        allowed[[4, 6]] = False
    elif masks == "rows":  # e.g. in_batch off: each row's own positive and the sampled ones
        allowed = torch.rand(9, 13) < 0.5
        allowed[torch.arange(9), positive] = True
    u1, i1 = users.clone().requires_grad_(), items.clone().requires_grad_()
    ref = info_nce(u1 @ i1.T, positive, log_q, 0.7, allowed)
    ref.backward()
    u2, i2 = users.clone().requires_grad_(), items.clone().requires_grad_()
    got = full_softmax_nce(u2, i2, positive, 0.7, allowed, chunk, log_q=log_q)
    got.backward()
    assert got.item() == pytest.approx(ref.item(), rel=1e-12)
    torch.testing.assert_close(u2.grad, u1.grad, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(i2.grad, i1.grad, rtol=1e-10, atol=1e-12)
    if masks == "columns":
        assert allowed is not None and not i2.grad[~allowed].any()
    # frozen item vectors (MSLT's top-only stages): the users' gradient alone, the same
    u4 = users.clone().requires_grad_()
    full_softmax_nce(u4, items, positive, 0.7, allowed, chunk, log_q=log_q).backward()
    torch.testing.assert_close(u4.grad, u1.grad, rtol=1e-10, atol=1e-12)
    u3, i3 = users.clone().requires_grad_(), items.clone().requires_grad_()
    routed = interest_info_nce(u3[:, None], i3, positive, log_q, 0.7, allowed)  # the trainer's
    assert routed.item() == pytest.approx(ref.item(), rel=1e-12)
    assert torch.autograd.gradcheck(
        lambda u, i: full_softmax_nce(u, i, positive, 0.7, allowed, chunk, log_q=log_q),
        (u3, i3),
    )


def test_info_nce_against_hand_written_reference():
    torch.manual_seed(0)
    scores = torch.randn(5, 9)
    positive = torch.tensor([0, 3, 8, 2, 2])
    log_q = torch.randn(9)
    allowed = torch.rand(5, 9) > 0.3
    allowed[torch.arange(5), positive] = True
    tau = 0.7
    expected = 0.0
    for p in range(5):
        logits = [scores[p, j].item() / tau - log_q[j].item() for j in range(9) if allowed[p, j]]
        pos = scores[p, positive[p]].item() / tau - log_q[positive[p]].item()
        expected += -(pos - math.log(sum(math.exp(x) for x in logits)))
    got = info_nce(scores, positive, log_q, tau, allowed)
    assert got.item() == pytest.approx(expected / 5, rel=1e-5)
    # full softmax: no correction, no mask
    plain = sum(-(scores[p, positive[p]] - torch.logsumexp(scores[p], 0)).item() for p in range(5))
    assert info_nce(scores, positive).item() == pytest.approx(plain / 5, rel=1e-5)


def test_logq_correction_recovers_full_softmax_gradient_direction():
    """Averaged over many draws, the gradient of the corrected sampled loss with respect to the
    item scores matches the full softmax's (softmax(s) - onehot(target)); without the correction
    it is biased towards popular items. Toy case: rare items score higher than popular ones."""
    n, target = 60, 7
    torch.manual_seed(0)
    scores = torch.zeros(n + 1)
    scores[1:] = torch.linspace(0, 3, n) + 0.3 * torch.randn(n)
    s = scores[1:].clone().requires_grad_(True)
    (g_full,) = torch.autograd.grad(info_nce(s[None], torch.tensor([target - 1])), s)
    pop = np.zeros(n + 1, dtype=np.int64)
    pop[1:] = (1000 / np.arange(1, n + 1) ** 1.2).astype(np.int64) + 1  # Zipf popularity
    known = np.ones(n + 1, dtype=bool)

    def mean_grad(logq: bool) -> torch.Tensor:
        cfg = LossConfig(
            kind="sampled", n_negatives=50, sampler="popularity", in_batch=False, logq=logq
        )
        sampler = NegativeSampler(cfg, pop, known)
        gen = torch.Generator().manual_seed(1)
        total = torch.zeros(n)
        for _ in range(2000):
            cand = sampler.candidates(torch.tensor([target]), gen)
            sc = scores[cand.items].clone().requires_grad_(True)
            loss = info_nce(sc[None], cand.positive, cand.log_q, 1.0, cand.allowed)
            (g,) = torch.autograd.grad(loss, sc)
            total.index_add_(0, cand.items - 1, g)
        return total / 2000

    negatives = torch.arange(n) != target - 1
    with_q, without_q = mean_grad(True), mean_grad(False)
    cos = torch.nn.functional.cosine_similarity
    assert cos(with_q[negatives], g_full[negatives], dim=0) > 0.99
    err_with = (with_q - g_full).abs().sum()
    err_without = (without_q - g_full).abs().sum()
    assert err_with < 0.5 * err_without


def test_sampler_candidates_and_expected_counts():
    pop = np.array([0, 5, 0, 3, 2])
    known = np.array([False, True, False, True, True])
    cfg = LossConfig(kind="sampled", n_negatives=50, sampler="popularity", in_batch=True)
    s = NegativeSampler(cfg, pop, known)
    gen = torch.Generator().manual_seed(0)
    drawn = s.sample(10_000, gen)
    assert set(drawn.tolist()) <= {1, 3, 4}  # never padding or unseen items
    freq = np.bincount(drawn.numpy(), minlength=5) / 10_000
    np.testing.assert_allclose(freq[[1, 3, 4]], [0.5, 0.3, 0.2], atol=0.02)
    targets = torch.tensor([3, 1, 3])
    c = s.candidates(targets, gen)
    assert (c.items[c.positive] == targets).all()
    assert len(torch.unique(c.items)) == len(c.items)  # no duplicates -> no accidental hits
    # inclusion probability: 1 - (1 - p)^3 targets (1 - q)^50 negatives, q = p here
    p = torch.tensor([0, 0.5, 0, 0.3, 0.2])
    torch.testing.assert_close(c.log_q, torch.log(1 - (1 - p[c.items]) ** 53))


# ---- Mixture of Representations ---------------------------------------------------------


def test_k1_is_exactly_the_single_vector_model():
    torch.manual_seed(0)
    cfg = load_config(None, ["model.dim=12", "model.n_interests=1"]).model
    head = InterestHead(cfg)
    h = torch.randn(7, 5, 12)
    real = torch.ones(7, 5, dtype=torch.bool)
    out = head(h, real, causal=True)
    assert torch.equal(out[:, :, 0], h)
    users, items = torch.randn(7, 1, 12), torch.randn(9, 12)
    single = users[:, 0] @ items.T
    assert torch.equal(interest_scores(users, items, "max"), single)
    torch.testing.assert_close(interest_scores(users, items, "softmax"), single)
    assert torch.equal(nearest_interest(users, items[:7]), users[:, 0])
    # the whole model: K = 1 scores equal the plain dot product of the last state
    m = tiny_model("model.n_interests=1")
    it, ev, ts = batch()
    u = m.user_vectors(it, ev, ts)
    assert torch.equal(m.score(u, m.item_vectors()), u[:, 0] @ m.item_vectors().T)


def test_mor_interests_are_centred_on_the_state_and_differ():
    torch.manual_seed(0)
    cfg = load_config(None, ["model.dim=12", "model.n_interests=4"]).model
    head = InterestHead(cfg)
    h = torch.randn(3, 6, 12)
    real = torch.ones(3, 6, dtype=torch.bool)
    out = head(h, real, causal=True)
    torch.testing.assert_close(out.mean(dim=2), h, atol=1e-6, rtol=1e-6)
    assert (out[:, :, 0] - out[:, :, 1]).abs().max() > 1e-3
    # causal: position t does not depend on later positions
    h2 = h.clone()
    h2[:, 4:] += 1.0
    out2 = head(h2, real, causal=True)
    torch.testing.assert_close(out[:, :4], out2[:, :4])


def test_max_score_and_nearest_readout_agree():
    users, items = torch.randn(5, 3, 8), torch.randn(11, 8)
    best = interest_scores(users, items, "max")
    targets = torch.tensor([0, 4, 10, 2, 7])
    chosen = nearest_interest(users, items[targets])
    torch.testing.assert_close((chosen * items[targets]).sum(-1), best[torch.arange(5), targets])


def test_interest_readouts_against_hand_written_losses():
    """The "nearest" readout is the cross-entropy of the routed interest's dot products, the
    "scored" one that of the max-over-K scores, the score evaluation ranks by. They differ once another interest scores
    a negative above the routed one."""
    torch.manual_seed(3)
    users, items = torch.randn(6, 3, 8, requires_grad=True), torch.randn(13, 8)
    positive = torch.tensor([1, 4, 12, 2, 7, 7])
    routed = users[torch.arange(6), (users * items[positive][:, None]).sum(-1).argmax(1)]
    nearest = torch.nn.functional.cross_entropy(routed @ items.T / 0.5, positive)
    merged = torch.einsum("pkd,cd->pkc", users, items).amax(dim=1)
    scored = torch.nn.functional.cross_entropy(merged / 0.5, positive)
    got_nearest = interest_info_nce(users, items, positive, None, 0.5)
    got_scored = interest_info_nce(users, items, positive, None, 0.5, readout="scored")
    torch.testing.assert_close(got_nearest, nearest)
    torch.testing.assert_close(got_scored, scored)
    assert got_scored.item() > got_nearest.item() + 1e-3  # more competition from the other K
    # the gradient of "scored" reaches every interest that is some candidate's best
    (g,) = torch.autograd.grad(got_scored, users)
    assert (g.abs().sum(dim=-1) > 0).sum() > 6
    # K = 1: the two readouts are the same loss
    one = users[:, :1].detach()
    torch.testing.assert_close(
        interest_info_nce(one, items, positive, None, 0.5),
        interest_info_nce(one, items, positive, None, 0.5, readout="scored"),
    )


def test_scored_readout_is_a_config_option_that_reaches_training(tmp_path):
    """K = 2 trained a few epochs from the same seed with each readout: both learn, the option
    changes the weights (it reaches the loss), and the runs reload with the same test metrics."""
    from tests.test_sru import toy_dataset, train_and_reload

    with pytest.raises(ConfigError, match="interest_readout"):
        load_config(None, ["loss.interest_readout=mean"])
    toy = toy_dataset(tmp_path)
    base = ["model.n_interests=2", "model.dim=16", "model.ffn_dim=32", "data.max_len=12"]
    base += ['data.windows="prefix"', "train.batch_size=32", "train.epochs=6", "train.threads=1"]
    scored, loaded = train_and_reload(toy, tmp_path / "s", [*base, "loss.interest_readout=scored"])
    nearest, other = train_and_reload(toy, tmp_path / "n", base)
    assert loaded.cfg.loss.interest_readout == "scored"
    assert scored["valid_NDCG@10"] > 0.4 and nearest["valid_NDCG@10"] > 0.4  # random: about 0.1
    a, b = loaded.model.state_dict(), other.model.state_dict()
    assert any(not torch.equal(a[name], b[name]) for name in a)


# ---- cosine scoring and the contrastive term ------------------------------------------------


def test_normalize_gives_unit_vectors():
    m = tiny_model("model.normalize=true", "model.n_interests=2")
    items, events, times = batch()
    users = m.user_vectors(items, events, times)
    torch.testing.assert_close(users.norm(dim=-1), torch.ones(7, 2))
    torch.testing.assert_close(m.item_vectors()[1:].norm(dim=-1), torch.ones(N_ITEMS))
    assert m.item_vectors()[0].abs().sum() == 0  # padding stays zero


def test_contrastive_loss_matches_reference_for_identical_views():
    """With dropout off and the "dropout" view, both views are the same vectors z, so the loss is
    the mean of -log softmax(z z^T / t) on the diagonal."""
    from guim.data.batches import contrastive_view

    cfg = tiny_config("loss.contrastive_weight=1.0", "loss.contrastive_temperature=0.5")
    m = tiny_model("loss.contrastive_weight=1.0")
    items, events, times = batch()
    b = Batch(items, events, times, torch.zeros_like(items), None)

    def loss_of(cfg: Config) -> torch.Tensor:
        out = m(b, view=contrastive_view(b, cfg, torch.Generator().manual_seed(0)))
        return view_info_nce(out.states, out.view_states, cfg.loss.contrastive_temperature)

    got = loss_of(cfg)
    z = torch.nn.functional.normalize(m.encode(items, events, times)[:, -1, 0], dim=-1)
    logits = z @ z.T / 0.5
    expected = -torch.log_softmax(logits, dim=1).diagonal().mean()
    torch.testing.assert_close(got, expected)
    # corrupted views are really corrupted (the loss changes) and gradients reach the items
    for view in ("mask", "crop", "reorder"):
        loss = loss_of(tiny_config(f"loss.contrastive_view={view}", "loss.contrastive_rate=0.9"))
        assert not torch.isclose(loss, got)
        m.zero_grad()
        loss.backward()
        assert m.tokens.id_emb.weight.grad.abs().sum() > 0
