"""A sheared (gantry-tilted) volume in a real MRML scene (slicer-core) is refused before Apply writes it to NIfTI,
which would silently straighten it; an orthogonal oblique volume is written with its geometry intact."""

import math

import numpy as np
import pytest
from fixtures_slicer import add_volume

from backsplit.errors import InputError


def _ijk_to_ras(k_direction):
    matrix = np.eye(4)
    matrix[:3, 0] = (0.8, 0, 0)
    matrix[:3, 1] = (0, 0.8, 0)
    matrix[:3, 2] = 2.5 * np.asarray(k_direction)
    return matrix


def test_sheared_volume_is_refused_with_the_tilt(slicer_scene, tmp_path):
    from BackSplitSegmentLib.prediction_run import write_inputs

    slicer = slicer_scene.slicer
    tilt = math.radians(15)
    volume = add_volume(slicer, np.zeros((8, 16, 16), np.int16), _ijk_to_ras((0, math.sin(tilt), math.cos(tilt))),
                        name="TiltedCT")
    with pytest.raises(InputError) as error:
        write_inputs(volume, [], tmp_path)
    message = str(error.value)
    assert "TiltedCT" in message and "shear" in message.lower()
    assert not list(tmp_path.iterdir())                     # nothing written


def test_orthogonal_oblique_volume_is_written_unchanged(slicer_scene, tmp_path):
    import SimpleITK as sitk

    from BackSplitSegmentLib.prediction_run import write_inputs

    slicer = slicer_scene.slicer
    angle = math.radians(20)
    matrix = np.eye(4)
    rotation = np.array([[math.cos(angle), -math.sin(angle), 0], [math.sin(angle), math.cos(angle), 0], [0, 0, 1]])
    matrix[:3, :3] = rotation @ np.diag([0.8, 0.8, 2.5])
    data = np.arange(8 * 16 * 16, dtype=np.int16).reshape(8, 16, 16)
    volume = add_volume(slicer, data, matrix, name="ObliqueCT")
    [path] = write_inputs(volume, [], tmp_path)
    image = sitk.ReadImage(path)
    assert np.array_equal(sitk.GetArrayFromImage(image), data)
    np.testing.assert_allclose(image.GetSpacing(), (0.8, 0.8, 2.5), atol=1e-6)
