"""SRU++ encoder: vectorised scans against the step-by-step reference, padding invariance,
gradients, attention only where configured, and a tiny run through `train` and `load_run`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from guim.baselines import build as build_baseline
from guim.config import ModelConfig, load_config
from guim.data.dataset import Dataset
from guim.data.loaders.s3rec import load_s3rec
from guim.data.prepare import prepare
from guim.embed import load_run
from guim.evaluate import evaluate
from guim.models import build_encoder
from guim.models.sru import SCANS, AttentionProjection, SRUEncoder, scan_chunked
from guim.train import train

FAST = [k for k in SCANS if k != "loop"]


def tiny_encoder(seed: int = 0, **overrides) -> SRUEncoder:
    """dim 12, 2 layers, no dropout; α and the gate biases moved off their initial values so
    the attention and every gate take part."""
    cfg = ModelConfig(
        **{"encoder": "sru", "dim": 12, "n_layers": 2, "dropout": 0.0, "attn_dropout": 0.0}
        | overrides
    )
    torch.manual_seed(seed)
    encoder = build_encoder(cfg)
    with torch.no_grad():
        for name, p in encoder.named_parameters():
            if name.endswith(("alpha", "bias_f", "bias_r")):
                p.copy_(torch.randn_like(p))
    return encoder.eval()


def left_padded(b: int = 7, t: int = 5, d: int = 12, seed: int = 0):
    """Random vectors (B, T, D) with garbage at the padding, and real (B, T) left-padded, every
    row with at least one real position."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, t, d, generator=g)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    real = torch.arange(t)[None, :] >= (t - lengths)[:, None]  # (B, T)
    return x, real


def use_kernel(encoder: SRUEncoder, kernel: str) -> SRUEncoder:
    for layer in encoder.layers:
        layer.kernel = kernel
    return encoder


@pytest.mark.parametrize("kernel", FAST)
@pytest.mark.parametrize("t", [1, 5, 17, 200])
def test_scan_matches_step_by_step_reference(kernel, t):
    """Including gates near 0 and near 1 (log f from about -30 to 0) over 200 steps."""
    g = torch.Generator().manual_seed(t)
    log_f = F.logsigmoid(6 * torch.randn(7, t, 12, generator=g))
    b = torch.randn(7, t, 12, generator=g)
    expected = SCANS["loop"](log_f.double(), b.double())
    assert torch.allclose(SCANS[kernel](log_f, b).double(), expected, atol=1e-5)
    assert torch.allclose(SCANS[kernel](log_f.double(), b.double()), expected, atol=1e-12)


@pytest.mark.parametrize("chunk", [2, 3, 5, 16])
def test_chunked_scan_any_chunk_size(chunk):
    """Several recursion levels (T = 37 with chunks of 2: 19, 10, 5, 3, 2, 1 chunks)."""
    g = torch.Generator().manual_seed(chunk)
    log_f = F.logsigmoid(3 * torch.randn(3, 37, 5, generator=g, dtype=torch.float64))
    b = torch.randn(3, 37, 5, generator=g, dtype=torch.float64)
    assert torch.allclose(scan_chunked(log_f, b, chunk), SCANS["loop"](log_f, b), atol=1e-12)


@pytest.mark.parametrize("kernel", FAST)
@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_encoder_scan_matches_reference(kernel, causal):
    """Outputs and gradients of the whole encoder (B=7, T=5, D=12, left padding)."""
    x, real = left_padded()
    outs, grads = [], []
    for k in (kernel, "loop"):
        encoder = use_kernel(tiny_encoder(attention_layers=(0, 1)), k)
        xk = x.clone().requires_grad_()
        h = encoder(xk, real, causal)
        (h[real] ** 2).sum().backward()
        outs.append(h[real])
        grads.append([xk.grad, *(p.grad for p in encoder.parameters())])
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_outputs_do_not_depend_on_left_padding(causal):
    """Four more padding columns (filled with garbage) leave the real positions' outputs alone."""
    encoder = tiny_encoder(attention_layers=(0, -1))
    x, real = left_padded()
    extra = torch.randn(7, 4, 12) * 10
    x_more = torch.cat([extra, x], dim=1)
    real_more = torch.cat([torch.zeros(7, 4, dtype=torch.bool), real], dim=1)
    with torch.no_grad():
        h = encoder(x, real, causal)
        h_more = encoder(x_more, real_more, causal)[:, 4:]
        h_garbage = encoder(torch.where(real[..., None], x, 100.0), real, causal)
    assert torch.allclose(h[real], h_more[real], atol=1e-5)
    assert torch.allclose(h[real], h_garbage[real], atol=1e-5)


@pytest.mark.parametrize("causal", [True, False], ids=["causal", "bidirectional"])
def test_direction_of_information_flow(causal):
    """Causal: changing the last position changes no earlier output. Bidirectional: it does,
    through the right-to-left half of the channels even without attention."""
    encoder = tiny_encoder(attention_layers=())
    x, _ = left_padded(b=3, t=6)
    real = torch.ones(3, 6, dtype=torch.bool)
    y = x.clone()
    y[:, -1] += 1.0
    with torch.no_grad():
        changed = (encoder(x, real, causal) - encoder(y, real, causal))[:, :-1].abs().amax()
    assert (changed < 1e-6) if causal else (changed > 1e-3)


def test_gradients_reach_every_parameter():
    """At initialisation α = 0, so W_k and W_v get no gradient (as in the paper); once α moves
    every parameter gets a finite, non-zero gradient."""
    cfg = ModelConfig(encoder="sru", dim=12, n_layers=2, dropout=0.1, attn_dropout=0.1)
    torch.manual_seed(0)
    encoder = SRUEncoder(cfg).train()
    x, real = left_padded()
    encoder(x, real, causal=True)[real].pow(2).sum().backward()
    for name, p in encoder.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        silent = name.endswith(("k.weight", "v.weight"))
        assert (p.grad.abs().sum() == 0) if silent else (p.grad.abs().sum() > 0), name
    with torch.no_grad():
        encoder.layers[-1].proj.alpha.fill_(0.5)
    encoder.zero_grad()
    encoder(x, real, causal=False)[real].pow(2).sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_attention_only_in_the_configured_layers():
    default = SRUEncoder(ModelConfig(encoder="sru", dim=12, n_layers=3))
    assert [layer.has_attention for layer in default.layers] == [False, False, True]
    chosen = SRUEncoder(ModelConfig(encoder="sru", dim=12, n_layers=3, attention_layers=(0, -1)))
    assert [layer.has_attention for layer in chosen.layers] == [True, False, True]
    for layer in chosen.layers:
        names = {n for n, _ in layer.named_parameters()}
        attention = {n for n in names if n.startswith("proj.") and n != "proj.weight"}
        if layer.has_attention:
            assert isinstance(layer.proj, AttentionProjection)
            assert {"proj.q.weight", "proj.k.weight", "proj.v.weight", "proj.alpha"} <= attention
            assert layer.proj.q.out_features == 6  # attention_dim 0 -> dim // 2
        else:
            assert names == {"norm.weight", "norm.bias", "proj.weight", "bias_f", "bias_r"}
    none = SRUEncoder(ModelConfig(encoder="sru", dim=12, n_layers=2, attention_layers=()))
    assert not any(layer.has_attention for layer in none.layers)
    wide = SRUEncoder(ModelConfig(encoder="sru", dim=12, n_layers=2, attention_dim=4))
    assert wide.layers[1].proj.q.out_features == 4
    with pytest.raises(ValueError, match="out of range"):
        SRUEncoder(ModelConfig(encoder="sru", dim=12, n_layers=2, attention_layers=(2,)))


def test_config_selects_sru():
    cfg = load_config(None, ['model.encoder="sru"', "model.attention_layers=[0, 1]"])
    assert cfg.model.attention_layers == (0, 1)
    assert isinstance(build_encoder(cfg.model), SRUEncoder)


def toy_dataset(tmp: Path, n_users: int = 50, n_items: int = 30, length: int = 9) -> Dataset:
    """Users walking a fixed item cycle with per-user steps (as in test_train): learnable."""
    rng = np.random.default_rng(0)
    lines, attrs = [], {}
    for u in range(1, n_users + 1):
        step = 1 + u % 3
        start = int(rng.integers(1, n_items + 1))
        seq = [(start + step * k - 1) % n_items + 1 for k in range(length)]
        lines.append(" ".join(map(str, [u, *seq])))
    for i in range(1, n_items + 1):
        attrs[str(i)] = [1 + i % 5, 6 + i % 3]
    (tmp / "Toy.txt").write_text("\n".join(lines) + "\n")
    (tmp / "Toy_item2attributes.json").write_text(json.dumps(attrs))
    return Dataset(prepare(load_s3rec(tmp / "Toy.txt"), tmp / "ds", show_progress=False))


def test_train_and_load_run_with_sru(tmp_path):
    """A tiny next-item run beats random ranking (mean of 10 random embedders) on validation,
    and load_run rebuilds it from the run directory with the same test metrics."""
    toy = toy_dataset(tmp_path)
    overrides = [
        'model.encoder="sru"',
        "model.dim=16",
        "model.n_layers=2",
        "data.max_len=12",
        "train.batch_size=16",
        "train.epochs=10",
        "train.threads=1",
    ]
    metrics, loaded = train_and_reload(toy, tmp_path / "run", overrides)
    random_ndcg = np.mean(
        [
            evaluate(build_baseline("random", toy, seed=s), toy, "loo", "valid")["NDCG@10"]
            for s in range(10)
        ]
    )
    assert metrics["valid_NDCG@10"] > 1.5 * random_ndcg
    assert isinstance(loaded.model.encoder, SRUEncoder)


def train_and_reload(toy: Dataset, out: Path, overrides: list[str]) -> tuple[dict, object]:
    """A tiny run through `train`: its metrics.json, and the run rebuilt by load_run, checked to
    give the same test NDCG@10."""
    run = train(load_config(None, overrides), toy.path, out, show_progress=False)
    metrics = json.loads((run / "metrics.json").read_text())
    loaded = load_run(run)
    again = evaluate(loaded, toy, "loo", "test", ks=(10,))
    assert again["NDCG@10"] == pytest.approx(metrics["test"]["NDCG@10"], abs=1e-9)
    return metrics, loaded
