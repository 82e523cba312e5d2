"""Network declarations in YAML and JSON; every mistake named with its file and JSON pointer."""

from __future__ import annotations

import json

import pytest

from gateway.network.peers import DEFAULT_TIMEOUT, NetworkConfigError, load_network


def test_yaml_and_json_give_the_same_network(tmp_path):
    doc = {
        "peers": [
            {"url": "http://de.example:8080/api/", "beaconId": "de.example.node", "timeout": 2, "assemblyId": "hg19"},
            {"url": "https://fr.example/api"},
        ],
        "include_local": True,
    }
    (tmp_path / "n.json").write_text(json.dumps(doc))
    (tmp_path / "n.yaml").write_text(
        "peers:\n"
        "  - url: http://de.example:8080/api/\n    beaconId: de.example.node\n    timeout: 2\n    assemblyId: hg19\n"
        "  - url: https://fr.example/api\n"
        "include_local: true\n"
    )
    from_json, from_yaml = load_network(tmp_path / "n.json"), load_network(tmp_path / "n.yaml")
    assert from_json == from_yaml
    de, fr = from_json.peers
    assert de.url == "http://de.example:8080/api" and de.assembly == "GRCh37" and de.timeout == 2.0
    assert fr.timeout == DEFAULT_TIMEOUT and fr.beacon_id is None
    assert from_json.include_local and from_json.budget == DEFAULT_TIMEOUT  # the longest peer timeout
    assert from_json.max_response_bytes == 10 * 1024 * 1024


@pytest.mark.parametrize(
    "doc, pointer, words",
    [
        ({"peers": [{"url": "ftp://x/api"}]}, "/peers/0/url", "http(s) URL"),
        ({"peers": [{"url": "http://x/api", "timeout": 0}]}, "/peers/0/timeout", "seconds"),
        ({"peers": [{"url": "http://x/api", "timeout": True}]}, "/peers/0/timeout", "seconds"),
        ({"peers": [{"url": "http://x/api", "assemblyId": "GRCm39"}]}, "/peers/0/assemblyId", "GRCh37 or GRCh38"),
        ({"peers": [{"url": "http://x/api", "beaconId": "not an id"}]}, "/peers/0/beaconId", "reverse-DNS"),
        ({"peers": [{"url": "http://x/api", "token": "s3cret"}]}, "/peers/0/token", "unknown key"),
        ({"peers": [{"url": "http://x/api"}, {"url": "http://x/api/"}]}, "/peers/1/url", "twice"),
        ({"peers": []}, "/peers", "at least one peer"),
        ({"peers": "http://x/api"}, "/peers", "must be a list"),
        ({"peers": [{"url": "http://x/api"}], "budget": -1}, "/budget", "seconds"),
        ({"peers": [{"url": "http://x/api"}], "max_response_bytes": 10}, "/max_response_bytes", "1024"),
        ({"peers": [{"url": "http://x/api"}], "include_local": "yes"}, "/include_local", "true or false"),
        ({"peers": [{"url": "http://x/api"}], "peer": []}, "/peer", "unknown key"),
    ],
)
def test_mistakes_are_reported_with_their_location(tmp_path, doc, pointer, words):
    path = tmp_path / "network.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(NetworkConfigError) as caught:
        load_network(path)
    locations = {i.location: i.message for i in caught.value.issues}
    assert f"{path}#{pointer}" in locations, locations
    assert words in locations[f"{path}#{pointer}"]


def test_unreadable_and_broken_files(tmp_path):
    with pytest.raises(NetworkConfigError, match="cannot read"):
        load_network(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("peers:\n  - url: [unclosed\n")
    with pytest.raises(NetworkConfigError) as caught:
        load_network(broken)
    assert caught.value.issues[0].location.startswith(f"{broken}:")


def test_a_mapping_in_the_node_configuration_is_accepted():
    config = load_network({"peers": ["http://x/api"], "budget": 1.5})
    assert config.peers[0].url == "http://x/api" and config.budget == 1.5
