"""Locations: project-relative names for messages and pages."""

from modgraph import paths


def test_relative_names_project_files_without_the_machine(tmp_path, monkeypatch):
    monkeypatch.setenv("MODGRAPH_HOME", str(tmp_path / "project"))
    assert paths.relative(paths.data_dir() / "imagenet" / "val") == "data/imagenet/val"
    assert paths.relative(paths.root()) == "."
    assert paths.relative(tmp_path / "elsewhere.txt") == (tmp_path / "elsewhere.txt").as_posix()
