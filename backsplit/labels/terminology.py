"""Standard terminology (DICOM / SNOMED CT codes) for segment names, in 3D Slicer's terminology-entry format.

Slicer keeps a segment's meaning in its ``TerminologyEntry`` tag::

    <context>~<category scheme^code^meaning>~<type scheme^code^meaning>~<type modifier>~<anatomic context>~
    <anatomic region>~<anatomic region modifier>

A predicted segment gets the terminology of the segment it was trained from (kept in the export when the source
segmentation had one), else the entry of a well-known name below, else none. Pure functions, no Slicer needed.
"""

from __future__ import annotations

import re
from typing import Mapping, Optional

CATEGORY_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
ANATOMY_CONTEXT = "Anatomic codes - DICOM master list"

ANATOMICAL_STRUCTURE = ("SCT", "123037004", "Anatomical Structure")
MORPHOLOGICALLY_ALTERED = ("SCT", "49755003", "Morphologically Altered Structure")
TISSUE = ("SCT", "85756007", "Tissue")

# name (lower case, singular) -> (category, type); codes from SNOMED CT as used by DICOM and Slicer's lists
KNOWN_TYPES: dict[str, tuple[tuple[str, str, str], tuple[str, str, str]]] = {
    "kidney": (ANATOMICAL_STRUCTURE, ("SCT", "64033007", "Kidney")),
    "liver": (ANATOMICAL_STRUCTURE, ("SCT", "10200004", "Liver")),
    "spleen": (ANATOMICAL_STRUCTURE, ("SCT", "78961009", "Spleen")),
    "pancreas": (ANATOMICAL_STRUCTURE, ("SCT", "15776009", "Pancreas")),
    "lung": (ANATOMICAL_STRUCTURE, ("SCT", "39607008", "Lung")),
    "adrenal gland": (ANATOMICAL_STRUCTURE, ("SCT", "23451007", "Adrenal gland")),
    "aorta": (ANATOMICAL_STRUCTURE, ("SCT", "15825003", "Aorta")),
    "inferior vena cava": (ANATOMICAL_STRUCTURE, ("SCT", "64131007", "Inferior vena cava")),
    "prostate": (ANATOMICAL_STRUCTURE, ("SCT", "41216001", "Prostate")),
    "bladder": (ANATOMICAL_STRUCTURE, ("SCT", "89837001", "Urinary bladder")),
    "rectum": (ANATOMICAL_STRUCTURE, ("SCT", "34402009", "Rectum")),
    # organs that organ models (e.g. TotalSegmentator) output, so generated supports carry their meaning
    "gallbladder": (ANATOMICAL_STRUCTURE, ("SCT", "28231008", "Gallbladder")),
    "stomach": (ANATOMICAL_STRUCTURE, ("SCT", "69695003", "Stomach")),
    "esophagus": (ANATOMICAL_STRUCTURE, ("SCT", "32849002", "Esophagus")),
    "duodenum": (ANATOMICAL_STRUCTURE, ("SCT", "38848004", "Duodenum")),
    "small intestine": (ANATOMICAL_STRUCTURE, ("SCT", "30315005", "Small intestine")),
    "colon": (ANATOMICAL_STRUCTURE, ("SCT", "71854001", "Colon")),
    "heart": (ANATOMICAL_STRUCTURE, ("SCT", "80891009", "Heart")),
    "trachea": (ANATOMICAL_STRUCTURE, ("SCT", "44567001", "Trachea")),
    "brain": (ANATOMICAL_STRUCTURE, ("SCT", "12738006", "Brain")),
    "spinal cord": (ANATOMICAL_STRUCTURE, ("SCT", "2748008", "Spinal cord")),
    "thyroid gland": (ANATOMICAL_STRUCTURE, ("SCT", "69748006", "Thyroid gland")),
    "bone": (TISSUE, ("SCT", "272673000", "Bone")),
    "muscle": (TISSUE, ("SCT", "71616004", "Muscle")),
    "blood vessel": (TISSUE, ("SCT", "59820001", "Blood vessel")),
    "cyst": (MORPHOLOGICALLY_ALTERED, ("SCT", "367643001", "Cyst")),
    "tumor": (MORPHOLOGICALLY_ALTERED, ("SCT", "108369006", "Neoplasm")),
    "mass": (MORPHOLOGICALLY_ALTERED, ("SCT", "4147007", "Mass")),
    "lesion": (MORPHOLOGICALLY_ALTERED, ("SCT", "52988006", "Lesion")),
}
SYNONYMS = {"kidneys": "kidney", "renal parenchyma": "kidney", "kidney parenchyma": "kidney", "lungs": "lung",
            "tumour": "tumor", "tumors": "tumor", "tumours": "tumor", "neoplasm": "tumor", "cysts": "cyst",
            "lesions": "lesion", "vessel": "blood vessel", "vessels": "blood vessel", "ivc": "inferior vena cava",
            "urinary bladder": "bladder", "adrenal": "adrenal gland", "bones": "bone",
            "gall bladder": "gallbladder", "oesophagus": "esophagus", "small bowel": "small intestine",
            "thyroid": "thyroid gland"}
LATERALITY = {"left": ("SCT", "7771000", "Left"), "right": ("SCT", "24028007", "Right")}


def _code(code: Optional[tuple[str, str, str]]) -> str:
    return "^".join(code) if code else "^^"


def terminology_entry(category: tuple[str, str, str], type_: tuple[str, str, str],
                      modifier: Optional[tuple[str, str, str]] = None) -> str:
    """Slicer's terminology-entry string for a category, a type and an optional type modifier."""
    return "~".join([CATEGORY_CONTEXT, _code(category), _code(type_), _code(modifier), ANATOMY_CONTEXT, "^^", "^^"])


def normalise_name(name: str) -> str:
    text = re.sub(r"[\s_\-.]+", " ", name.strip().casefold()).strip()
    return SYNONYMS.get(text, text)


def terminology_for_name(name: str) -> Optional[str]:
    """The entry of a well-known segment name ('Kidney', 'left kidney', 'kidney_right', 'Tumour', ...), or None."""
    words = normalise_name(name).split()
    modifier = None
    for side in LATERALITY:
        if side in words and len(words) > 1:
            modifier = LATERALITY[side]
            words = [w for w in words if w != side]
            break
    key = normalise_name(" ".join(words))
    if key not in KNOWN_TYPES:
        return None
    category, type_ = KNOWN_TYPES[key]
    return terminology_entry(category, type_, modifier)


def is_terminology_entry(text: str) -> bool:
    """A plausible Slicer terminology entry (seven '~'-separated fields with a type code)."""
    parts = text.split("~") if isinstance(text, str) else []
    return len(parts) == 7 and parts[2].count("^") == 2 and parts[2].split("^")[1] != ""


def specific_entry(entry: Optional[str]) -> Optional[str]:
    """The entry when it says something: None for text that is not an entry and for Slicer's default 'Tissue'
    (every new segment gets it, so it does not mean the user chose it)."""
    if not entry or not is_terminology_entry(entry):
        return None
    return None if entry.split("~")[2].split("^")[1] == TISSUE[1] else entry


def type_meaning(entry: str) -> Optional[str]:
    """The type's meaning ('Kidney') of an entry, or None."""
    if not is_terminology_entry(entry):
        return None
    return entry.split("~")[2].split("^")[2] or None


def terminology_from_tags(tags: str) -> Optional[str]:
    """The TerminologyEntry from a .seg.nrrd ``SegmentN_Tags`` value ('key:value|key:value|'), unless generic."""
    for item in (tags or "").split("|"):
        key, _, value = item.partition(":")
        if key == "TerminologyEntry" and specific_entry(value):
            return value
    return None


def class_terminology(name: str, source_entries: Mapping[str, str]) -> Optional[str]:
    """The entry for an output class: its source segment's entry when known, else a well-known name's, else None."""
    return specific_entry(source_entries.get(name)) or terminology_for_name(name)
