"""``backsplit demo`` into a folder that already holds a demo: refused before anything is written (the cases of the
earlier demo stayed, were rewritten and mixed with the new ones, then the export failed), and --cases 0 is named."""

import pytest

from backsplit.cli import main


def test_demo_into_an_earlier_demo_is_refused_before_writing(tmp_path, capsys):
    out = tmp_path / "demo"
    (out / "cases").mkdir(parents=True)
    mine = out / "cases" / "note.txt"
    mine.write_text("earlier demo")
    code = main(["demo", "--out", str(out), "--cases", "2", "--test-cases", "1", "--stop-after", "export"])
    assert code != 0
    assert "already holds a demo" in capsys.readouterr().err
    assert sorted(p.name for p in (out / "cases").iterdir()) == ["note.txt"]
    assert not (out / "test-cases").exists()


def test_demo_with_zero_cases_names_the_option(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:   # refused where it is parsed (runtime/argtypes.py)
        main(["demo", "--out", str(tmp_path / "d"), "--cases", "0", "--stop-after", "export"])
    assert stop.value.code == 2
    assert "argument --cases: must be >= 1 (got 0)" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
