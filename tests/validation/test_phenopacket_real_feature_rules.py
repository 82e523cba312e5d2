"""The repeated-feature rule compares a phenotypic feature only with the features of its own term.

It compared each feature with every feature before it: a registry phenopacket with 4,000 features took 0.36 s
to validate and 16,000 about 6 s (quadratic), where the rest of validation is linear. Counted here in
comparisons, not time."""

from __future__ import annotations

from gateway.validation.phenopacket import semantic_issues


class CountedFeature(dict):
    compared = 0

    def __eq__(self, other):
        CountedFeature.compared += 1
        return dict.__eq__(self, other)

    __hash__ = None  # type: ignore[assignment]


def test_features_of_different_terms_are_never_compared():
    features = [CountedFeature(type={"id": f"HP:{n:07d}", "label": f"term {n}"}) for n in range(1, 401)]
    features.append(CountedFeature(type={"id": "HP:0000007", "label": "term 7"}))  # a repeat, listed as it was
    features.append(CountedFeature(type={"id": "HP:0000008", "label": "term 8"}, excluded=True))
    CountedFeature.compared = 0
    issues = semantic_issues({"phenotypicFeatures": features}, target="input")
    assert [(i.code, i.location) for i in issues if "feature" in i.code] == [
        ("duplicate-feature", "/phenotypicFeatures/400/type/id"),
        ("conflicting-feature", "/phenotypicFeatures/401/type/id"),
    ]
    assert CountedFeature.compared <= 2  # the two repeats against their own term's feature, nothing else
