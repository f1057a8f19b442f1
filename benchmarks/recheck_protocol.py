"""Carry a recorded result over to the corrected evaluation protocol when it provably does not
change: on a dataset with no repeat targets (no valid or test target occurs in its user's
history), masking the whole history and masking it except the target are the same mask, so
every masked figure recorded before the fix is the figure the fixed code gives.

For each results file and the prepared dataset it was measured on (checked by content hash), the
script computes the repeat-target shares; if they are zero it records them and the protocol in
the file (bench files also get the next_item task's protocol fields); otherwise it refuses, and
the result must be re-measured.

    python benchmarks/recheck_protocol.py benchmarks/results/bench-beauty.json \
        --dataset beauty=runs/proto/data/beauty
"""

from __future__ import annotations

import argparse
from pathlib import Path

NOTE = (
    "measured before the evaluation-protocol fix (history masked except a repeated target); "
    "this dataset has no repeat targets (repeat_target_share 0 for valid and test, checked by "
    "benchmarks/recheck_protocol.py at git {git}), so the masked figures are exactly those of "
    "the corrected protocol (every seen item masked) and were not re-run"
)


DROPPED = (
    "removed: measured on the synthetic shop before its repeat behaviour was set deliberately "
    "(generator VERSION 1) and with the leaky history mask; the current shop's next-item and "
    "cold-start figures are in bench-synthetic.json and protocol.json"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument("--dataset", nargs="+", required=True, help="NAME=prepared dataset dir")
    ap.add_argument(
        "--drop",
        nargs="*",
        default=[],
        help="datasets whose results in FILES are stale (measured on data with repeat targets "
        "under the old mask, or on data that changed): removed, with a note saying so",
    )
    args = ap.parse_args()

    from guim.data.dataset import Dataset
    from guim.io import read_json, write_json
    from guim.provenance import git_revision

    datasets = {}
    for text in args.dataset:
        name, _, path = text.partition("=")
        datasets[name] = Dataset(path)
    git = git_revision()
    for path in args.files:
        doc = read_json(path)
        dropped = [name for name in args.drop if name in doc["results"]]
        for name in dropped:
            del doc["results"][name]
        checks = {}
        for name in doc["results"]:
            if name not in datasets:
                continue
            ds = datasets[name]
            recorded = doc.get("dataset", {}).get("hash") or doc.get("dataset_hashes", {}).get(name)
            if recorded and recorded != ds.hash:
                raise SystemExit(f"{path}: {name} was measured on data {recorded}, not {ds.hash}")
            share = {s: ds.repeat_share("loo", s) for s in ("valid", "test")}
            if any(share.values()):
                raise SystemExit(f"{path}: {name} has repeat targets {share}: re-run it")
            checks[name] = {"hash": ds.hash, "repeat_share": share}
        if not checks:
            raise SystemExit(f"{path}: none of its datasets was given with --dataset")
        if "dataset" in doc and doc["dataset"]["name"] in checks:
            doc["dataset"]["repeat_share"] = checks[doc["dataset"]["name"]]["repeat_share"]
        if "next_item" in doc.get("tasks", {}):
            doc["tasks"]["next_item"].update(
                protocol="history masked", extra_metrics={"NDCG@10_unmasked": "nothing masked"}
            )
        doc["protocol_check"] = {
            "datasets": checks,
            "note": NOTE.format(git=git),
            **({"removed": {name: DROPPED for name in dropped}} if dropped else {}),
            "command": "python benchmarks/recheck_protocol.py "
            + " ".join([str(path), "--dataset", *args.dataset])
            + (" --drop " + " ".join(args.drop) if args.drop else ""),
        }
        write_json(path, doc)
        print(f"{path}: {sorted(checks)} carried over (no repeat targets)")


if __name__ == "__main__":
    main()
