import numpy as np
import pytest

from backsplit.errors import InputError
from backsplit.labels.matching import match_segments
from backsplit.labels.schema import SUPPORT, TARGET, LabelSchema


def test_values_follow_user_order():
    schema = LabelSchema.create(["cyst", "tumor"], ["kidney", "liver"])
    assert schema.labels_json() == {"background": 0, "cyst": 1, "tumor": 2, "kidney": 3, "liver": 4}
    assert schema.target_values == [1, 2] and schema.support_values == [3, 4]
    assert [c.role for c in schema.classes] == [TARGET, TARGET, SUPPORT, SUPPORT]


def test_earliest_class_wins_overlap():
    schema = LabelSchema.create(["lesion"], ["organ"])
    organ = np.zeros((4, 4, 4), bool)
    organ[1:3, 1:3, 1:3] = True
    lesion = np.zeros_like(organ)
    lesion[1, 1, 1] = True
    labels = schema.merge({"organ": organ, "lesion": lesion}, organ.shape)
    assert labels[1, 1, 1] == 1          # lesion wins over its host organ
    assert labels[2, 2, 2] == 2
    assert labels.sum() == 1 + 2 * 7
    # Order of supports decides between supports too.
    schema2 = LabelSchema.create(["lesion"], ["a", "b"])
    a = np.ones((2, 2, 2), bool)
    b = np.ones((2, 2, 2), bool)
    assert (schema2.merge({"a": a, "b": b}, a.shape) == 2).all()


def test_binary_fold_and_schema():
    schema = LabelSchema.create(["lesion"], ["organ", "vessel"])
    labels = np.array([[[0, 1, 2, 3]]], np.uint8)
    assert schema.fold_to_binary(labels).tolist() == [[[0, 1, 0, 0]]]
    assert schema.binary().labels_json() == {"background": 0, "lesion": 1}
    assert LabelSchema.from_json(schema.to_json()) == schema


@pytest.mark.parametrize("targets,supports,message", [
    ([], ["organ"], "no target"),
    (["Lesion"], ["lesion"], "used twice"),
    (["lesion"], ["Background"], "reserved"),
    (["lesion"], [" "], "empty"),
])
def test_schema_refuses_bad_names(targets, supports, message):
    with pytest.raises(InputError, match=message):
        LabelSchema.create(targets, supports)


def test_matching_is_case_insensitive_with_mapping():
    schema = LabelSchema.create(["cyst"], ["kidney"])
    matched = match_segments("c1", ["Renal Cyst", "KIDNEY left", "Kidney"], schema,
                             {"renal cyst": "Cyst", "kidney left": "kidney"})
    assert matched == {"cyst": ["Renal Cyst"], "kidney": ["KIDNEY left", "Kidney"]}


def test_matching_refuses_collisions_and_bad_mapping():
    schema = LabelSchema.create(["cyst"], ["kidney"])
    with pytest.raises(InputError, match=r"case 'c7'.*'Kidney'.*'kidney '"):
        match_segments("c7", ["Kidney", "kidney "], schema)
    with pytest.raises(InputError, match="not a chosen target"):
        match_segments("c7", ["x"], schema, {"x": "liver"})
