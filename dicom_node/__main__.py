"""``python -m dicom_node`` runs the command line."""

from dicom_node.cli.main import main

main()
