"""What decides whether a build reruns dbt's unit tests (flow.state.unit_tested): any model,
yml or macro of the project, not only mlsm's generated files; never where the project lives."""

from __future__ import annotations

import shutil

from mlsm_py.flow.state import unit_tested


def _project(root):
    (root / "models" / "scores").mkdir(parents=True)
    (root / "models" / "features").mkdir(parents=True)
    (root / "macros").mkdir()
    (root / "dbt_project.yml").write_text("name: p\n")
    (root / "models" / "scores" / "winners.sql").write_text("select 1 as x\n")
    (root / "models" / "features" / "_features.yml").write_text("unit_tests: []\n")
    (root / "macros" / "m.sql").write_text("{% macro m() %}1{% endmacro %}\n")
    return root


def test_same_files_same_sha_wherever_the_project_is(tmp_path):
    a = _project(tmp_path / "a")
    package = tmp_path / "package"
    package.mkdir()
    (package / "x.sql").write_text("{% macro x() %}{% endmacro %}\n")
    b = tmp_path / "elsewhere" / "b"
    shutil.copytree(a, b)
    assert unit_tested(a, [package]) == unit_tested(b, [package])


def test_a_change_anywhere_in_models_macros_or_the_package_changes_it(tmp_path):
    root = _project(tmp_path / "p")
    package = tmp_path / "package"
    package.mkdir()
    (package / "x.sql").write_text("{% macro x() %}{% endmacro %}\n")
    before = unit_tested(root, [package])
    edits = [
        root / "models" / "features" / "_features.yml",  # the team's own unit tests
        root / "models" / "scores" / "winners.sql",
        root / "macros" / "m.sql",
        root / "dbt_project.yml",
        package / "x.sql",
    ]
    for f in edits:
        old = f.read_text()
        f.write_text(old + "-- edited\n")
        assert unit_tested(root, [package]) != before, f
        f.write_text(old)
        assert unit_tested(root, [package]) == before, f


def test_a_file_moved_between_models_and_macros_changes_it(tmp_path):
    # The last file below models/ becomes the first below macros/, under the same name: the
    # bytes hashed in order are the same unless each file says which base it is under.
    root = tmp_path / "p"
    (root / "models").mkdir(parents=True)
    (root / "macros").mkdir()
    (root / "models" / "same.sql").write_text("{% macro same() %}2{% endmacro %}\n")
    before = unit_tested(root, [])
    shutil.move(root / "models" / "same.sql", root / "macros" / "same.sql")
    assert unit_tested(root, []) != before
