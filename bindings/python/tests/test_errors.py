"""Bad input raises the exception that fits, with the message the command line prints, and
never takes the interpreter down."""

from __future__ import annotations

from pathlib import Path

import pytest

import convlm
from conftest import SMALL, cli


def test_a_missing_data_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(convlm.MissingFileError) as e:
        convlm.train(data=missing, out=tmp_path / "run", steps=1, progress=False)
    assert isinstance(e.value, FileNotFoundError) and isinstance(e.value, OSError) and isinstance(e.value, convlm.ConvlmError)
    assert str(missing) in str(e.value)
    done = cli("train", "--data", str(missing), "--out", str(tmp_path / "run2"), "--steps", "1", "-q", check=False)
    assert done.returncode == 1 and f"error: {e.value}" in done.stderr
    assert not (tmp_path / "run").exists(), "a failed start writes nothing"
    with pytest.raises(convlm.MissingFileError, match="config.json"):
        convlm.Run(tmp_path / "no-run")


def test_an_unknown_preset(tmp_path: Path) -> None:
    with pytest.raises(convlm.ConfigError) as e:
        convlm.train(config="names-dilatd", out=tmp_path / "run", progress=False)
    assert isinstance(e.value, ValueError)
    assert "`names-dilatd` is neither a file nor a preset (presets: names-mlp" in str(e.value)
    done = cli("train", "--config", "names-dilatd", "--out", str(tmp_path / "run"), check=False)
    assert f"error: {e.value}" in done.stderr


def test_an_unknown_setting(tmp_path: Path) -> None:
    with pytest.raises(convlm.ConfigError) as e:
        convlm.Trainer(out=tmp_path / "run", settings={"modle.channels": 8}, progress=False)
    assert "`modle.channels`: the config has no section `modle`" in str(e.value)
    done = cli("train", "--set", "modle.channels=8", "--out", str(tmp_path / "run"), check=False)
    assert f"error: {e.value}" in done.stderr
    with pytest.raises(convlm.ConfigError, match="channel"):
        convlm.train(out=tmp_path / "run", settings={"model.channel": 8}, progress=False)


def test_a_setting_of_the_wrong_type(tmp_path: Path) -> None:
    with pytest.raises(convlm.ConfigError) as e:
        convlm.train(out=tmp_path / "run", settings={"model.channels": "many"}, progress=False)
    assert "model.channels=many" in str(e.value) and "invalid type" in str(e.value)
    done = cli("train", "--set", "model.channels=many", "--out", str(tmp_path / "run"), check=False)
    assert f"error: {e.value}" in done.stderr
    with pytest.raises(convlm.ConfigError, match="`train.steps`: a value of type object is not a setting"):
        convlm.train(out=tmp_path / "run", settings={"train.steps": object()}, progress=False)
    with pytest.raises(convlm.ConfigError, match="not a finite number"):
        convlm.train(out=tmp_path / "run", settings={"optimizer.lr": float("nan")}, progress=False)
    # Arguments of the wrong Python type are Python's TypeError.
    with pytest.raises(TypeError):
        convlm.train(out=tmp_path / "run", steps="ten", progress=False)  # type: ignore[arg-type]
    with pytest.raises(convlm.ConfigError, match="time-limit"):
        convlm.train(out=tmp_path / "run", time_limit="soon", progress=False)
    with pytest.raises(convlm.ConfigError, match="split"):
        convlm.Trainer(out=tmp_path / "ok", steps=2, progress=False).evaluate("validation")
    assert not (tmp_path / "run").exists()


def test_someone_elses_folder_as_out(tmp_path: Path, names: Path) -> None:
    theirs = tmp_path / "thesis"
    theirs.mkdir()
    (theirs / "chapter1.tex").write_text("keep me")
    with pytest.raises(convlm.FileError) as e:
        convlm.train(data=names, out=theirs, steps=1, progress=False)
    assert "is not empty and is not a convlm run (it holds chapter1.tex" in str(e.value)
    assert (theirs / "chapter1.tex").read_text() == "keep me"
    done = cli("train", "--data", str(names), "--out", str(theirs), "--steps", "1", "-q", check=False)
    assert f"error: {e.value}" in done.stderr
    with pytest.raises(convlm.FileError, match="is not a convlm run"):
        convlm.Trainer(out=theirs, resume=True, progress=False)


def test_a_run_in_use_and_a_changed_resume(tmp_path: Path, names: Path) -> None:
    out = tmp_path / "run"
    t = convlm.Trainer(config="names-dilated", data=names, out=out, steps=20, threads=1, progress=False, settings=SMALL)
    t.step(10)
    with pytest.raises(convlm.FileError, match="is in use"):
        convlm.Trainer(out=out, resume=True, progress=False)
    t.close()
    with pytest.raises(convlm.FileError, match="--resume keeps the settings of the run's config.json"):
        convlm.Trainer(out=out, resume=True, seed=99, progress=False)
    with pytest.raises(convlm.ConfigError, match="--resume needs --out"):
        convlm.train(resume=True, progress=False)
    with pytest.raises(convlm.ConfigError, match="exclude each other"):
        convlm.train(out=tmp_path / "x", steps=3, time_limit=60, progress=False)
    with pytest.raises(convlm.FileError, match="already holds a run"):
        convlm.train(data=names, out=out, steps=1, progress=False)
    # force moves it aside, as --force does.
    convlm.train(config="names-dilated", data=names, out=out, steps=6, threads=1, force=True, progress=False, settings=SMALL)
    assert (tmp_path / "run.old-1" / "run.json").is_file()
