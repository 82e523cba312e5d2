"""One phenopacket id, two people, two requests. A submitted phenopacket's identity in its dataset is its `id`;
before, a later document under a stored id about another subject was an update ("(updated)"), and the first
person's record was gone. Now it is refused with the reason; the same person sent again is still an update."""

from __future__ import annotations

import copy
import json

from gateway.cli import main


def _packet(reference_dir) -> dict:
    path = sorted((reference_dir / "phenopackets").rglob("*.json"))[0]
    return json.loads(path.read_text())


def _other_person(packet: dict) -> dict:
    other = copy.deepcopy(packet)
    other["subject"]["id"] = "someone else"
    other["phenotypicFeatures"] = other["phenotypicFeatures"][:1]
    return other


def test_a_later_document_under_a_stored_id_about_another_subject_is_refused_over_http(
    client, app, operator, reference_dir
):
    packet = _packet(reference_dir)
    first = client.post("/phenopackets?dataset=rd", json=packet, headers=operator)
    assert first.status_code == 201, first.get_json()
    stored = app.extensions["gateway"].store.list_phenopackets(dataset_id="rd")[0]
    refused = client.post("/phenopackets?dataset=rd", json=_other_person(packet), headers=operator)
    assert refused.status_code == 409, refused.get_json()
    said = json.dumps(refused.get_json())
    assert "another-person" in said and "/subject/id" in said, said
    assert app.extensions["gateway"].store.list_phenopackets(dataset_id="rd")[0] == stored
    changed = copy.deepcopy(packet)
    changed["phenotypicFeatures"] = changed["phenotypicFeatures"][1:]
    again = client.post("/phenopackets?dataset=rd", json=changed, headers=operator)  # the same person: an update
    assert again.status_code == 200 and again.get_json()["stored"][0]["created"] is False, again.get_json()
    assert client.post("/phenopackets?dataset=other", json=_other_person(packet), headers=operator).status_code == 201


def test_the_cli_refuses_it_with_the_file_and_the_pointer(env, reference_dir, tmp_path, capsys):
    packet = _packet(reference_dir)
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    first.write_text(json.dumps(packet))
    second.write_text(json.dumps(_other_person(packet)))
    assert main(["ingest", "phenopacket", str(first), "--dataset", "rd"]) == 0
    capsys.readouterr()
    assert main(["ingest", "phenopacket", str(second), "--dataset", "rd"]) == 1
    err = capsys.readouterr().err
    assert "another-person" in err and str(second) in err and "/subject/id" in err, err
    assert main(["ingest", "phenopacket", str(first), "--dataset", "rd"]) == 0  # the same person again
    assert "(updated)" in capsys.readouterr().out


def test_a_key_rotation_carries_the_label_so_the_same_person_is_still_an_update(env, reference_dir, tmp_path, capsys):
    packet = _packet(reference_dir)
    path = tmp_path / "packet.json"
    path.write_text(json.dumps(packet))
    assert main(["ingest", "phenopacket", str(path), "--dataset", "rd"]) == 0
    assert main(["keys", "rotate"]) == 0
    capsys.readouterr()
    assert main(["ingest", "phenopacket", str(path), "--dataset", "rd"]) == 0, capsys.readouterr().err
    assert "(updated)" in capsys.readouterr().out
    other = tmp_path / "other.json"
    other.write_text(json.dumps(_other_person(packet)))
    assert main(["ingest", "phenopacket", str(other), "--dataset", "rd"]) == 1
    assert "another-person" in capsys.readouterr().err
