"""BSARec's frequency filter beside self-attention (`model.freq_alpha`): the low-pass matrix
against torch.fft, independence of left padding, the last-position fast path, the config
rules, gradients, and a tiny run through `train` and `load_run` (ONNX parity: test_onnx)."""

from __future__ import annotations

import pytest
import torch

from guim.config import ConfigError, ModelConfig, load_config
from guim.models.transformer import FrequencyFilter, TransformerEncoder, low_pass_matrix
from tests.test_sru import toy_dataset, train_and_reload


def test_low_pass_matrix_is_rfft_cut_irfft():
    x = torch.randn(10, 3, dtype=torch.float64)
    spectrum = torch.fft.rfft(x, dim=0, norm="ortho")
    spectrum[3:] = 0
    expected = torch.fft.irfft(spectrum, n=10, dim=0, norm="ortho")
    assert torch.allclose(low_pass_matrix(10, 3).double() @ x, expected, atol=1e-6)
    # bin 0 alone is the mean over the window
    assert torch.allclose(low_pass_matrix(10, 1), torch.full((10, 10), 0.1), atol=1e-7)
    # every bin kept: the identity
    assert torch.allclose(low_pass_matrix(10, 6), torch.eye(10), atol=1e-6)


def test_filter_by_hand():
    """low + beta^2 (x - low) on a window of 4, padded to 6, bin 0 kept (low = mean over 6)."""
    f = FrequencyFilter(dim=2, seq_len=6, keep=1)
    with torch.no_grad():
        f.sqrt_beta.copy_(torch.tensor([0.0, 2.0]))  # beta^2 = 0 and 4
    h = torch.tensor([[[9.0, 9.0], [1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]])
    real = torch.tensor([[False, True, True, True, True]])  # the 9s are padding
    out = f(h, real)
    mean = torch.tensor([16.0, 20.0]) / 6  # the padding counts as zeros, over 6 positions
    expected = mean + torch.tensor([0.0, 4.0]) * (h[0] * real[0, :, None] - mean)
    assert torch.allclose(out[0], expected, atol=1e-5)


def encoder(seed: int = 0, **overrides) -> TransformerEncoder:
    cfg = ModelConfig(
        **{"dim": 16, "n_heads": 2, "ffn_dim": 32, "dropout": 0.0, "attn_dropout": 0.0}
        | {"freq_alpha": 0.7, "freq_low": 3}
        | overrides
    )
    torch.manual_seed(seed)
    return TransformerEncoder(cfg, seq_len=12).eval()


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_outputs_do_not_depend_on_left_padding(attention):
    """A history of 7 encoded alone (T = 7) and in a batch padded to T = 12 with garbage in the
    padding tokens: the same outputs at its real positions."""
    enc = encoder(attention=attention)
    x = torch.randn(1, 7, 16)
    alone = enc(x, torch.ones(1, 7, dtype=torch.bool), causal=True)
    padded = torch.cat([torch.randn(1, 5, 16) * 10, x], dim=1)
    real = torch.tensor([[False] * 5 + [True] * 7])
    assert torch.allclose(enc(padded, real, causal=True)[:, 5:], alone, atol=1e-5)


@pytest.mark.parametrize("attention", ["softmax", "linear"])
def test_last_only_is_the_last_position(attention):
    enc = encoder(attention=attention)
    x = torch.randn(3, 12, 16)
    real = torch.ones(3, 12, dtype=torch.bool)
    real[0, :4] = False
    full = enc(x, real, causal=True)
    last = enc(x, real, causal=True, last_only=True)
    assert last.shape == (3, 1, 16)
    assert torch.allclose(last, full[:, -1:], atol=1e-5)


def test_filter_reads_later_positions_and_alpha_zero_is_plain_attention():
    """With the filter an earlier position's output moves when a later item changes (why the
    next-item objective needs prefix windows); alpha 0 builds no filter and is causal."""
    x = torch.randn(1, 12, 16)
    later = x.clone()
    later[0, -1] += torch.randn(16)  # (a constant shift would vanish in the LayerNorm)
    real = torch.ones(1, 12, dtype=torch.bool)
    enc = encoder()
    assert not torch.allclose(enc(x, real, True)[:, 0], enc(later, real, True)[:, 0])
    plain = encoder(freq_alpha=0.0)
    assert all(block.filter is None for block in plain.blocks)
    assert not any("sqrt_beta" in name for name, _ in plain.named_parameters())
    assert torch.allclose(plain(x, real, True)[:, :-1], plain(later, real, True)[:, :-1])


def test_beta_learns_and_the_matrix_is_not_saved():
    enc = encoder()
    enc.train()
    x = torch.randn(4, 12, 16)
    enc(x, torch.ones(4, 12, dtype=torch.bool), causal=True).square().sum().backward()
    for block in enc.blocks:
        assert block.filter.sqrt_beta.grad is not None
        assert block.filter.sqrt_beta.grad.abs().sum() > 0
    keys = enc.state_dict().keys()
    assert any(k.endswith("filter.sqrt_beta") for k in keys)
    assert not any("low_pass" in k for k in keys)


def test_config_rules():
    ok = load_config(None, ["model.freq_alpha=0.7", 'data.windows="prefix"'])
    assert ok.model.freq_alpha == 0.7 and ok.model.freq_low == 3
    with pytest.raises(ConfigError, match=r"needs data\.windows = 'prefix'"):
        load_config(None, ["model.freq_alpha=0.7"])  # next-item, crop windows
    load_config(None, ["model.freq_alpha=0.7", 'train.objective="masked"'])  # bidirectional
    with pytest.raises(ConfigError, match="transformer encoder"):
        load_config(None, ["model.freq_alpha=0.7", 'data.windows="prefix"', 'model.encoder="sru"'])
    with pytest.raises(ConfigError, match="freq_alpha"):
        load_config(None, ["model.freq_alpha=1.5", 'data.windows="prefix"'])
    with pytest.raises(ConfigError, match="freq_low"):
        load_config(None, ["model.freq_alpha=0.5", "model.freq_low=0", 'data.windows="prefix"'])


def test_train_and_load_run(tmp_path):
    """A tiny prefix-window run with the filter learns (a random ranking of the 30 items scores
    about 0.1), and load_run rebuilds it with the same test metrics. (ONNX parity: test_onnx.)"""
    toy = toy_dataset(tmp_path)
    overrides = [
        "model.freq_alpha=0.7",
        'data.windows="prefix"',
        "model.dim=16",
        "model.ffn_dim=32",
        "data.max_len=12",
        "train.batch_size=32",
        "train.epochs=6",
        "train.threads=1",
    ]
    metrics, loaded = train_and_reload(toy, tmp_path / "run", overrides)  # same test metrics
    assert metrics["valid_NDCG@10"] > 0.3
    assert loaded.model.encoder.blocks[0].filter is not None
