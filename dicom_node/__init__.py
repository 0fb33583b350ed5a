"""dicom-node: a PACS-integrated DICOM node that measures COVID-19 pneumonia on chest CT."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("dicom-node")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
