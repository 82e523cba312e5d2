"""Phenopacket v2 (JSON form) → Beacon v2 default-model `individual` and `biosample` records.

Pure: no I/O beyond the code table read once from `mappings/translators/`, no Flask, no store.
Elements that have no Beacon counterpart are dropped, never invented; a required Beacon
field the phenopacket leaves empty gets the explicit "unknown" term of the code table.

Time elements: a phenopacket `TimeElement` wraps its value (`{"age": {"iso8601duration": …}}`),
a Beacon `timeElement` *is* the value (`{"iso8601duration": …}`), so the wrapper is removed;
timestamps have no object form in Beacon and are left out.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from mappings import load_table
from mappings.diagnoses import solved_diagnoses


@cache
def _codes() -> dict[str, Any]:
    return load_table("translators/phenopacket_to_beacon")


def sex_term(sex: str | None) -> dict[str, str]:
    """The NCIT term for a phenopacket Sex value (unknown when absent or unrecognised)."""
    codes = _codes()
    return dict(codes["sex"].get(sex or "", codes["sex_unknown"]))


def sex_terms() -> dict[str, dict[str, str]]:
    """Phenopacket Sex value → NCIT term, for the query layer (filters on sex)."""
    return {k: dict(v) for k, v in _codes()["sex"].items()}


# --- small pieces ---------------------------------------------------------------------------


def _term(value: Any) -> dict | None:
    if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]:
        out = {"id": value["id"]}
        if isinstance(value.get("label"), str) and value["label"]:
            out["label"] = value["label"]
        return out
    return None


def _terms(values: Any) -> list[dict]:
    return [t for t in (_term(v) for v in _list(values)) if t]


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _age(value: Any) -> dict | None:
    duration = _dict(value).get("iso8601duration")
    return {"iso8601duration": duration} if isinstance(duration, str) and duration else None


def time_element(value: Any) -> dict | None:
    """Phenopacket TimeElement → Beacon timeElement (the unwrapped value), or None."""
    value = _dict(value)
    if "age" in value:
        return _age(value["age"])
    if "ageRange" in value:
        start, end = _age(_dict(value["ageRange"]).get("start")), _age(_dict(value["ageRange"]).get("end"))
        return {"start": start, "end": end} if start and end else None
    if "gestationalAge" in value:
        weeks = _dict(value["gestationalAge"]).get("weeks")
        if isinstance(weeks, int):
            out = {"weeks": weeks}
            days = _dict(value["gestationalAge"]).get("days")
            if isinstance(days, int):
                out["days"] = days
            return out
        return None
    if "ontologyClass" in value:
        return _term(value["ontologyClass"])
    if "interval" in value:
        start, end = _dict(value["interval"]).get("start"), _dict(value["interval"]).get("end")
        return {"start": start, "end": end} if isinstance(start, str) and isinstance(end, str) else None
    return None


def _put(out: dict, key: str, value: Any) -> None:
    if value not in (None, [], {}, ""):
        out[key] = value


def _quantity(value: Any) -> dict | None:
    value = _dict(value)
    unit = _term(value.get("unitClass") or value.get("unit"))
    number = value.get("value")
    if unit is None or not isinstance(number, int | float) or isinstance(number, bool):
        return None
    out: dict = {"unit": unit, "value": number}
    reference = _dict(value.get("referenceRange"))
    low, high = reference.get("low"), reference.get("high")
    ref_unit = _term(reference.get("unit")) or unit
    if isinstance(low, int | float) and isinstance(high, int | float):
        out["referenceRange"] = {"unit": ref_unit, "low": low, "high": high}
    return out


# --- parts of an individual -----------------------------------------------------------------


def phenotypic_feature(feature: Any) -> dict | None:
    feature = _dict(feature)
    feature_type = _term(feature.get("type"))
    if feature_type is None:
        return None
    out: dict = {"featureType": feature_type}
    if feature.get("excluded") is True:
        out["excluded"] = True
    _put(out, "modifiers", _terms(feature.get("modifiers")))
    _put(out, "onset", time_element(feature.get("onset")))
    _put(out, "resolution", time_element(feature.get("resolution")))
    _put(out, "severity", _term(feature.get("severity")))
    if isinstance(feature.get("description"), str):
        _put(out, "notes", feature["description"])
    evidence = [e for e in _list(feature.get("evidence")) if _term(_dict(e).get("evidenceCode"))]
    if evidence:  # Beacon holds one evidence; the first is kept
        first = evidence[0]
        ev: dict = {"evidenceCode": _term(first["evidenceCode"])}
        reference = _dict(first.get("reference"))
        if isinstance(reference.get("id"), str):
            ref = {"id": reference["id"]}
            for key in ("reference", "notes"):
                if isinstance(reference.get(key), str):
                    ref[key] = reference[key]
            if isinstance(reference.get("description"), str):
                ref.setdefault("notes", reference["description"])
            ev["reference"] = ref
        out["evidence"] = ev
    return out


def disease(item: Any) -> dict | None:
    item = _dict(item)
    code = _term(item.get("term"))
    if code is None or item.get("excluded") is True:  # Beacon has no excluded diseases
        return None
    out: dict = {"diseaseCode": code}
    _put(out, "ageOfOnset", time_element(item.get("onset")))
    stages = _terms(item.get("diseaseStage"))
    if stages:
        out["stage"] = stages[0]
    return out


def measurement(item: Any) -> dict | None:
    item = _dict(item)
    assay = _term(item.get("assay"))
    if assay is None:
        return None
    value: dict | None = None
    raw = _dict(item.get("value"))
    if "quantity" in raw:
        value = _quantity(raw["quantity"])
    elif "ontologyClass" in raw:
        value = _term(raw["ontologyClass"])
    elif "complexValue" in item:
        typed = []
        for tq in _list(_dict(item["complexValue"]).get("typedQuantities")):
            quantity_type, quantity = _term(_dict(tq).get("type")), _quantity(_dict(tq).get("quantity"))
            if quantity_type and quantity:
                typed.append({"quantityType": quantity_type, "quantity": quantity})
        value = {"typedQuantities": typed} if typed else None
    if value is None:
        return None
    out: dict = {"assayCode": assay, "measurementValue": value}
    _put(out, "observationMoment", time_element(item.get("timeObserved")))
    proc = procedure(item.get("procedure"))
    _put(out, "procedure", proc)
    if isinstance(item.get("description"), str):
        _put(out, "notes", item["description"])
    return out


def procedure(item: Any) -> dict | None:
    item = _dict(item)
    code = _term(item.get("code"))
    if code is None:
        return None
    out: dict = {"procedureCode": code}
    _put(out, "bodySite", _term(item.get("bodySite")))
    _put(out, "ageAtProcedure", time_element(item.get("performed")))
    return out


def treatment(item: Any) -> dict | None:
    item = _dict(item)
    agent = _term(item.get("agent"))
    if agent is None:
        return None
    out: dict = {"treatmentCode": agent}
    _put(out, "routeOfAdministration", _term(item.get("routeOfAdministration")))
    _put(out, "cumulativeDose", _quantity(item.get("cumulativeDose")))
    return out


def _medical_actions(document: dict) -> tuple[list[dict], list[dict]]:
    procedures, treatments = [], []
    for action in _list(document.get("medicalActions")):
        action = _dict(action)
        if "procedure" in action:
            _append(procedures, procedure(action["procedure"]))
        if "treatment" in action:
            _append(treatments, treatment(action["treatment"]))
        if "radiationTherapy" in action:
            modality = _term(_dict(action["radiationTherapy"]).get("modality"))
            _append(procedures, {"procedureCode": modality} if modality else None)
        if "therapeuticRegimen" in action:
            regimen = _term(_dict(action["therapeuticRegimen"]).get("ontologyClass"))
            _append(treatments, {"treatmentCode": regimen} if regimen else None)
    return procedures, treatments


def _append(items: list, value: Any) -> None:
    if value is not None:
        items.append(value)


# --- the two records ------------------------------------------------------------------------


def individual_record(document: dict, *, individual_id: str | None = None) -> dict:
    """A Beacon `individual` (individuals/defaultSchema.json) from one phenopacket."""
    subject = _dict(document.get("subject"))
    record: dict = {"id": individual_id or str(subject.get("id") or document.get("id") or "")}
    record["sex"] = sex_term(subject.get("sex"))
    karyotype = subject.get("karyotypicSex")
    if karyotype in _codes()["karyotypic_sex"] and karyotype != "UNKNOWN_KARYOTYPE":
        record["karyotypicSex"] = karyotype
    features = [phenotypic_feature(f) for f in _list(document.get("phenotypicFeatures"))]
    _put(record, "phenotypicFeatures", [f for f in features if f])
    diseases = [disease(d) for d in _list(document.get("diseases"))]
    diseases += [{"diseaseCode": code} for code in _terms(solved_diagnoses(document))]  # mappings/diagnoses.py
    _put(record, "diseases", [d for d in diseases if d])
    procedures, treatments = _medical_actions(document)
    _put(record, "interventionsOrProcedures", procedures)
    _put(record, "treatments", treatments)
    measures = [measurement(m) for m in _list(document.get("measurements"))]
    _put(record, "measures", [m for m in measures if m])
    info: dict = {"phenopacketId": document.get("id")}
    age = _dict(_dict(subject.get("timeAtLastEncounter")).get("age")).get("iso8601duration")
    if isinstance(age, str):
        info["ageAtLastEncounter"] = {"iso8601duration": age}
    vital = _dict(subject.get("vitalStatus")).get("status")
    if isinstance(vital, str):
        info["vitalStatus"] = vital
    excluded = [_term(_dict(d).get("term")) for d in _list(document.get("diseases")) if _dict(d).get("excluded")]
    _put(info, "excludedDiseases", [t for t in excluded if t])
    record["info"] = {k: v for k, v in info.items() if v is not None}
    return record


def biosample_records(document: dict, *, individual_id: str | None = None) -> list[dict]:
    """Beacon `biosample` records (biosamples/defaultSchema.json) for the phenopacket's biosamples."""
    codes = _codes()
    subject_id = individual_id or _dict(document.get("subject")).get("id")
    out = []
    for sample in _list(document.get("biosamples")):
        sample = _dict(sample)
        if not isinstance(sample.get("id"), str) or not sample["id"]:
            continue
        record: dict = {
            "id": sample["id"],
            "biosampleStatus": _term(sample.get("materialSample")) or dict(codes["biosample_status_unknown"]),
            "sampleOriginType": _term(sample.get("sampleType")) or dict(codes["sample_origin_type_default"]),
        }
        owner = individual_id or sample.get("individualId") or subject_id
        if isinstance(owner, str) and owner:
            record["individualId"] = owner
        _put(record, "sampleOriginDetail", _term(sample.get("sampledTissue")))
        _put(record, "histologicalDiagnosis", _term(sample.get("histologicalDiagnosis")))
        _put(record, "tumorProgression", _term(sample.get("tumorProgression")))
        _put(record, "tumorGrade", _term(sample.get("tumorGrade")))
        _put(record, "pathologicalStage", _term(sample.get("pathologicalStage")))
        _put(record, "pathologicalTnmFinding", _terms(sample.get("pathologicalTnmFinding")))
        _put(record, "diagnosticMarkers", _terms(sample.get("diagnosticMarkers")))
        moment = time_element(sample.get("timeOfCollection"))
        if moment and "iso8601duration" in moment:
            record["collectionMoment"] = moment["iso8601duration"]
        _put(record, "obtentionProcedure", procedure(sample.get("procedure")))
        features = [phenotypic_feature(f) for f in _list(sample.get("phenotypicFeatures"))]
        _put(record, "phenotypicFeatures", [f for f in features if f])
        measures = [measurement(m) for m in _list(sample.get("measurements"))]
        _put(record, "measurements", [m for m in measures if m])
        if isinstance(sample.get("description"), str):
            _put(record, "notes", sample["description"])
        out.append(record)
    return out
