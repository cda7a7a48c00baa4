"""The documented table of report sentences the finding extractor is held to
(``radtrust_engine.report_findings``; docs/methods.md, "Finding extraction").

Each row is a sentence or short report as a radiologist writes it, and what it states about each
finding it mentions: ``+`` present, ``?`` uncertain, ``-`` absent. Every finding a row does not
list is not mentioned, and "No Finding" follows the extractor's rule 5 from the others. The rows
cover plain positives, negations before and after the finding, uncertainty before and after,
"no change in", "resolved", "without", "cannot exclude", lists under one negation, several
findings with different assertions in one sentence and the same finding mentioned twice.
"""

from __future__ import annotations

from radtrust_engine.report_findings import FINDINGS, NO_FINDING, SUPPORT_DEVICES, Assertion, extract_findings

CODES = {
    "EC": "Enlarged Cardiomediastinum",
    "CM": "Cardiomegaly",
    "LO": "Lung Opacity",
    "LL": "Lung Lesion",
    "ED": "Edema",
    "CO": "Consolidation",
    "PN": "Pneumonia",
    "AT": "Atelectasis",
    "PX": "Pneumothorax",
    "PE": "Pleural Effusion",
    "PO": "Pleural Other",
    "FR": "Fracture",
    "SD": "Support Devices",
}
_STATES = {"+": Assertion.PRESENT, "?": Assertion.UNCERTAIN, "-": Assertion.ABSENT}

SENTENCES: tuple[tuple[str, str], ...] = (
    # Plain positives
    ("Moderate cardiomegaly.", "CM+"),
    ("The heart is mildly enlarged.", "CM+"),
    ("Enlarged cardiac silhouette.", "CM+"),
    ("Cardiac enlargement is noted.", "CM+"),
    ("The cardiac silhouette is enlarged.", "CM+"),
    ("Small right pleural effusion.", "PE+"),
    ("Bilateral pleural effusions, left greater than right.", "PE+"),
    ("Large left hydrothorax.", "PE+"),
    ("Blunting of the left costophrenic angle.", "PE+"),
    ("Right apical pneumothorax measuring 2 cm.", "PX+"),
    ("Small left pneumothorax.", "PX+"),
    ("Bibasilar atelectasis.", "AT+"),
    ("Linear atelectasis at the left base.", "AT+"),
    ("Right lower lobe collapse.", "AT+"),
    ("Right lower lobe consolidation.", "CO+"),
    ("Dense consolidation in the left lower lobe.", "CO+"),
    ("Findings consistent with right middle lobe pneumonia.", "PN+"),
    ("Multifocal pneumonia.", "PN+"),
    ("Patchy opacity in the right lower lobe.", "LO+"),
    ("Bilateral airspace opacities.", "LO+"),
    ("Diffuse ground-glass opacities.", "LO+"),
    ("Left basilar infiltrate.", "LO+"),
    ("Moderate pulmonary edema.", "ED+"),
    ("Mild interstitial edema.", "ED+"),
    ("Pulmonary vascular congestion.", "ED+"),
    ("A 1.5 cm nodule in the right upper lobe.", "LL+"),
    ("Spiculated mass in the left upper lobe.", "LL+"),
    ("Multiple pulmonary nodules consistent with metastases.", "LL+"),
    ("Widened mediastinum.", "EC+"),
    ("The mediastinum is widened.", "EC+"),
    ("Enlarged cardiomediastinal silhouette.", "EC+"),
    ("Right pleural thickening.", "PO+"),
    ("Calcified pleural plaques.", "PO+"),
    ("Acute fracture of the right sixth rib.", "FR+"),
    ("Healed left clavicle fracture.", "FR+"),
    ("Multiple old rib fractures.", "FR+"),
    ("Endotracheal tube tip 4 cm above the carina.", "SD+"),
    ("Right internal jugular central venous catheter terminates in the SVC.", "SD+"),
    ("Left-sided pacemaker with leads in the right atrium and ventricle.", "SD+"),
    ("Nasogastric tube courses below the diaphragm.", "SD+"),
    ("Right PICC line tip in the distal SVC.", "SD+"),
    ("Median sternotomy wires are intact.", "SD+"),
    ("Lines and tubes are in standard position.", "SD+"),
    ("Left chest tube in place.", "SD+"),
    ("Tracheostomy tube in place.", "SD+"),
    # Negation before the finding
    ("No pneumothorax.", "PX-"),
    ("No pleural effusion.", "PE-"),
    ("No focal consolidation.", "CO-"),
    ("No evidence of pneumonia.", "PN-"),
    ("No pulmonary edema.", "ED-"),
    ("No acute fracture.", "FR-"),
    ("No suspicious pulmonary nodules.", "LL-"),
    ("There is no pneumothorax.", "PX-"),
    ("There is no evidence of pleural effusion.", "PE-"),
    ("Negative for pneumothorax.", "PX-"),
    ("Free of consolidation.", "CO-"),
    ("No displaced rib fracture is identified.", "FR-"),
    ("No new opacity.", "LO-"),
    ("No definite consolidation.", "CO-"),
    ("No signs of pulmonary edema.", "ED-"),
    ("Absence of pleural effusion.", "PE-"),
    ("There is no focal airspace opacity.", "LO-"),
    ("No evidence of a mass.", "LL-"),
    ("No pleural thickening.", "PO-"),
    ("No mediastinal widening.", "EC-"),
    # Lists under one negation
    ("No pleural effusion or pneumothorax.", "PE- PX-"),
    ("No focal consolidation, pleural effusion or pneumothorax.", "CO- PE- PX-"),
    ("No pneumothorax, pleural effusion, pulmonary edema, or focal consolidation.", "PX- PE- ED- CO-"),
    ("No evidence of pneumonia, edema or effusion.", "PN- ED- PE-"),
    ("There is no consolidation, effusion, or pneumothorax.", "CO- PE- PX-"),
    ("Neither effusion nor pneumothorax.", "PE- PX-"),
    # Without
    ("Lungs are clear without consolidation.", "LO- CO-"),
    ("Clear lungs without effusion or pneumothorax.", "LO- PE- PX-"),
    ("Heart size normal without pulmonary edema.", "CM- ED-"),
    ("Mild cardiomegaly without pulmonary edema.", "CM+ ED-"),
    ("Left lower lobe atelectasis without effusion.", "AT+ PE-"),
    ("Right rib fracture without pneumothorax.", "FR+ PX-"),
    ("Small effusion without consolidation.", "PE+ CO-"),
    ("Enlarged heart without vascular congestion.", "CM+ ED-"),
    # Negation after the finding
    ("Pneumothorax is not seen.", "PX-"),
    ("Pleural effusion is not identified.", "PE-"),
    ("Pneumothorax has resolved.", "PX-"),
    ("The previously seen left effusion has resolved.", "PE-"),
    ("Right basilar consolidation has resolved.", "CO-"),
    ("Pulmonary edema has completely resolved.", "ED-"),
    ("The pneumothorax is no longer visualized.", "PX-"),
    ("Consolidation is absent.", "CO-"),
    ("Pneumonia is unlikely.", "PN-"),
    ("Endotracheal tube has been removed.", "SD-"),
    ("Interval resolution of the right pleural effusion.", "PE-"),
    ("Resolved left pneumothorax.", "PX-"),
    ("Interval removal of the nasogastric tube.", "SD-"),
    # Uncertainty before the finding
    ("Possible small left pleural effusion.", "PE?"),
    ("Cannot exclude early pneumonia.", "PN?"),
    ("Can not rule out a small pneumothorax.", "PX?"),
    ("Questionable right lower lobe nodule.", "LL?"),
    ("Findings may represent atelectasis.", "AT?"),
    ("Probable mild pulmonary edema.", "ED?"),
    ("Suspicious for pneumonia.", "PN?"),
    ("Findings concerning for pneumonia.", "PN?"),
    ("Borderline cardiomegaly.", "CM?"),
    ("Could be atelectasis.", "AT?"),
    ("Possibly small effusion.", "PE?"),
    ("Suggestive of pulmonary edema.", "ED?"),
    ("Equivocal left apical pneumothorax.", "PX?"),
    ("Suspected right middle lobe pneumonia.", "PN?"),
    ("Likely atelectasis at the bases.", "AT?"),
    ("Evaluate for pneumonia.", "PN?"),
    # Uncertainty after the finding
    ("Pneumonia cannot be excluded.", "PN?"),
    ("A small pneumothorax cannot be ruled out.", "PX?"),
    ("Superimposed infection is not excluded.", "PN?"),
    ("Aspiration pneumonia is possible.", "PN?"),
    ("Small right effusion is suspected.", "PE?"),
    ("Atelectasis versus pneumonia.", "AT? PN?"),
    ("Atelectasis vs consolidation at the left base.", "AT? CO?"),
    # Uncertainty after a positive finding in the same sentence
    ("Left basilar opacity, likely atelectasis.", "LO+ AT?"),
    ("Right lower lobe opacity may represent pneumonia.", "LO+ PN?"),
    ("Patchy opacities which could be infection.", "LO+ PN?"),
    ("Bibasilar opacities suspicious for pneumonia.", "LO+ PN?"),
    # No change in, stable, unchanged
    ("No change in the moderate right pleural effusion.", "PE+"),
    ("No interval change in cardiomegaly.", "CM+"),
    ("No significant change in the left basilar atelectasis.", "AT+"),
    ("Unchanged small left pleural effusion.", "PE+"),
    ("Stable cardiomegaly.", "CM+"),
    ("Stable position of the endotracheal tube.", "SD+"),
    ("Persistent right lower lobe consolidation.", "CO+"),
    ("No interval change. Small bilateral effusions.", "PE+"),
    ("Pneumothorax is unchanged in size.", "PX+"),
    ("Resolving right lower lobe pneumonia.", "PN+"),
    ("Improving pulmonary edema.", "ED+"),
    ("Pleural effusion, not significantly changed.", "PE+"),
    ("Cardiomegaly without interval change.", "CM+"),
    # Normal statements
    ("Heart size is normal.", "CM-"),
    ("Normal heart size.", "CM-"),
    ("The cardiac silhouette is within normal limits.", "CM-"),
    ("The heart is not enlarged.", "CM-"),
    ("The cardiomediastinal silhouette is normal.", "EC-"),
    ("Normal cardiomediastinal contours.", "EC-"),
    ("The mediastinum is not widened.", "EC-"),
    ("The lungs are clear.", "LO-"),
    ("Costophrenic angles are sharp.", "PE-"),
    ("Heart size is upper limits of normal.", "CM-"),
    ("Normal chest radiograph.", ""),
    ("No acute cardiopulmonary process.", ""),
    # Mixed assertions in one sentence or report
    ("Mild cardiomegaly. No pleural effusion or pneumothorax.", "CM+ PE- PX-"),
    ("Small right pleural effusion but no pneumothorax.", "PE+ PX-"),
    ("Small left effusion, no pneumothorax.", "PE+ PX-"),
    ("No pneumothorax, small left pleural effusion.", "PX- PE+"),
    ("No effusion; there is mild bibasilar atelectasis.", "PE- AT+"),
    ("No pneumothorax. There is a small right effusion.", "PX- PE+"),
    ("No consolidation, however there is mild pulmonary edema.", "CO- ED+"),
    ("No pneumothorax although a small effusion is present.", "PX- PE+"),
    ("Heart size is normal. Mild bibasilar atelectasis.", "CM- AT+"),
    ("Endotracheal tube in place. No pneumothorax.", "SD+ PX-"),
    ("Left chest tube in place with no residual pneumothorax.", "SD+ PX-"),
    ("Stable cardiomegaly with mild pulmonary edema.", "CM+ ED+"),
    ("Right lower lobe consolidation consistent with pneumonia.", "CO+ PN+"),
    ("Cardiomegaly and pulmonary edema.", "CM+ ED+"),
    ("Moderate right pleural effusion with adjacent atelectasis.", "PE+ AT+"),
    ("No focal consolidation to suggest pneumonia.", "CO- PN-"),
    ("No pneumonia. Possible small left effusion.", "PN- PE?"),
    ("Pacemaker leads are in standard position. Heart size is normal.", "SD+ CM-"),
    ("Old right rib fractures. No pneumothorax.", "FR+ PX-"),
    ("Left upper lobe mass with hilar lymphadenopathy, no effusion.", "LL+ PE-"),
    ("Mild pulmonary edema, no definite consolidation.", "ED+ CO-"),
    ("Right pleural effusion has decreased. Residual atelectasis.", "PE+ AT+"),
    # The same finding mentioned twice
    ("No pneumothorax. Small left apical pneumothorax is seen on the lateral view.", "PX+"),
    ("Small right effusion. No left effusion.", "PE+"),
    ("No new consolidation. Persistent left lower lobe consolidation.", "CO+"),
    ("Possible pneumonia. Right lower lobe pneumonia is confirmed on CT.", "PN+"),
    ("No edema. Possible mild edema at the bases.", "ED?"),
    ("No pneumothorax. The pneumothorax has resolved.", "PX-"),
    ("Atelectasis at the left base. Atelectasis at the right base has resolved.", "AT+"),
    ("Cannot exclude pneumonia. No pneumonia on the prior study.", "PN?"),
    # Further negations and hedges
    ("No atelectasis.", "AT-"),
    ("The left lower lobe atelectasis has resolved.", "AT-"),
    ("Possible widening of the mediastinum.", "EC?"),
    ("Questionable subtle opacity at the right base.", "LO?"),
    ("Possible right apical pleural thickening.", "PO?"),
    ("Possible nondisplaced fracture of the left seventh rib.", "FR?"),
    ("Questionable fracture of the right clavicle.", "FR?"),
    ("Possible catheter projecting over the right atrium.", "SD?"),
    ("Moderate effusion with adjacent atelectasis, underlying pneumonia not excluded.", "PE+ AT+ PN?"),
    ("Atelectasis or pneumonia cannot be excluded.", "AT? PN?"),
    ("Retrocardiac opacity could reflect atelectasis or pneumonia.", "LO+ AT? PN?"),
    ("Small bilateral pleural effusions are similar to prior.", "PE+"),
    ("The previously noted right upper lobe nodule is not seen on the current study.", "LL-"),
)


def expected(codes: str) -> dict[str, Assertion]:
    """Every observation's expected assertion for a row's codes, "No Finding" by rule 5."""
    result = dict.fromkeys(FINDINGS, Assertion.NOT_MENTIONED)
    for code in codes.split():
        result[CODES[code[:2]]] = _STATES[code[2]]
    normal = all(a in (Assertion.ABSENT, Assertion.NOT_MENTIONED) for name, a in result.items() if name != SUPPORT_DEVICES)
    return {NO_FINDING: Assertion.PRESENT if normal else Assertion.ABSENT, **result}


def extractor_errors() -> list[tuple[str, dict[str, tuple[str, str]]]]:
    """The rows the extractor gets wrong, each with ``{finding: (expected, extracted)}``."""
    errors = []
    for sentence, codes in SENTENCES:
        want, got = expected(codes), extract_findings(sentence)
        wrong = {name: (want[name].value, got[name].value) for name in want if want[name] != got[name]}
        if wrong:
            errors.append((sentence, wrong))
    return errors


def extractor_accuracy() -> float:
    """The share of rows whose every observation the extractor reads as the table says."""
    return 1.0 - len(extractor_errors()) / len(SENTENCES)
