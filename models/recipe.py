"""The shipped networks' recipe figures, as data (no torch import): the UNets' input
size and infection-unet25d's fine-tuning stages.

``dicom-node evaluate`` fine-tunes its cross-validation folds' 2.5D networks in
these stages, as the shipped weights were (``scripts/train-models``): each stage
adds its descriptions (of ``models/descriptions``) to the last stage's training
set and trains from the last stage's weights for its steps at
``FINETUNE_LEARNING_RATE``. The command line reads them without loading torch.
"""

from __future__ import annotations

#: A UNet's input: each slice's body square resized to this many pixels a side
SEG_INPUT_SIZE = 192

#: Steps of a fine-tuning stage that names none
FINETUNE_STEPS = 300
FINETUNE_LEARNING_RATE = 5e-4
#: infection-unet25d 1.1.0 (harder phantoms, real chests without pneumonia), then
#: 1.2.0 (phantoms of dense subpleural consolidation), then 1.3.0 (phantoms with a
#: pleural effusion, the fluid neither lung nor infection): descriptions added, steps
SHIPPED_FINETUNE: tuple[tuple[tuple[str, ...], int], ...] = (
    (("synthetic-hard.toml", "normal-ct.toml"), 300),
    (("synthetic-subpleural.toml",), 600),
    (("synthetic-effusion.toml",), 300),
)


def describe(stages: tuple[tuple[tuple[str, ...], int], ...]) -> str:
    """The stages as ``--finetune`` values, joined by "then"."""
    return " then ".join(f"{','.join(files)}@{steps}" for files, steps in stages)
