import pytest

from registry.choices import VersionStatus
from tests.factories import FoundationModelFactory


@pytest.mark.django_db
def test_register_reads_signature_and_hash(register_version, institutions):
    fm = FoundationModelFactory(provider=institutions["vendor"])
    v = register_version(fm, kind="external")
    assert v.status == VersionStatus.DRAFT
    assert v.opset >= 18
    assert [f["role"] for f in v.artifact_files] == ["model", "external_data"]
    assert v.inputs[0]["name"] == "image"
    assert v.parameter_count == 8 * 9 + 8 + 16 * 8 * 9 + 16 + 16 + 1
