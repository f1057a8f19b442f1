import json

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
