"""The site agent reading its hospital's PACS: a real Orthanc with its DICOMweb plugin, the agent's own
configuration, and the fake federated jobs server of ``tests/validation/test_agent.py``, which records
everything the agent sends, so the tests can check that no UID, patient id or PACS address leaves.

The same DICOM files read from disk through a manifest give the reference payload.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from radtrust_agent.pacs import PacsConfig, PacsSite, PacsSpec, pacs_manifest, reason_text
from radtrust_agent.state import AgentState, JobStatus
from radtrust_demo.orthanc import AUTH, free_port
from radtrust_demo.pacs import header_manifest, sop_labels
from radtrust_engine.dicomweb import LabelledManifest, verified
from tests.integration.conftest import PACS_IMAGES, PACS_LABEL
from tests.integration.test_dicomweb import _dicom
from tests.validation.test_agent import FakeServer, make_agent, strings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

N_IMAGES, LABEL = PACS_IMAGES, PACS_LABEL  # the set in the Orthanc of ``pacs`` (conftest)
QUERY = {"modality": "DX", "body_part": "CHEST", "labels": "labels.csv"}
SPEC = {"attributes": ["sex"], "intersections": [], "min_patients": 10, "n_resamples": 50, "manifest": "manifest.csv"}


@pytest.fixture
def server():
    fake = FakeServer().start()
    yield fake
    fake.stop()


@pytest.fixture
def site(generated, tmp_path):
    """The site's data root: only the labels table (keyed by SOP Instance UID); the images are in the PACS."""
    root = tmp_path / "site"
    root.mkdir()
    rows = sop_labels(generated[1])
    (root / "labels.csv").write_text("SOPInstanceUID," + LABEL + "\n" + "".join(f"{r['SOPInstanceUID']},{r[LABEL]}\n" for r in rows))
    return root


def pacs_agent(server, site, url: str, *, auth=AUTH, state: Path | None = None, **options):
    agent = make_agent(server, site)
    agent.pacs = PacsConfig(url=url, auth=auth, retries=1, **options)
    if state is not None:
        agent.state = AgentState(state)
    return agent


def identifying(generated, pacs) -> set[str]:
    """What must never reach the server: every UID, patient id and accession number, and the PACS's address."""
    root, files = generated
    import pydicom

    found = {pacs.url, pacs.dicomweb_url, pacs.url.rsplit(":", 1)[1], AUTH[1]}
    for f in files:
        header = pydicom.dcmread(root / f.path, stop_before_pixels=True)
        found |= {header.StudyInstanceUID, header.SeriesInstanceUID, header.SOPInstanceUID, str(header.PatientID)}
        if header.get("AccessionNumber"):
            found.add(str(header.AccessionNumber))
    return found


def sent(server) -> list[dict]:
    return [body for method, _, body in server.requests if method == "POST" and body]


def assert_nothing_identifying_sent(server, generated, pacs) -> None:
    secrets = identifying(generated, pacs)
    spelled = {s for s in secrets if not s.isdigit()}  # a bare number (the port) could be digits of a figure
    for body in sent(server):
        assert not strings(body) & secrets
        text = json.dumps(body)
        assert not [s for s in spelled if s in text]


def test_a_query_on_the_sites_pacs_gives_the_payload_of_the_same_files_read_from_disk(server, site, generated, pacs, onnx_files, tmp_path):
    server.add_job(41, onnx_files["inline"], spec={**SPEC, "dicomweb": QUERY})
    agent = pacs_agent(server, site, pacs.dicomweb_url)

    assert agent.cycle() is True

    record = agent.state.jobs["41"]
    assert record.status == JobStatus.REPORTED, record.error
    # The frozen manifest stays at the site, verified by its hash; only that hash and counts were reported.
    frozen = verified(LabelledManifest.from_dict(json.loads((agent.state.folder / "pacs" / "job-41" / "manifest.json").read_text())))
    assert len(frozen.instances) == N_IMAGES
    reported = server.reports[41]["agent"]["pacs"]
    assert reported == {
        "manifest_sha256": frozen.sha256,
        "instances": N_IMAGES,
        "unlabelled": 0,
        "retrieved": N_IMAGES,
        "from_cache": 0,
        "skipped": 0,
    }
    assert json.loads((agent.state.folder / "pacs" / "job-41" / "skipped.json").read_text()) == {}
    assert len(list(agent.pacs.cache(agent.state.folder).glob("*.dcm"))) == N_IMAGES
    assert_nothing_identifying_sent(server, generated, pacs)

    # The same files read from disk, in the frozen order, through a manifest: the same payload.
    root, files = generated
    twin = tmp_path / "twin"
    shutil.copytree(root, twin)
    header_manifest(twin, files, [i.sop_uid for i in frozen.instances], name="manifest.csv")
    server.add_job(42, onnx_files["inline"], spec=SPEC)
    assert make_agent(server, twin).cycle() is True
    assert server.reports[42]["payload"] == server.reports[41]["payload"]

    # A second job on the same PACS reads the cache.
    server.add_job(43, onnx_files["inline"], spec={**SPEC, "dicomweb": QUERY})
    assert agent.cycle() is True
    assert server.reports[43]["agent"]["pacs"]["from_cache"] == N_IMAGES
    assert server.reports[43]["payload"] == server.reports[41]["payload"]


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"auth": ("radtrust", "wrong")}, "pacs_refused"),
        ({"url": "down"}, "pacs_unreachable"),
        ({"url": "not-dicomweb"}, "pacs_not_found"),
        ({"query": {"modality": "MR"}}, "query_matches_nothing"),
        ({"max_instances": 10}, "query_above_limit"),
        ({"labels": "SOPInstanceUID,effusion\n"}, "bad_labels_table"),
        ({"labels": "SOPInstanceUID,pneumothorax\n1.2.3,1\n"}, "no_labelled_instances"),
        ({"query": {"accessions": "no-such-list.txt"}}, "bad_accession_list"),
    ],
)
def test_a_pacs_that_refuses_is_down_or_answers_nothing_usable_fails_the_job_with_a_code_only(
    server, site, generated, pacs, onnx_files, change, code
):
    url = {"down": f"http://127.0.0.1:{free_port()}/dicom-web", "not-dicomweb": f"{pacs.url}/no-such-root"}.get(
        change.get("url", ""), pacs.dicomweb_url
    )
    if "labels" in change:
        (site / "labels.csv").write_text(change["labels"])
    options = {"max_instances": change["max_instances"]} if "max_instances" in change else {}
    server.add_job(51, onnx_files["inline"], spec={**SPEC, "dicomweb": {**QUERY, **change.get("query", {})}})
    agent = pacs_agent(server, site, url, auth=change.get("auth", AUTH), **options)

    assert agent.cycle() is True

    record = agent.state.jobs["51"]
    assert record.status == JobStatus.FAILED and record.fail_pending is False
    assert server.failures[51] == f"{code}: {reason_text(code)}"
    assert record.error.startswith(f"{code}: ")  # the site keeps the details
    assert not (agent.state.folder / "pacs" / "job-51" / "manifest.json").exists()
    assert 51 not in server.reports
    assert_nothing_identifying_sent(server, generated, pacs)


def test_an_accession_list_at_the_site_narrows_the_query_and_labels_may_be_per_study(site, pacs, tmp_path):
    """Three CR studies with accession numbers (the generated DX set has none); the site lists two."""
    pacs.upload(
        _dicom(study, 1, index, modality="CR", body_part="CHEST", date="20240301", sex="F") for study in (100, 101, 102) for index in range(2)
    )
    (site / "accessions.txt").write_text("# studies chosen by the site\nACC100\n\nACC102\n")
    root = "1.2.826.0.1.3680043.8.498"
    (site / "study-labels.csv").write_text(f"StudyInstanceUID,{LABEL}\n{root}.100,1\n{root}.101,0\n{root}.102,0\n")
    spec = PacsSpec.from_dict({"modality": "cr", "labels": "study-labels.csv", "accessions": "accessions.txt"})
    config = PacsConfig(url=pacs.dicomweb_url, auth=AUTH)
    place = PacsSite(config, tmp_path / "job", config.cache(tmp_path))

    manifest, outcome = pacs_manifest(spec, site=place, data_root=site, labels=[LABEL], max_unreadable_share=0.0)

    assert (outcome.instances, outcome.retrieved, outcome.skipped) == (4, 4, 0)
    assert manifest.patient_ids == ["p100", "p100", "p102", "p102"]
    assert manifest.labels[:, 0].tolist() == [1, 1, 0, 0]
    assert all((manifest.root / path).is_file() for path in manifest.image_paths)


def test_an_instance_that_vanished_after_freezing_is_skipped_at_the_site_and_fails_the_job(server, site, generated, pacs, onnx_files, tmp_path):
    server.add_job(71, onnx_files["inline"], spec={**SPEC, "dicomweb": QUERY})
    assert pacs_agent(server, site, pacs.dicomweb_url, state=tmp_path / "first").cycle() is True
    # A second agent stopped after freezing job 72's manifest (the same query), before retrieving it.
    frozen = tmp_path / "first" / "pacs" / "job-71" / "manifest.json"
    (tmp_path / "second" / "pacs" / "job-72").mkdir(parents=True)
    shutil.copy(frozen, tmp_path / "second" / "pacs" / "job-72" / "manifest.json")
    gone = LabelledManifest.from_dict(json.loads(frozen.read_text())).instances[7].sop_uid
    pacs.delete_instance(gone)
    try:
        server.add_job(72, onnx_files["inline"], spec={**SPEC, "dicomweb": QUERY})
        agent = pacs_agent(server, site, pacs.dicomweb_url, state=tmp_path / "second")
        assert agent.cycle() is True
    finally:  # the module's other tests find the PACS whole again
        root, files = generated
        pacs.upload([root / f.path for f in files if f.sop_uid == gone])

    assert agent.state.jobs["72"].status == JobStatus.FAILED
    assert server.failures[72].startswith("unreadable_images: More instances could not be retrieved")
    skipped = json.loads((tmp_path / "second" / "pacs" / "job-72" / "skipped.json").read_text())
    assert skipped == {gone: "vanished from the PACS since the manifest was frozen"}
    assert "1 of 60 instances could not be retrieved" in agent.state.jobs["72"].error
    assert_nothing_identifying_sent(server, generated, pacs)
