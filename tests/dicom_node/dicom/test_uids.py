import pytest

from dicom_node.dicom.uids import InvalidUID, check_uid, is_strict_uid


@pytest.mark.parametrize("uid", ["1.2.840.10008.5.1.4.1.1.2", "1.2.3", "0", "1.2.3\x00"])
def test_valid(uid: str) -> None:
    assert check_uid(uid, "X") == uid.rstrip("\x00")


@pytest.mark.parametrize(
    "uid",
    [
        "../../x",
        "1.2/3",
        "1..2",
        ".1.2",
        "1.2.",
        "1.2.3a",
        "1 .2",
        "1." + "2" * 70,
        "",
        None,
        ["1"],
    ],
)
def test_invalid(uid: object) -> None:
    with pytest.raises(InvalidUID):
        check_uid(uid, "SeriesInstanceUID")


def test_leading_zeros_accepted_but_not_strict() -> None:
    assert check_uid("1.2.040.1", "X") == "1.2.040.1"
    assert not is_strict_uid("1.2.040.1")
    assert is_strict_uid("1.2.40.1")
