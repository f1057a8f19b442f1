"""The share of repeat targets: recorded by prepare, equal to what evaluation counts."""

from __future__ import annotations

import numpy as np
import pytest

from guim.data.dataset import Dataset, repeats_earlier
from guim.data.loaders.merrec import load_merrec
from guim.data.prepare import PrepareConfig, prepare
from guim.data.synthetic import SynthConfig, synth
from guim.evaluate import evaluate, repeat_share


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Dataset:
    root = tmp_path_factory.mktemp("shop")
    raw = synth(root / "raw", SynthConfig.tiny(seed=3))
    return Dataset(prepare(load_merrec(raw), root / "data", PrepareConfig(name="shop")))


def test_repeats_earlier_by_hand():
    user = np.array([1, 1, 1, 1, 2, 2])
    item = np.array([5, 6, 5, 7, 5, 5])
    assert repeats_earlier(user, item).tolist() == [False, False, True, False, False, True]


@pytest.mark.parametrize("scheme", ["loo", "temporal"])
@pytest.mark.parametrize("split", ["valid", "test"])
def test_recorded_repeat_share_matches_the_cases(shop: Dataset, scheme: str, split: str):
    cases = shop.eval_cases(scheme, split)  # type: ignore[arg-type]
    by_hand = np.mean([t in cases.history.items_of(i) for i, t in enumerate(cases.target)])
    assert shop.stats["repeat_targets"][scheme][split] == pytest.approx(by_hand, abs=1e-6)
    assert repeat_share(cases) == pytest.approx(by_hand)
    assert shop.repeat_share(scheme, split) == pytest.approx(by_hand, abs=1e-6)  # type: ignore[arg-type]


def test_evaluate_reports_the_share_and_masking_misses_every_repeat(shop: Dataset):
    class Oracle:
        """Scores each user's own test target highest."""

        name = "oracle"

        def __init__(self, ds: Dataset) -> None:
            cases = ds.eval_cases("loo", "test")
            self.target = dict(zip(cases.user_idx.tolist(), cases.target.tolist(), strict=True))
            self.n_items = ds.n_items

        def embed_users(self, histories):
            out = np.zeros((len(histories), 1, self.n_items + 1), dtype=np.float32)
            for r, u in enumerate(histories.user_idx):
                out[r, 0, self.target[int(u)]] = 1.0
            return out

        def embed_items(self):
            return np.eye(self.n_items + 1, dtype=np.float32)

    masked = evaluate(Oracle(shop), shop, "loo", "test", ks=(10,))
    plain = evaluate(Oracle(shop), shop, "loo", "test", ks=(10,), mask_history=False)
    share = shop.stats["repeat_targets"]["loo"]["test"]
    assert 0 < share < 1
    assert masked["repeat_share"] == plain["repeat_share"] == pytest.approx(share, abs=1e-6)
    assert plain["HR@10"] == 1.0
    assert masked["HR@10"] == pytest.approx(1.0 - share, abs=1e-6)


def test_repeat_term_is_fitted_on_validation_and_only_acts_unmasked(shop: Dataset):
    from guim.evaluate import RepeatAware, fit_repeat_bonus

    class Random:
        name = "random"

        def __init__(self, ds: Dataset) -> None:
            rng = np.random.default_rng(0)
            self.items = rng.normal(size=(ds.n_items + 1, 8)).astype(np.float32)

        def embed_users(self, histories):
            return np.random.default_rng(1).normal(size=(len(histories), 1, 8)).astype(np.float32)

        def embed_items(self):
            return self.items

    base = Random(shop)
    bonus, curve = fit_repeat_bonus(base, shop)
    # with random vectors the repeats are the only signal: a large term wins on validation
    assert bonus > 0 and curve[bonus] > curve[0.0]
    wrapped = RepeatAware(base, bonus)
    valid = evaluate(wrapped, shop, "loo", "valid", ks=(10,), mask_history=False)
    assert valid["NDCG@10"] == pytest.approx(curve[bonus])
    # under the masked protocol every history item is removed: the term changes nothing
    masked = evaluate(wrapped, shop, "loo", "test", ks=(10,))
    assert masked == evaluate(base, shop, "loo", "test", ks=(10,))


def test_eval_cli_names_a_broken_dataset_json_and_user_errors_are_one_line(shop: Dataset, tmp_path):
    from typer.testing import CliRunner

    from guim.cli import app
    from guim.config import load_config
    from guim.train import train

    run = train(load_config("tiny", ["train.epochs=1"]), shop.path, tmp_path / "run")
    runner = CliRunner()
    ok = runner.invoke(app, ["eval", str(run)])
    assert ok.exit_code == 0, ok.output
    assert "repeat targets:" in ok.output and "history masked" in ok.output
    (run / "dataset.json").write_text("{not json")
    bad = runner.invoke(app, ["eval", str(run)])
    assert bad.exit_code == 2 and str(run / "dataset.json") in bad.output
    assert "Traceback" not in bad.output
    unknown = runner.invoke(app, ["baseline", "nosuch", "--dataset", str(shop.path)])
    assert unknown.exit_code == 2 and "unknown baseline 'nosuch'" in unknown.output
    assert "Traceback" not in unknown.output


def test_a_negative_repeat_term_demotes_history_items():
    from guim.scoring import rank_targets

    # items scored 5, 4, 3 (item 1 best); history [1]; target 2 (new): a term of -1.5 puts the
    # history item below the target
    items = np.array([[0.0], [5.0], [4.0], [3.0]])
    users, target, history = np.ones((1, 1)), np.array([2]), (np.array([0, 1]), np.array([1]))
    assert rank_targets(users, items, target).tolist() == [1]
    assert rank_targets(users, items, target, seen=history, seen_bonus=-1.5).tolist() == [0]
