"""The real 141-slice chest CT of ../shared/data through the node."""

from __future__ import annotations

import pytest

from tests.conftest import shared_data
from tests.integration.support import NodeProcess, storescu

pytestmark = [pytest.mark.integration, pytest.mark.realdata]


def test_real_chest_ct_is_analysed(dcmtk: None, node: NodeProcess) -> None:
    folder = shared_data("chest-ct-141")
    paths = sorted(folder.glob("*.dcm"))
    assert len(paths) == 141
    sent = storescu(node.port, paths, ae_title=node.ae_title)
    assert sent.returncode == 0, sent.stderr
    statuses = node.statuses()
    assert len(statuses) == 1
    status = node.wait_for(statuses[0].series_instance_uid, timeout=240)
    assert status.state == "done", status.reason
    assert status.result is not None
    assert 2000 < status.result.lung_volume_ml < 9000
    assert status.result.right_lung_volume_ml > 800
    assert status.result.left_lung_volume_ml > 800
    assert status.instances == 141
    assert status.patient_id is None  # the real series has an empty Patient ID
