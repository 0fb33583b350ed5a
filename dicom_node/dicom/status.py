"""DIMSE statuses the node answers and understands (PS3.7 C.4.1, PS3.4 B.2.3)."""

from __future__ import annotations

#: Storage Service Class: success
SUCCESS = 0x0000
#: Refused: out of resources (the high byte; the low byte may say more)
OUT_OF_RESOURCES = 0xA700
#: Error: data set does not match SOP Class
DATASET_DOES_NOT_MATCH_SOP_CLASS = 0xA900
#: Error: cannot understand
CANNOT_UNDERSTAND = 0xC210
#: Warnings a storage SCP may answer for an instance it did store: coercion of data
#: elements, elements discarded, data set does not match SOP Class
STORED_WITH_WARNING = frozenset({0xB000, 0xB006, 0xB007})
#: C-FIND and C-MOVE: pending (more to come)
PENDING = frozenset({0xFF00, 0xFF01})
