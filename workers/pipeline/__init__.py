"""Analysis pipeline stages.

Each stage is a pure function with typed, frozen inputs and outputs (see
:mod:`workers.pipeline.types`); :mod:`workers.pipeline.compose` is the one
place where stages are wired together.
"""
