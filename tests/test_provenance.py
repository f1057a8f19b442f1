import json
import subprocess
import sys
from pathlib import Path

import pytest

from guim import provenance
from guim.provenance import write_results


def test_write_results_shape(tmp_path):
    path = write_results(tmp_path / "r.json", {"beauty": {"guim": {"NDCG@10": 0.5}}}, "cmd a")
    doc = json.loads(path.read_text())
    assert doc["command"] == "cmd a"
    assert doc["results"] == {"beauty": {"guim": {"NDCG@10": 0.5}}}
    assert doc["machine"] and doc["git"]


def test_merge_keeps_other_datasets_and_records_both_commands(tmp_path):
    path = tmp_path / "r.json"
    write_results(path, {"beauty": {"guim": {"NDCG@10": 0.5}}}, "cmd a", note="x", o={"beauty": 1})
    write_results(
        path, {"lastfm": {"guim": {"NDCG@10": 0.4}}}, "cmd b", merge=True, o={"lastfm": 2}
    )
    doc = json.loads(path.read_text())
    assert doc["results"] == {
        "beauty": {"guim": {"NDCG@10": 0.5}},
        "lastfm": {"guim": {"NDCG@10": 0.4}},
    }
    assert doc["command"] == "cmd a && cmd b"
    assert doc["note"] == "x"
    assert doc["o"] == {"beauty": 1, "lastfm": 2}  # per-dataset extras merge too
    # the same command writing again (after each of its runs) is recorded once
    write_results(path, {"lastfm": {"guim": {"NDCG@10": 0.45}}}, "cmd b", merge=True)
    assert json.loads(path.read_text())["command"] == "cmd a && cmd b"
    # a re-run of the same dataset replaces it; without merge the file is replaced
    write_results(path, {"lastfm": {"guim": {"NDCG@10": 0.3}}}, "cmd c", merge=True)
    assert json.loads(path.read_text())["results"]["lastfm"]["guim"]["NDCG@10"] == 0.3
    write_results(path, {"lastfm": {"guim": {"NDCG@10": 0.2}}}, "cmd d")
    assert list(json.loads(path.read_text())["results"]) == ["lastfm"]


def test_merge_replacing_every_dataset_keeps_the_other_keys(tmp_path):
    path = tmp_path / "r.json"
    extras = {"note": "x", "o": {"beauty": 1, "all": 3}, "p": {"beauty": 4}}
    write_results(path, {"beauty": {"guim": {"NDCG@10": 0.5}}}, "cmd a", **extras)
    write_results(path, {"beauty": {"guim": {"NDCG@10": 0.6}}}, "cmd b", merge=True, o={"x": 2})
    doc = json.loads(path.read_text())
    assert doc["results"] == {"beauty": {"guim": {"NDCG@10": 0.6}}}
    assert doc["command"] == "cmd b"  # the first invocation's figures are all replaced
    assert doc["note"] == "x"
    # per-dataset extras of the re-measured dataset do not outlive its old figures
    assert doc["o"] == {"all": 3, "x": 2}
    assert doc["p"] == {}


def test_current_command_names_the_thread_variables(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/x/.venv/bin/guim", "bench", "--out", "runs/a b"])
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    assert provenance.current_command() == "guim bench --out 'runs/a b'"
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert provenance.current_command() == "OMP_NUM_THREADS=2 guim bench --out 'runs/a b'"


def test_cpu_watch_counts_what_other_processes_used(monkeypatch):
    # the machine's busy seconds grow by 13, this process's by 3: others used 10
    busy, own = iter([100.0, 113.0]), iter([50.0, 53.0])
    monkeypatch.setattr(provenance, "_busy_cpu_seconds", lambda: next(busy))
    monkeypatch.setattr(provenance, "_own_cpu_seconds", lambda: next(own))
    clock = iter([1000.0, 1020.0])
    monkeypatch.setattr(provenance, "_now", lambda: next(clock))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    c = provenance.CpuWatch().read(train_wall_seconds=7.5)
    assert c["wall_seconds"] == 20.0 and c["own_cpu_seconds"] == 3.0
    assert c["other_cpu_seconds"] == 10.0 and c["other_cores_mean"] == 0.5
    assert c["alone"] is False and c["train_wall_seconds"] == 7.5
    assert c["env"]["OMP_NUM_THREADS"] == "2" and c["torch_threads"] >= 1
    # under ALONE_CORES of other use the run counts as alone; no /proc/stat: not measured
    busy, own = iter([100.0, 103.5]), iter([50.0, 53.0])
    clock = iter([1000.0, 1020.0])
    c = provenance.CpuWatch().read()
    assert c["other_cpu_seconds"] == 0.5 and c["other_cores_mean"] == 0.025 and c["alone"]
    monkeypatch.setattr(provenance, "_busy_cpu_seconds", lambda: None)
    own, clock = iter([50.0, 53.0]), iter([1000.0, 1020.0])
    c = provenance.CpuWatch().read()
    assert c["other_cpu_seconds"] is None and c["alone"] is None


@pytest.mark.skipif(not Path("/proc/stat").exists(), reason="needs Linux /proc/stat")
def test_cpu_watch_sees_a_process_it_does_not_wait_for():
    # a child spinning a core for a second is "another process" while it is not waited for
    watch = provenance.CpuWatch()
    spin = (
        "import time\nt = time.process_time()\nwhile time.process_time() - t < 1.0: pass\n"
        "print('done', flush=True)\ninput()\n"  # stays alive (unreaped) until told to go
    )
    child = subprocess.Popen(
        [sys.executable, "-c", spin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline() == "done\n"  # blocks: this process stays idle
        seen = watch.read()
    finally:
        child.communicate("\n", timeout=60)
    assert seen["other_cpu_seconds"] >= 0.8  # the child's second (and whatever else ran)
    assert seen["own_cpu_seconds"] < 0.5
    assert seen["wall_seconds"] >= 1.0
