"""A dataset's datasheet page: composition as tables, empty items named, no path or hash shown,
and the trust page's evidence links open it (or monitoring) instead of API JSON."""

from __future__ import annotations

from compliance.trust.services import trust_assess
from registry.models import Dataset, Provenance
from registry.services import record_create


def test_datasheet_page_shows_composition_in_tables_and_names_what_is_missing(client, personas, run_setup):
    dataset = run_setup["dataset"]
    Dataset.objects.filter(pk=dataset.pk).update(
        scanners=[{"manufacturer": "Agfa", "model": "DX-D 400", "count": 120}],
        protocols={"PA chest": 100, "AP portable": 20},
        demographics={"sex": {"F": 61, "M": 59}, "age_band": {"65+": 40}},
        legal_basis="public_interest",
        patient_count=120,
    )
    client.force_login(personas["engineer"])
    page = client.get(f"/datasets/{dataset.pk}/").content.decode()
    assert '<th scope="row">Agfa</th><td>DX-D 400</td><td class="num">120</td>' in page
    assert '<th scope="row">PA chest</th><td class="num">100</td>' in page
    assert "Patients by age band" in page and '<th scope="row">F</th><td class="num">61</td>' in page
    assert "Still empty:" in page and "Reference standard and labelling (Art. 10(2)(c))" in page
    assert "public_interest" not in page and str(run_setup["root"]) not in page  # labels, never codes or paths


def test_trust_evidence_links_open_pages_for_the_roles_that_may_see_them(client, personas, deployed):
    version = deployed["version"]
    dataset = record_create(
        model=Dataset, actor=personas["engineer"], fields={"name": "Linked set", "institution": personas["engineer"].institution, "modality": "DX"}
    )
    # recorded as it would have been before release (provenance_link refuses it on a released version)
    record_create(model=Provenance, actor=personas["engineer"], fields={"version": version, "dataset": dataset, "role": "external_validation"})
    trust_assess(version=version, trigger="manual")
    client.force_login(personas["officer"])
    page = client.get(f"/versions/{version.pk}/trust/").content.decode()
    assert f'<a href="/datasets/{dataset.pk}/">Linked set</a>' in page and "/api/datasets/" not in page and "/api/deployments/" not in page
    assert client.get(f"/datasets/{dataset.pk}/").status_code == 200
    client.force_login(personas["clinician_north"])
    page = client.get(f"/versions/{version.pk}/trust/").content.decode()
    assert "Linked set" in page and f'href="/datasets/{dataset.pk}/"' not in page  # named, not a link a clinician may not open
    assert 'href="/monitoring/' not in page
