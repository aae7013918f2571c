"""Names are compared as a person reads them (NFKC, invisible characters removed, whitespace folded, case ignored)
in the export, name maps, mappings and manifests; a near miss is explained with code points."""

import json

import numpy as np
import pytest
import SimpleITK as sitk
from fixtures_data import make_case, write_case_files

from backsplit.datasets.export import ExportRequest, export_dataset
from backsplit.errors import InputError
from backsplit.io.cases import InMemoryCaseSource
from backsplit.io.readers import FileCaseSource, read_name_map
from backsplit.labels.matching import describe_code_points, match_segments, name_key, near_miss
from backsplit.labels.schema import LabelSchema

ZWSP = "\u200b"


def renamed(case, names):
    case.segments = {names.get(k, k): v for k, v in case.segments.items()}
    return case


def test_zero_width_space_name_matches_the_target(tmp_path):
    """Fault 5: 'the target segment is missing (the case has: cyst\u200b, kidney)'."""
    case = renamed(make_case("z"), {"Lesion": "cyst" + ZWSP, "Organ": "kidney"})
    result = export_dataset([InMemoryCaseSource(case)],
                            ExportRequest(tmp_path / "raw", 501, "Z", ["cyst"], ["kidney"], binary_twin=False))
    content = json.loads((result.dataset_dir / "dataset.json").read_text(encoding="utf-8"))
    assert content["labels"] == {"background": 0, "cyst": 1, "kidney": 2}
    assert content["backsplit"]["schema"]["targets"][0]["sources"] == ["cyst" + ZWSP]
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(result.dataset_dir / "labelsTr" / "z.nii.gz")))
    assert np.array_equal(labels == 1, case.segments["cyst" + ZWSP])


@pytest.mark.parametrize("variant", ["Cyst", "cyst" + ZWSP, "\ufeffcyst", "cy\u00adst", " cyst ", "ｃｙｓｔ",
                                     "renal\u00a0cyst", "renal \t cyst", "RENAL\u2003CYST", "cy\u2060st"])
def test_name_key_reads_like_a_person(variant):
    expected = "renal cyst" if "renal" in variant.lower() else "cyst"
    assert name_key(variant) == expected


def test_near_miss_message_shows_code_points(tmp_path):
    cyrillic = "\u0441yst"  # Cyrillic small es, looks like a Latin c
    case = renamed(make_case("c"), {"Lesion": cyrillic})
    with pytest.raises(InputError) as error:
        export_dataset([InMemoryCaseSource(case)],
                       ExportRequest(tmp_path / "raw", 501, "C", ["cyst"], ["Organ", "Vessel"]))
    text = str(error.value)
    assert "target segment is missing" in text and "looks like 'cyst'" in text
    assert "U+0441 CYRILLIC SMALL LETTER ES" in text and "U+0063" in text
    assert near_miss("kidney", ["spleen", "liver"]) is None
    assert describe_code_points("a\u200b") == "U+0061 U+200B ZERO WIDTH SPACE"


def test_names_that_read_alike_collide_within_a_case():
    schema = LabelSchema.create(["cyst"])
    with pytest.raises(InputError, match=r"same name when case is ignored.*U\+200B ZERO WIDTH SPACE"):
        match_segments("x", ["cyst", "Cyst" + ZWSP], schema)
    with pytest.raises(InputError, match="used twice"):
        LabelSchema.create(["cyst", "CYST" + ZWSP])


def test_name_map_mapping_and_manifest_lookups(tmp_path):
    case = make_case("m")
    images, labelmap, names = write_case_files(tmp_path, case, as_labelmap=True)
    table = tmp_path / "names.json"
    table.write_text(json.dumps({str(v): (n + ZWSP if n == "Lesion" else n.upper()) for v, n in names.items()}),
                     encoding="utf-8")
    loaded = FileCaseSource("m", images, labelmap, read_name_map(table)).load()
    result = export_dataset([InMemoryCaseSource(loaded)],
                            ExportRequest(tmp_path / "raw", 501, "M", ["lesion"], ["organ", "vessel"],
                                          binary_twin=False))
    assert result.case_ids == ["m"]
    schema = LabelSchema.create(["cyst"], ["kidney"])
    assert schema.value_of("KIDNEY" + ZWSP) == 2                     # manifests and evaluation look values up
    assert match_segments("m", ["renal\u00a0cyst"], schema, {"Renal  Cyst": "cyst"})["cyst"] == ["renal\u00a0cyst"]
    clean = LabelSchema.create(["cyst" + ZWSP])                       # names are stored without invisible characters
    assert clean.names == ["cyst"]
