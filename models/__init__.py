"""Network definitions, training and shipped weights with their model cards.

The deep models of Wu et al. 2020 (2D and 2.5D UNets for the lungs and the
infected regions, the ResNet-18 candidate classifier) ship in ``weights/`` with a
manifest (name, version, sha256, input spec; :mod:`models.manifest`) and a model
card each in ``cards/``. The HU-threshold baseline needs none of them.
"""
