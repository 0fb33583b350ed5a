"""Network definitions, training and shipped weights with their model cards.

The HU-threshold baseline of the first release needs no weights; the deep
models of Wu et al. 2020 (2D/2.5D UNet, ResNet-18 candidate classifier) will
live here with a manifest (name, version, sha256, input spec) and a model card
each.
"""
