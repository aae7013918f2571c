"""TotalSegmentator's multi-label output (``--ml``): one NIfTI labelmap whose class map (value -> class name) is an
XML "CaretExtension" label table in the NIfTI header extension (TotalSegmentator ``nifti_ext_header.py``,
``add_label_map_to_nifti``: ``<Label Key="5" Red=.. Green=.. Blue=.. Alpha="1"><![CDATA[liver]]></Label>``).

Read with the standard library only (gzip, struct, xml): SimpleITK does not expose NIfTI extensions and nibabel is
not bundled everywhere (e.g. 3D Slicer). Layout (NIfTI-1/2 specifications): header of 348 (540) bytes, 4 bytes
"extender" whose first byte says whether extensions follow, then extensions of ``esize`` (int32, multiple of 16),
``ecode`` (int32), ``esize - 8`` bytes of content, up to ``vox_offset``.
"""

from __future__ import annotations

import gzip
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

from backsplit.errors import InputError


def _open(path: Path):
    with open(path, "rb") as handle:
        magic = handle.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def read_header_extensions(path: Path) -> list[tuple[int, bytes]]:
    """The (ecode, content) extensions of a NIfTI-1 or NIfTI-2 file (.nii or .nii.gz); [] when there are none."""
    path = Path(path)
    try:
        with _open(path) as stream:
            head = stream.read(540)
            if len(head) < 348:
                raise InputError("the file is too short to be a NIfTI image", path=str(path))
            for endian in ("<", ">"):
                sizeof_hdr = struct.unpack(endian + "i", head[:4])[0]
                if sizeof_hdr in (348, 540):
                    break
            else:
                raise InputError("the file is not a NIfTI image (header size is neither 348 nor 540)", path=str(path))
            if sizeof_hdr == 348:
                vox_offset = int(struct.unpack(endian + "f", head[108:112])[0])
            else:
                vox_offset = int(struct.unpack(endian + "q", head[168:176])[0])
            rest = stream.read(max(0, vox_offset - len(head))) if vox_offset > len(head) else b""
    except (OSError, EOFError, struct.error) as exc:
        raise InputError(f"the NIfTI header cannot be read ({exc})", path=str(path)) from None
    data = head + rest
    position = sizeof_hdr
    if len(data) < position + 4 or data[position] == 0:
        return []
    position += 4
    extensions = []
    while position + 8 <= min(len(data), max(vox_offset, position)):
        esize, ecode = struct.unpack(endian + "ii", data[position:position + 8])
        if esize < 8:
            break
        extensions.append((ecode, data[position + 8:position + esize]))
        position += esize
    return extensions


def read_label_table(path: Path) -> dict[int, str]:
    """Value -> class name from the CaretExtension label table of a TotalSegmentator multi-label NIfTI.

    Raises InputError when the file has no such table (then it is not a ``--ml`` output of TotalSegmentator)."""
    for _code, content in read_header_extensions(path):
        text = content.rstrip(b"\x00").decode("utf-8", errors="replace").strip()
        if "LabelTable" not in text:
            continue
        try:
            root = ET.fromstring(text)
        except ET.ParseError as exc:
            raise InputError(f"the label table in the NIfTI header cannot be parsed ({exc})", path=str(path)) from None
        table = {}
        for label in root.iter("Label"):
            key = label.get("Key")
            if key is not None and (label.text or "").strip():
                table[int(key)] = label.text.strip()
        table.pop(0, None)
        return table
    raise InputError("the multi-label image has no class map (CaretExtension label table) in its NIfTI header; "
                     "it was not written by TotalSegmentator --ml", path=str(path))
