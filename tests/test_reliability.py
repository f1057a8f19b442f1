"""Reliability (issue 11): options act or are refused, --overwrite never deletes what guim did not
write, outputs respect the umask, user and environment failures are one line naming the thing,
interrupted writes leave nothing behind, and a failed checkpoint write keeps the previous one."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import polars as pl
import pytest
import torch
from typer.testing import CliRunner

from guim.cli import app
from guim.io import _host, atomic_dir, atomic_file, stale_temporaries, sweep_stale, write_json

ROWS = [(f"u{k % 4}", f"i{k % 7}", 1_600_000_000_000 + 1000 * k) for k in range(40)]


def _csv(path: Path, sep: str = ",", rows=ROWS, ts_scale: int = 1) -> Path:
    lines = [sep.join(("user_id", "item_id", "timestamp"))]
    lines += [sep.join((u, i, str(t // ts_scale))) for u, i, t in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


def _cli(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


def _one_line_error(result, *names) -> str:
    """The command failed with exit status 2 and one 'error:' line naming each of `names`."""
    out = result.output
    assert result.exit_code == 2, out
    assert "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    for name in names:
        assert str(name) in errors[0], errors[0]
    return errors[0]


def _no_leftovers(folder: Path) -> None:
    hidden = [p.name for p in folder.iterdir() if p.name.startswith(".")]
    assert not hidden, hidden


def _timestamps(dataset: Path) -> list[int]:
    return sorted(pl.read_parquet(dataset / "events.parquet")["timestamp"].to_list())


# ---- 1. options act or are refused --------------------------------------------------------


def test_time_unit_acts_without_a_mapping_option(tmp_path):
    log = tmp_path / "clicks.parquet"
    pl.DataFrame(ROWS, schema=["user_id", "item_id", "timestamp"], orient="row").write_parquet(log)
    assert _cli("prepare", log, "--out", tmp_path / "d", "--time-unit", "ms").exit_code == 0
    expected = sorted(t // 1000 for _, _, t in ROWS)
    assert _timestamps(tmp_path / "d") == expected
    seconds = _csv(tmp_path / "s.csv", ts_scale=1000)
    assert _cli("prepare", seconds, "--out", tmp_path / "s").exit_code == 0
    assert _timestamps(tmp_path / "s") == expected


def test_time_unit_refused_where_it_means_nothing(tmp_path):
    log = _csv(tmp_path / "clicks.csv")
    _one_line_error(
        _cli("prepare", log, "--out", tmp_path / "d", "--time-unit", "days"), "--time-unit", "days"
    )
    s3rec = tmp_path / "Toy.txt"
    s3rec.write_text("1 1 2 3\n2 2 3 4\n")
    _one_line_error(
        _cli("prepare", s3rec, "--out", tmp_path / "d", "--time-unit", "ms"), "--time-unit"
    )
    dated = tmp_path / "dated.parquet"
    frame = pl.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "y"], "timestamp": [1, 2]})
    frame.with_columns(pl.from_epoch("timestamp")).write_parquet(dated)
    _one_line_error(
        _cli("prepare", dated, "--out", tmp_path / "d", "--time-unit", "ms"),
        "--time-unit",
        str(dated),
    )
    assert not (tmp_path / "d").exists()
    _no_leftovers(tmp_path)


def test_time_unit_acts_on_recbole_files(tmp_path):
    folder = tmp_path / "toy"
    folder.mkdir()
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    lines += [f"{u}\t{i}\t{t}" for u, i, t in ROWS]
    (folder / "toy.inter").write_text("\n".join(lines) + "\n")
    assert _cli("prepare", folder, "--out", tmp_path / "d", "--time-unit", "ms").exit_code == 0
    assert _timestamps(tmp_path / "d") == sorted(t // 1000 for _, _, t in ROWS)
    _one_line_error(
        _cli("prepare", folder, "--out", tmp_path / "e", "--separator", ";"), "--separator"
    )


def test_separator_acts_without_a_mapping_option(tmp_path):
    colon = _csv(tmp_path / "colon.csv", sep=":")
    comma = _csv(tmp_path / "comma.csv")
    assert _cli("prepare", colon, "--out", tmp_path / "a", "--separator", ":").exit_code == 0
    assert _cli("prepare", comma, "--out", tmp_path / "b").exit_code == 0
    a, b = (json.loads((tmp_path / d / "stats.json").read_text()) for d in "ab")
    assert a["hash"] == b["hash"]
    tabs = _csv(tmp_path / "tabs.txt", sep="\t")
    assert _cli("prepare", tabs, "--out", tmp_path / "c", "--separator", "tab").exit_code == 0


def test_separator_refused_where_it_means_nothing(tmp_path):
    log = tmp_path / "clicks.parquet"
    pl.DataFrame(ROWS, schema=["user_id", "item_id", "timestamp"], orient="row").write_parquet(log)
    _one_line_error(
        _cli("prepare", log, "--out", tmp_path / "d", "--separator", ";"), "--separator"
    )
    csv = _csv(tmp_path / "clicks.csv")
    _one_line_error(
        _cli("prepare", csv, "--out", tmp_path / "d", "--separator", "::"), "--separator"
    )
    _one_line_error(
        _cli("prepare", csv, "--out", tmp_path / "d", "--format", "s3rec", "--items", csv),
        "--items",
    )
    assert not (tmp_path / "d").exists()


# ---- 2. --overwrite replaces only what guim wrote -----------------------------------------


def test_overwrite_never_deletes_an_input(tmp_path):
    shop = tmp_path / "shop"
    shop.mkdir()
    log = _csv(shop / "clicks.csv")
    (shop / "notes.txt").write_text("keep me")
    for out in (shop, log, tmp_path):
        _one_line_error(_cli("prepare", log, "--out", out, "--overwrite"), out)
    assert log.exists() and (shop / "notes.txt").read_text() == "keep me"
    _no_leftovers(shop)


def test_out_inside_an_input_directory_is_refused(tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    pl.DataFrame(ROWS, schema=["user_id", "item_id", "timestamp"], orient="row").write_parquet(
        shards / "part-0.parquet"
    )
    _one_line_error(_cli("prepare", shards, "--out", shards / "dataset"), "inside")
    assert sorted(p.name for p in shards.iterdir()) == ["part-0.parquet"]


def test_overwrite_replaces_a_dataset_but_nothing_else(tmp_path):
    log = _csv(tmp_path / "clicks.csv")
    out = tmp_path / "d"
    assert _cli("prepare", log, "--out", out).exit_code == 0
    _one_line_error(_cli("prepare", log, "--out", out), out, "--overwrite")
    assert _cli("prepare", log, "--out", out, "--overwrite", "--seed", "3").exit_code == 0
    assert json.loads((out / "stats.json").read_text())["config"]["seed"] == 3
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    (mine / "stats.json").write_text('{"something": "else"}')
    _one_line_error(_cli("prepare", log, "--out", mine, "--overwrite"), mine, "not a dataset")
    assert (mine / "thesis.tex").read_text() == "years of work"
    afile = tmp_path / "afile"
    afile.write_text("x")
    _one_line_error(_cli("prepare", log, "--out", afile, "--overwrite"), afile)
    assert afile.read_text() == "x"
    _no_leftovers(tmp_path)


def test_synth_overwrite_replaces_only_a_shop(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep").write_text("x")
    _one_line_error(_cli("synth", "--out", mine, "--size", "tiny", "--overwrite"), mine)
    assert (mine / "keep").exists()


# ---- 5. permissions follow the umask -----------------------------------------------------


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_outputs_follow_the_umask(tmp_path, mask):
    from guim.checkpoint import save_weights

    log = _csv(tmp_path / "clicks.csv")
    old = os.umask(mask)
    try:
        assert _cli("prepare", log, "--out", tmp_path / "d").exit_code == 0
        write_json(tmp_path / "x.json", {"a": 1})
        save_weights(tmp_path / "w.safetensors", {"w": torch.zeros(3)})
        with atomic_file(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    paths = [tmp_path / "d", *(tmp_path / "d").rglob("*")]
    paths += [tmp_path / n for n in ("x.json", "w.safetensors", "f.txt")]
    for p in paths:
        expected = (0o777 if p.is_dir() else 0o666) & ~mask
        assert p.stat().st_mode & 0o777 == expected, (p, oct(p.stat().st_mode))


# ---- 6. one line, naming the thing ---------------------------------------------------------


def test_temporal_option_is_named(tmp_path):
    log = _csv(tmp_path / "clicks.csv")
    for bad in ("0.8", "a,b", "0.9,0.8", "0,1", "0.5,0.6,0.7"):
        _one_line_error(
            _cli("prepare", log, "--out", tmp_path / "d", "--temporal", bad), "--temporal"
        )
    _one_line_error(
        _cli("prepare", log, "--out", tmp_path / "d", "--cold-fraction", "2"), "--cold-fraction"
    )


def test_out_through_a_file(tmp_path):
    log = _csv(tmp_path / "clicks.csv")
    _one_line_error(_cli("prepare", log, "--out", log.parent / "clicks.csv" / "d"), "is a file")
    _one_line_error(_cli("synth", "--out", log / "shop", "--size", "tiny"), "is a file")


def test_unwritable_output_parent(tmp_path, monkeypatch):
    log = _csv(tmp_path / "clicks.csv")

    def denied(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(dir))

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    _one_line_error(_cli("prepare", log, "--out", tmp_path / "ro" / "d"), "permission denied", "ro")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_output_parent(tmp_path):
    log = _csv(tmp_path / "clicks.csv")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        _one_line_error(_cli("prepare", log, "--out", ro / "d"), "permission denied", ro)
    finally:
        ro.chmod(0o755)


def _fake_run(tmp_path: Path) -> Path:
    from guim.config import Config

    run = tmp_path / "run"
    run.mkdir()
    write_json(run / "config.json", Config().to_dict())
    from guim.checkpoint import save_weights

    save_weights(run / "model.safetensors", {"w": torch.randn(50, 8)})
    return run


def test_truncated_weights_are_named(tmp_path):
    import guim
    from guim.checkpoint import load_weights
    from guim.errors import CheckpointError

    run = _fake_run(tmp_path)
    weights = run / "model.safetensors"
    data = weights.read_bytes()
    for size in (0, 7, 100, len(data) - 1):
        weights.write_bytes(data[:size])
        with pytest.raises(CheckpointError, match=str(weights)):
            load_weights(weights)
        with pytest.raises(CheckpointError, match=str(weights)):
            guim.load_run(run)
        _one_line_error(_cli("eval", run), weights)


def test_corrupt_config_is_named(tmp_path):
    from guim.config import ConfigError, config_from_json

    run = _fake_run(tmp_path)
    for text in ('{"model": ', "\xff\xfe", "[1, 2]"):
        (run / "config.json").write_text(text, encoding="latin-1")
        with pytest.raises(ConfigError, match=str(run / "config.json")):
            config_from_json(run / "config.json")
        _one_line_error(_cli("eval", run), run / "config.json")


def test_real_bugs_keep_their_traceback(tmp_path, monkeypatch):
    import guim.data.prepare as prepare_module

    def bug(*args, **kwargs):
        raise ValueError("a bug, not a user error")

    monkeypatch.setattr(prepare_module, "prepare", bug)
    result = _cli("prepare", _csv(tmp_path / "clicks.csv"), "--out", tmp_path / "d")
    assert isinstance(result.exception, ValueError) and result.exit_code == 1


# ---- 7. leftovers ----------------------------------------------------------------------------


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_stale_temporaries_are_swept(tmp_path):
    out = tmp_path / "d"
    dead = _dead_pid()
    (tmp_path / f".d.{dead}.abc123.tmp").mkdir()
    (tmp_path / f".d.{dead}.abc123.tmp" / "events.parquet").write_bytes(b"partial")
    (tmp_path / f".d.old-{dead}").mkdir()
    live = tmp_path / f".d.{os.getpid()}.xyz.tmp"
    live.mkdir()
    other = tmp_path / f".dd.{dead}.abc.tmp"  # another target's
    other.mkdir()
    here = f".d.{dead}@{_host()}.q1.tmp"  # the form atomic_dir writes: <pid>@<host>
    (tmp_path / here).mkdir()
    foreign = tmp_path / f".d.{dead}@{'0' * 8 if _host() != '0' * 8 else '1' * 8}.q2.tmp"
    foreign.mkdir()  # another machine's PID means nothing here: never judged dead
    out.mkdir()  # the target exists, so the .old- copy is garbage
    stale = {p.name for p in stale_temporaries(out)}
    assert stale == {f".d.{dead}.abc123.tmp", f".d.old-{dead}", here}
    sweep_stale(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".dd." + f"{dead}.abc.tmp", live.name, foreign.name, "d"]
    )


def test_a_kill_between_the_two_renames_loses_nothing(tmp_path):
    dead = _dead_pid()
    old = tmp_path / f".d.old-{dead}"
    old.mkdir()
    (old / "stats.json").write_text("{}")
    (tmp_path / f".d.{dead}.abc.tmp").mkdir()
    sweep_stale(tmp_path / "d")
    assert (tmp_path / "d" / "stats.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_sigterm_removes_the_temporary_directory(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        from guim.io import atomic_dir
        with atomic_dir({str(tmp_path / "d")!r}) as tmp:
            (tmp / "part").write_bytes(b"x" * 1000)
            print("ready", flush=True)
            time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


def test_a_failed_block_leaves_the_old_directory(tmp_path):
    out = tmp_path / "d"
    out.mkdir()
    (out / "keep").write_text("x")
    with pytest.raises(RuntimeError), atomic_dir(out, overwrite=True) as tmp:
        (tmp / "new").write_text("y")
        raise RuntimeError
    assert [p.name for p in tmp_path.iterdir()] == ["d"] and (out / "keep").exists()


# ---- checkpoints: a full disk keeps the previous checkpoint --------------------------------


def _training_state(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(5, 3)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(7, 5)).sum().backward()
    opt.step()
    return model, {"adam": opt}


@pytest.mark.parametrize("fail_at", [1, 2, 3, 5])
@pytest.mark.parametrize("same_epoch", [False, True])
def test_disk_full_keeps_the_previous_checkpoint(tmp_path, monkeypatch, fail_at, same_epoch):
    import guim.checkpoint as ckpt_module
    from guim.checkpoint import load_checkpoint, save_checkpoint

    model, opts = _training_state(0)
    best = {k: v.clone() for k, v in model.state_dict().items()}
    save_checkpoint(tmp_path, 1, model, best, opts, {"step": 10})
    saved = {k: v.clone() for k, v in model.state_dict().items()}

    real_save, calls = ckpt_module.save_file, []

    def full_disk(tensors, filename, *args, **kwargs):
        calls.append(filename)
        if len(calls) == fail_at:
            Path(filename).write_bytes(b"\0" * 10)  # half written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device", filename)
        return real_save(tensors, filename, *args, **kwargs)

    real_write = ckpt_module.write_json

    def full_disk_json(path, obj):
        calls.append(str(path))
        if len(calls) == fail_at:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_write(path, obj)

    monkeypatch.setattr(ckpt_module, "save_file", full_disk)
    monkeypatch.setattr(ckpt_module, "write_json", full_disk_json)
    model2, opts2 = _training_state(1)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(tmp_path, 1 if same_epoch else 2, model2, best, opts2, {"step": 20})
    monkeypatch.undo()

    fresh, fresh_opts = _training_state(2)
    state, best_back, _ = load_checkpoint(tmp_path, fresh, fresh_opts)
    assert state["epoch"] == 1 and state["step"] == 10
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, saved[k])
    assert all(torch.equal(best_back[k], best[k]) for k in best)
    root = tmp_path / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["epoch-0001", "latest.json"]
    assert not [p for p in (root / "epoch-0001").iterdir() if p.name.startswith(".")]


def test_checkpoint_of_the_same_epoch_replaces_the_published_one(tmp_path):
    from guim.checkpoint import load_checkpoint, save_checkpoint

    model, opts = _training_state(0)
    save_checkpoint(tmp_path, 3, model, model.state_dict(), opts, {"step": 1})
    model2, opts2 = _training_state(1)
    save_checkpoint(tmp_path, 3, model2, model2.state_dict(), opts2, {"step": 2})
    fresh, fresh_opts = _training_state(2)
    state, _, _ = load_checkpoint(tmp_path, fresh, fresh_opts)
    assert state["step"] == 2
    assert torch.equal(fresh.weight, model2.weight)
    assert len(list((tmp_path / "checkpoints").glob("epoch-*"))) == 1


@pytest.mark.parametrize(
    "error, shown",
    [
        (OSError(errno.ENOSPC, "No space left on device", "/data/x"), "/data/x: No space left"),
        (PermissionError(errno.EACCES, "Permission denied", "/ro/d"), "/ro/d: Permission denied"),
        (FileExistsError(errno.EEXIST, "File exists", "a/b"), "a/b: File exists"),
        (FileNotFoundError("runs/x is not a finished run"), "runs/x is not a finished run"),
    ],
)
def test_environment_errors_are_one_line(error, shown, capsys):
    import typer

    from guim.cli import friendly_errors

    @friendly_errors
    def command():
        raise error

    with pytest.raises(typer.Exit) as info:
        command()
    assert info.value.exit_code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and shown in lines[0], lines


@pytest.mark.parametrize(
    "error", [ValueError("bug"), KeyError("k"), OSError(errno.EIO, "I/O error"), TypeError("t")]
)
def test_other_errors_propagate(error):
    from guim.cli import friendly_errors

    @friendly_errors
    def command():
        raise error

    with pytest.raises(type(error)):
        command()


def test_time_unit_acts_on_merrec_and_is_refused_for_datetimes(tmp_path):
    from guim.data.loaders import load_raw
    from guim.data.schema import DataError

    rows = {
        "user_id": [1, 1, 2, 2, 2],
        "item_id": [10, 11, 10, 12, 11],
        "stime": [5_000, 9_000, 1_000, 2_000, 3_500],  # milliseconds
        "event_id": ["item_view"] * 5,
    }
    numeric = tmp_path / "numeric.parquet"
    pl.DataFrame(rows).write_parquet(numeric)
    raw = load_raw(numeric, time_unit="ms")
    assert raw.format == "merrec"
    assert raw.events.collect()["timestamp"].to_list() == [5, 9, 1, 2, 3]
    dated = tmp_path / "dated.parquet"
    pl.DataFrame(rows).with_columns(pl.from_epoch("stime", "ms")).write_parquet(dated)
    with pytest.raises(DataError, match="--time-unit ms"):
        load_raw(dated, time_unit="ms")
