"""Every coded concept the node writes, in one place (PS3.16).

Concepts are pydicom ``Code`` values (immutable); highdicom makes a fresh coded
item from them wherever one is written.

Standard concepts come from SNOMED CT (SCT), DICOM (DCM), LOINC (LN) and UCUM.
There is no standard code for "proportion of the lung that is infected", so the
node declares a private coding scheme, :data:`PRIVATE_SCHEME`, identified in
every SR it writes by a Coding Scheme Identification Sequence (PS3.3 C.12.1.1.2)
and documented in ``docs/results.md``. Private designators start with "99"
(PS3.16 8.2).
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.sr.coding import Code

# --- Segmentation properties (CID 7150 categories, CID 7151/7159 types, CID 244 laterality)
ANATOMICAL_STRUCTURE = Code("91723000", "SCT", "Anatomical Structure")
MORPHOLOGICALLY_ABNORMAL_STRUCTURE = Code("49755003", "SCT", "Morphologically Abnormal Structure")
LUNG = Code("39607008", "SCT", "Lung")
LESION = Code("52988006", "SCT", "Lesion")
PLEURAL_EFFUSION = Code("60046008", "SCT", "Pleural effusion")
PLEURA = Code("3120008", "SCT", "Pleura")
RIGHT = Code("24028007", "SCT", "Right")
LEFT = Code("7771000", "SCT", "Left")
RIGHT_AND_LEFT = Code("51440002", "SCT", "Right and left")

# --- Structured report
CT_OF_CHEST = Code("169069000", "SCT", "Computed tomography of chest")
VOLUME = Code("118565006", "SCT", "Volume")
MILLILITER = Code("ml", "UCUM", "milliliter")
PERCENT = Code("%", "UCUM", "percent")
HOUR = Code("h", "UCUM", "hour")
ALGORITHM_NAME = Code("111001", "DCM", "Algorithm Name")
ALGORITHM_VERSION = Code("111003", "DCM", "Algorithm Version")

# --- Image library of the SR (TID 1600-1604): entry concept and units of its descriptors
SOURCE = Code("260753009", "SCT", "Source")
PIXELS = Code("{pixels}", "UCUM", "Pixels")
DIRECTION_COSINE = Code("{-1:1}", "UCUM", "{-1:1}")

# --- The node's private coding scheme
PRIVATE_SCHEME = "99DICOMNODE"
PRIVATE_SCHEME_NAME = "dicom-node COVID-19 pneumonia quantification"
PRIVATE_SCHEME_ORGANIZATION = "dicom-node project"
PRIVATE_SCHEME_VERSION = "1"

#: Infected volume / lung volume x 100 (Wu et al. 2020)
PROPORTION_OF_INFECTED_REGION = Code(
    "POIR", PRIVATE_SCHEME, "Proportion of infected region of lung"
)
#: The infected volume of this scan relative to an earlier scan of the patient
INFECTED_VOLUME_CHANGE = Code(
    "IVCHANGE", PRIVATE_SCHEME, "Change of infected lung volume since prior scan"
)
#: Hours between the prior scan and this one
INTERVAL_SINCE_PRIOR = Code("PRIORINT", PRIVATE_SCHEME, "Interval since prior scan")
#: The series the comparison was made with
PRIOR_SERIES = Code("PRIORSERIES", PRIVATE_SCHEME, "Series Instance UID of prior scan")
PROGRESSION_FINDING = Code("PROGFINDING", PRIVATE_SCHEME, "Progression finding")
#: The progression findings of the rule (see dicom_node.tracking.rule)
PROGRESSION = Code(
    "PROGRESSION", PRIVATE_SCHEME, "Infected lung volume grew by more than 50% within 48 h"
)
NEW_INFECTION = Code("NEWINFECTION", PRIVATE_SCHEME, "New infected lung region since prior scan")


@dataclass(frozen=True)
class SegmentSpec:
    """A segment of the node's DICOM Segmentation (PS3.3 C.8.20.2).

    ``laterality`` (CID 244) modifies the segmented property type when that is
    the lung itself (Segmented Property Type Modifier Code Sequence), and the
    anatomic region Lung otherwise (Anatomic Region Modifier Sequence).
    """

    number: int
    label: str
    category: Code
    property_type: Code
    laterality: Code | None
    color_rgb: tuple[int, int, int]
    #: the Anatomic Region Sequence of what is not the lung itself
    region: Code = LUNG

    @property
    def is_lung(self) -> bool:
        return bool(self.property_type == LUNG)


RIGHT_LUNG_SEGMENT = SegmentSpec(1, "Right lung", ANATOMICAL_STRUCTURE, LUNG, RIGHT, (0, 170, 255))
LEFT_LUNG_SEGMENT = SegmentSpec(2, "Left lung", ANATOMICAL_STRUCTURE, LUNG, LEFT, (80, 220, 80))
#: every infected region, in both lungs (the whole-lung PoIR's numerator)
INFECTED_SEGMENT = SegmentSpec(
    3, "Infected regions", MORPHOLOGICALLY_ABNORMAL_STRUCTURE, LESION, None, (255, 60, 40)
)
#: the infected regions of one lung: segment 3 split at the lung boundary
RIGHT_INFECTED_SEGMENT = SegmentSpec(
    4,
    "Infected regions, right lung",
    MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
    LESION,
    RIGHT,
    (255, 150, 40),
)
LEFT_INFECTED_SEGMENT = SegmentSpec(
    5,
    "Infected regions, left lung",
    MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
    LESION,
    LEFT,
    (230, 40, 160),
)
SEGMENTS = (
    RIGHT_LUNG_SEGMENT,
    LEFT_LUNG_SEGMENT,
    INFECTED_SEGMENT,
    RIGHT_INFECTED_SEGMENT,
    LEFT_INFECTED_SEGMENT,
)
#: fluid in the pleural space, outside the lungs and not infection; written only when
#: the node found some (after the five segments above)
EFFUSION_SEGMENT = SegmentSpec(
    6,
    "Pleural effusion",
    MORPHOLOGICALLY_ABNORMAL_STRUCTURE,
    PLEURAL_EFFUSION,
    None,
    (250, 220, 60),
    region=PLEURA,
)


def coding_scheme_identification() -> Dataset:
    """An item of the Coding Scheme Identification Sequence for :data:`PRIVATE_SCHEME`."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeVersion = PRIVATE_SCHEME_VERSION
    item.CodingSchemeResponsibleOrganization = PRIVATE_SCHEME_ORGANIZATION
    return item
