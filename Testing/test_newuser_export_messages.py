"""Export errors on the command line name the command-line option that fixes them (not only the panel's wording)."""

from fixtures_data import make_case, write_case_files

from backsplit.cli import main


def _folder(tmp_path):
    folder = tmp_path / "my_cases"
    for i in range(2):
        write_case_files(folder, make_case(f"case{i}", seed=i))
    return folder


def test_missing_support_names_missing_as_absent(tmp_path, capsys):
    folder = _folder(tmp_path)
    case = make_case("case2", seed=2)
    del case.segments["Vessel"]             # missing in one case only: --missing-as-absent is the fix
    write_case_files(folder, case)
    code = main(["export", "--folder", str(folder), "--targets", "lesion", "--supports", "vessel",
                 "--out", str(tmp_path / "raw"), "--id", "7", "--name", "T", "--quiet"])
    assert code != 0
    assert "--missing-as-absent" in capsys.readouterr().err


def test_existing_dataset_id_names_overwrite(tmp_path, capsys):
    folder = _folder(tmp_path)
    args = ["export", "--folder", str(folder), "--targets", "lesion", "--out", str(tmp_path / "raw"),
            "--id", "7", "--name", "T", "--quiet"]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) != 0
    assert "(--overwrite)" in capsys.readouterr().err


def test_train_with_a_missing_dataset_folder_is_refused_at_once(tmp_path, capsys):
    work = tmp_path / "work"
    code = main(["train", str(tmp_path / "Dataset509_Typo"), "--work-dir", str(work)])
    assert code != 0
    assert "dataset folder does not exist" in capsys.readouterr().err
    assert not work.exists()  # no job folder, no child process for a typo


def test_labelmaps_without_a_name_map_ask_for_names(tmp_path, capsys):
    folder = tmp_path / "lm"
    for i in range(2):
        write_case_files(folder, make_case(f"case{i}", seed=i), as_labelmap=True)
    code = main(["export", "--folder", str(folder), "--targets", "lesion", "--out", str(tmp_path / "raw"),
                 "--id", "7", "--name", "T", "--quiet"])
    assert code != 0
    assert "name their values with --names" in capsys.readouterr().err
