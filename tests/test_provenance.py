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
    # a re-run of the same dataset replaces it; without merge the file is replaced
    write_results(path, {"lastfm": {"guim": {"NDCG@10": 0.3}}}, "cmd c", merge=True)
    assert json.loads(path.read_text())["results"]["lastfm"]["guim"]["NDCG@10"] == 0.3
    write_results(path, {"lastfm": {"guim": {"NDCG@10": 0.2}}}, "cmd d")
    assert list(json.loads(path.read_text())["results"]) == ["lastfm"]
