"""A bare pynetdicom Storage SCP for comparison: pynetdicom's defaults, files written, no fsync.

python bench/bare_scp.py PORT OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts, evt


def main() -> None:
    port, out = int(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)

    def store(event: Any) -> int:
        (out / f"{event.request.AffectedSOPInstanceUID}.dcm").write_bytes(event.encoded_dataset())
        return 0x0000

    ae = AE(ae_title="BARE_SCP")
    ae.supported_contexts = AllStoragePresentationContexts
    ae.start_server(("127.0.0.1", port), evt_handlers=[(evt.EVT_C_STORE, store)])


if __name__ == "__main__":
    main()
