"""``backsplit compare --case``: a case that was not evaluated, or a slice view with inputs missing, is an error that
says what to give (it was a StopIteration traceback, or a picture silently without the slice view)."""

from backsplit.cli import main

HEADER = ("case_id,target,value,dice,hd95,nsd,precision,recall,reference_lesions,detected_lesions,missed_lesions,"
          "false_positive_lesions,reference_ml,predicted_ml,reference_empty,prediction_empty\n")


def _evaluations(tmp_path):
    paths = []
    for name, dice in (("a.csv", 0.5), ("b.csv", 0.6)):
        path = tmp_path / name
        path.write_text(HEADER + f"c1,cyst,1,{dice},3.0,0.7,0.5,0.5,1,1,0,0,1.0,1.0,0,0\n", encoding="utf-8")
        paths.append(str(path))
    return paths


def test_unknown_case_lists_the_evaluated_cases(tmp_path, capsys):
    a, b = _evaluations(tmp_path)
    folder = str(tmp_path)
    code = main(["compare", a, b, "--out", str(tmp_path / "c.png"), "--case", "c9", "--images", folder,
                 "--references", folder, "--predictions-a", folder, "--predictions-b", folder])
    err = capsys.readouterr().err
    assert code != 0 and "Traceback" not in err
    assert "case 'c9' is not in" in err and "c1" in err


def test_case_without_the_other_slice_inputs_names_them(tmp_path, capsys):
    a, b = _evaluations(tmp_path)
    code = main(["compare", a, b, "--out", str(tmp_path / "c.png"), "--case", "c1"])
    assert code != 0
    assert "missing: --images, --references, --predictions-a, --predictions-b" in capsys.readouterr().err
    assert not (tmp_path / "c.png").exists()


def test_plain_comparison_still_works(tmp_path, capsys):
    a, b = _evaluations(tmp_path)
    assert main(["compare", a, b, "--out", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").is_file()
