"""``backsplit compare``'s picture (issue 22): one legend naming every class with its role and the reference outline,
the paired mean difference written out, support structures drawn (muted) in the BackSplit panel, the binary
baseline and a missed lesion said in words. Tiny arrays and rows; the figure is read before saving (matplotlib,
Agg); no nnU-Net."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import AxesImage

from backsplit.evaluation.compare import comparison_picture
from backsplit.evaluation.compare_figure import comparison_figure, paired_difference
from backsplit.evaluation.evaluate import EvaluationRow
from backsplit.evaluation.slices import SUPPORT_ALPHA, TARGET_ALPHA

CYST, TUMOR, KIDNEY = [0.95, 0.2, 0.15], [0.6, 0.4, 0.8], [0.5, 0.7, 0.5]
TABLE_B = {"0": {"name": "background", "role": "background", "color": [0, 0, 0]},
           "1": {"name": "cyst", "role": "target", "color": CYST},
           "2": {"name": "tumor", "role": "support", "color": TUMOR},
           "3": {"name": "kidney", "role": "support", "color": KIDNEY}}
TABLE_A = {"0": TABLE_B["0"], "1": TABLE_B["1"]}


def rows(dice: list[float]) -> list[EvaluationRow]:
    return [EvaluationRow(f"case{i}", "cyst", 1, {"dice": d, "nsd": min(1.0, d + 0.1), "hd95": 3.0,
                                                  "precision": d, "recall": d, "reference_lesions": 2,
                                                  "detected_lesions": int(d > 0.3), "missed_lesions": 0,
                                                  "false_positive_lesions": 1, "reference_empty": 0,
                                                  "prediction_empty": 0})
            for i, d in enumerate(dice)]


def view() -> dict:
    image = np.full((5, 40, 40), 40.0)
    reference = np.zeros((5, 40, 40), np.uint8)
    reference[:, 5:35, 5:35] = 3
    reference[2, 15:25, 15:25] = 1                        # the largest reference lesion: slice 2
    b = reference.copy()                                  # BackSplit: kidney and cyst found
    b[2, 30:33, 30:33] = 2
    a = np.zeros_like(reference)                          # binary baseline: no lesion at all
    return {"image": image, "spacing": (1.0, 1.0, 3.0), "title": "case case0",
            "labels_reference": reference, "labels_a": a, "labels_b": b,
            "table_reference": TABLE_B, "table_a": TABLE_A, "table_b": TABLE_B}


A, B = rows([0.1, 0.2, 0.3, 0.4, 0.5, 0.6]), rows([0.2, 0.25, 0.45, 0.5, 0.55, 0.7])


@pytest.fixture
def figure():
    import matplotlib.pyplot as plt

    fig = comparison_figure(A, B, ["binary", "BackSplit"], view())
    yield fig
    plt.close(fig)


def test_one_legend_names_every_class_with_its_role_and_the_reference(figure):
    assert len(figure.legends) == 1
    labels = [t.get_text() for t in figure.legends[0].get_texts()]
    for expected in ("cyst: target (lesion)", "tumor: support structure", "kidney: support structure",
                     "reference lesion (outline)", "model A: binary", "model B: BackSplit"):
        assert expected in labels


def test_difference_panel_writes_the_mean_difference_and_its_interval(figure):
    texts = " ".join(t.get_text() for ax in figure.axes for t in ax.texts)
    expected = paired_difference(A, B, "cyst", "dice")
    assert expected["n"] == 6 and expected["mean"] == pytest.approx(np.mean([0.1, 0.05, 0.15, 0.1, 0.05, 0.1]))
    assert f"Dice: mean difference {expected['mean']:+.3f} (95 % CI" in texts
    assert "lesions found" in texts and "false-positive lesions 6 / 6" in texts


def test_too_few_cases_give_no_interval():
    d = paired_difference(A[:3], B[:3], "cyst", "dice")
    assert d["n"] == 3 and np.isnan(d["ci"][0]) and "too few cases for an interval" in d["text"]


def test_support_structures_drawn_muted_in_the_backsplit_panel(figure):
    panels = {ax.get_title().split(" (")[0]: ax for ax in figure.axes if "(slice" in ax.get_title()}
    assert set(panels) == {"reference", "binary", "BackSplit"}
    overlay = [im for im in panels["BackSplit"].get_images() if isinstance(im, AxesImage)][-1].get_array()
    assert overlay[10, 10, 3] == pytest.approx(SUPPORT_ALPHA) and list(overlay[10, 10, :3]) == KIDNEY
    assert overlay[20, 20, 3] == pytest.approx(TARGET_ALPHA) and list(overlay[20, 20, :3]) == CYST
    assert "binary baseline: no support structures" in panels["binary"].get_title()
    assert "no lesion predicted on this slice" in " ".join(t.get_text() for t in panels["binary"].texts)
    assert "(slice 2)" in panels["reference"].get_title()


def test_picture_is_written(tmp_path):
    png = comparison_picture(A, B[:5], ["binary", "BackSplit"], tmp_path / "out" / "c.png", view())
    assert png.is_file() and png.read_bytes()[:4] == b"\x89PNG"


def test_compare_command_draws_the_slice_view_from_files(tmp_path):
    """End to end through ``backsplit compare --case``: real NIfTI files, labels.json beside model B's labelmaps."""
    import json

    import SimpleITK as sitk

    from backsplit.cli import main

    def write(array, path):
        path.parent.mkdir(parents=True, exist_ok=True)
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((0.8, 0.8, 3.0))
        sitk.WriteImage(image, str(path))

    labels = view()
    write(labels["image"].astype(np.int16), tmp_path / "images" / "case0_0000.nii.gz")
    for key, folder in (("reference", "refs"), ("a", "pred_a"), ("b", "pred_b")):
        write(labels[f"labels_{key}"], tmp_path / folder / "case0.nii.gz")
    (tmp_path / "pred_b" / "labels.json").write_text(json.dumps(TABLE_B))
    header = "case_id,target,value,dice,hd95,nsd,precision,recall,reference_lesions,detected_lesions,missed_lesions," \
             "false_positive_lesions,reference_ml,predicted_ml,reference_empty,prediction_empty\n"
    for name, dice in (("a.csv", 0.0), ("b.csv", 0.9)):
        (tmp_path / name).write_text(header + f"case0,cyst,1,{dice},3.0,{dice},1,1,1,1,0,0,1.0,1.0,0,0\n")
    code = main(["compare", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--out", str(tmp_path / "c.png"),
                 "--case", "case0", "--images", str(tmp_path / "images"), "--references", str(tmp_path / "refs"),
                 "--predictions-a", str(tmp_path / "pred_a"), "--predictions-b", str(tmp_path / "pred_b")])
    assert code == 0 and (tmp_path / "c.png").read_bytes()[:4] == b"\x89PNG"
    from backsplit.evaluation.compare import slice_view_for_case

    loaded = slice_view_for_case("case0", tmp_path / "images" / "case0_0000.nii.gz", tmp_path / "refs" / "case0.nii.gz",
                                 tmp_path / "pred_a" / "case0.nii.gz", tmp_path / "pred_b" / "case0.nii.gz", 1)
    assert loaded["table_b"] == TABLE_B and loaded["table_reference"] == TABLE_B   # same numbering: every class
    assert loaded["table_a"] == {"1": {"name": "lesion", "role": "target", "color": [0.95, 0.2, 0.15]}}
    assert loaded["spacing"] == pytest.approx((0.8, 0.8, 3.0)) and int(loaded["reference"].sum()) == 100
