"""The RecBole peer never unpickles a planted file (issue 11, defect 8): RecBole loads
`<checkpoint_dir>/<dataset>-<class>.pth` with pickle whenever it exists, so every run gets a fresh
private directory, removed afterwards."""

from __future__ import annotations

import os
import pickle

import pytest

pytest.importorskip(
    "recbole", reason="RecBole peers need the optional extra: pip install -e '.[peers]'"
)

from guim.data.loaders import load_raw
from guim.data.prepare import prepare
from guim.peers.recbole import load_peer, run_peer

TINY = {"MAX_ITEM_LIST_LENGTH": 5, "hidden_size": 8, "inner_size": 8, "train_batch_size": 64}


class _Exploit:
    """Unpickling this writes `marker` (what a planted pickle could do with os.system)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _plant(folder, marker) -> list:
    paths = []
    for name in ("guim-SequentialDataset.pth", "guim-for-SASRec-dataloader.pth"):
        for sub in ("recbole/saved", "saved", "recbole", ""):
            target = folder / sub / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(pickle.dumps(_Exploit(str(marker))))
            paths.append(target)
    return paths


def test_a_planted_pickle_is_never_loaded(tmp_path, monkeypatch):
    import recbole.data.utils as rb_utils

    log = tmp_path / "log.csv"
    lines = ["user_id,item_id,timestamp"]
    lines += [f"u{u},i{(u * 7 + k) % 41},{k}" for u in range(40) for k in range(6)]
    log.write_text("\n".join(lines) + "\n")
    data = tmp_path / "data"
    prepare(load_raw(log), data, show_progress=False)

    out = tmp_path / "bench" / "peers" / "sasrec"
    marker = tmp_path / "pwned"
    planted = _plant(out, marker)
    loads = []
    monkeypatch.setattr(rb_utils.pickle, "load", lambda *a, **k: loads.append(a) or None)

    run = run_peer(
        "sasrec", data, out, 1, max_epochs=1, threads=1, overrides=TINY, show_progress=False
    )
    assert run.epochs == 1
    load_peer(out)
    assert loads == [] and not marker.exists()
    assert all(p.exists() for p in planted)  # left alone, but never read
    # RecBole's private directories are gone; nothing else was added beside the planted files
    added = {p.name for p in out.iterdir()} - {p.relative_to(out).parts[0] for p in planted}
    assert added == {"train_log.jsonl", "model.safetensors", "peer.json"}, added
    assert not [n for n in os.listdir(out) if n.startswith(".recbole")]
