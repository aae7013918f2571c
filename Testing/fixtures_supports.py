"""Shared pieces of the support-structure tests: lesion-only case folders and a stand-in ``TotalSegmentator``
executable (the organ model of the nnU-Net tests is the tiny model of fixtures_nnunet.py).

TotalSegmentator cannot run here: its weights are downloaded on first use and nothing can be downloaded in the
tests. The stand-in is an executable with TotalSegmentator's command line (``-i -o --ml -ta -d --fast -rs``,
``--list-classes``) that writes a known multi-label image in TotalSegmentator's real output format: a NIfTI with the
input's affine and the class map as a CaretExtension XML label table in the header extension (written with nibabel
exactly as TotalSegmentator's ``nifti_ext_header.add_label_map_to_nifti`` does). Known content: ``liver`` (value 5)
= voxels brighter than 100, ``spleen`` (1) = the first 2x3x3 voxels, ``kidney_right`` (2) = none.
"""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import numpy as np
from fixtures_data import make_case, write_case_files

STANDIN_CLASSES = {1: "spleen", 2: "kidney_right", 3: "kidney_left", 5: "liver"}

STANDIN = r'''#!{python}
"""Stand-in for TotalSegmentator (tests only; see Testing/fixtures_supports.py)."""
import argparse, json, os, subprocess, sys, time
import nibabel as nib
import numpy as np

CLASSES = {classes!r}
parser = argparse.ArgumentParser()
parser.add_argument("-i", dest="input"); parser.add_argument("-o", dest="output")
parser.add_argument("-ml", "--ml", action="store_true"); parser.add_argument("-ta", "--task", default="total")
parser.add_argument("-d", "--device", default="gpu"); parser.add_argument("-f", "--fast", action="store_true")
parser.add_argument("-rs", "--roi_subset", nargs="+"); parser.add_argument("-lc", "--list-classes", dest="list_classes")
args = parser.parse_args()
if args.list_classes:
    print(f"Task '{{args.list_classes}}'  [CT, open license, {{len(CLASSES)}} classes]")
    print("")
    for idx in sorted(CLASSES):
        print(f"{{str(idx).rjust(4)}}  {{CLASSES[idx]}}")
    sys.exit(0)
log = os.environ.get("STANDIN_LOG")
if log:
    with open(log, "a") as handle:
        handle.write(json.dumps(sys.argv[1:]) + "\n")
if os.environ.get("STANDIN_FAIL") and os.environ["STANDIN_FAIL"] in args.input:
    print("ERROR: stand-in failure for " + args.input)
    sys.exit(3)
if os.environ.get("STANDIN_SLEEP"):
    child = subprocess.Popen(["sleep", "120"])
    with open(os.environ["STANDIN_SLEEP"], "w") as handle:
        handle.write(str(child.pid))
    child.wait()
img = nib.load(args.input)
data = img.get_fdata()
labels = np.zeros(data.shape, np.uint8)
labels[data > 100] = 5
labels[:3, :3, :2] = 1          # nibabel's (i, j, k) order: the first 2 slices, 3x3 voxels
label_map = dict(CLASSES)
if args.roi_subset:
    label_map = {{k: v for k, v in label_map.items() if v in args.roi_subset}}
    labels[~np.isin(labels, list(label_map))] = 0
out = nib.Nifti1Image(labels, img.affine)
colors = [[255,0,0],[0,255,0],[0,0,255],[255,255,0],[255,0,255],[0,255,255],[255,128,0],[255,0,128],[128,255,128],[0,128,255],[128,128,128],[185,170,155]]
xmlpre = '<?xml version="1.0" encoding="UTF-8"?> <CaretExtension>  <Date><![CDATA[2013-07-14T05:45:09]]></Date>   <VolumeInformation Index="0">   <LabelTable>'
body = ''
for label_id, label_name in label_map.items():
    rgb = colors[label_id % len(colors)]
    body += f'<Label Key="{{label_id}}" Red="{{rgb[0]/255}}" Green="{{rgb[1]/255}}" Blue="{{rgb[2]/255}}" Alpha="1"><![CDATA[{{label_name}}]]></Label>\n'
xmlpost = '  </LabelTable>  <StudyMetaDataLinkSet>  </StudyMetaDataLinkSet>  <VolumeType><![CDATA[Label]]></VolumeType>   </VolumeInformation></CaretExtension>'
xml = xmlpre + "\n" + body + "\n" + xmlpost + "\n              "
out.header.extensions.append(nib.nifti1.Nifti1Extension(0, bytes(xml, "utf-8")))
nib.save(out, args.output)
print("stand-in TotalSegmentator done")
'''


def write_standin(folder: Path) -> Path:
    """The stand-in executable (a Python script run by this interpreter)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "TotalSegmentator"
    path.write_text(STANDIN.format(python=sys.executable, classes=STANDIN_CLASSES))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP)
    return path


def oblique_direction(degrees: float = 30.0):
    a = np.deg2rad(degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]]).ravel()


def write_lesion_only_cases(folder: Path, n: int = 3, shape=(16, 32, 32), oblique: bool = True,
                            flipped: bool = True) -> list:
    """Cases as a lesion-only user has them: <id>.nii.gz and <id>.seg.nrrd with the segment 'Lesion' only.
    Case 1 is oblique, case 2 stored with flipped axes (another orientation than the training images)."""
    cases = []
    for i in range(n):
        direction = None
        if oblique and i == 1:
            direction = oblique_direction()
        if flipped and i == 2:
            direction = np.diag([-1.0, 1.0, -1.0]).ravel()
        case = make_case(f"case{i}", shape=shape, spacing=(1.0, 1.0, 1.5), origin=(3.0, -2.0, 5.0),
                         direction=direction, seed=10 + i)
        case.segments = {"Lesion": case.segments["Lesion"]}
        case.colors = {"Lesion": (1.0, 0.2, 0.1)}
        write_case_files(folder, case)
        cases.append(case)
    return cases
