"""DICOM objects the node writes about an analysed series: SEG, TID 1500 SR, key images.

Everything here is made with highdicom from plain inputs (the source
headers, boolean masks in volume order and the measured values), so the
workers that compute them and the CLI that writes them offline share it.
"""
