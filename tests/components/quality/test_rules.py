from __future__ import annotations

import pytest

from components.common.errors import UserError
from components.quality.rules import load_rules, ruleset_from_yaml


def test_default_rules_cover_the_issue_list_in_order():
    rules = load_rules()
    assert rules.names == (
        "missing_pickup_time",
        "missing_fare",
        "missing_origin_coordinates",
        "missing_destination_coordinates",
        "fare_out_of_range",
        "coordinates_outside_dc",
        "pickup_outside_file_month",
        "dropoff_before_pickup",
        "duplicate_trip",
    )
    assert all(r.description and r.reject_if for r in rules.rules)
    fare = next(r for r in rules.rules if r.name == "fare_out_of_range")
    assert fare.reject_if == "FAREAMOUNT < 3.25 OR FAREAMOUNT > 180.0"  # params substituted
    assert "$3.25" in fare.description  # a literal $ that is no placeholder is kept
    assert next(r for r in rules.rules if r.name == "duplicate_trip").scope == "partition"
    assert rules.max_total_reject_pct == 50.0


def test_user_file_overrides_adds_disables_and_sets_params(tmp_path):
    f = tmp_path / "rules.yaml"
    f.write_text(
        """
params: {fare_max: 250, max_km: 40}
gate: {max_total_reject_pct: 60}
rules:
  - name: missing_fare
    max_reject_pct: 1.5
  - name: duplicate_trip
    enabled: false
  - name: long_trip
    description: more than ${max_km} km
    reject_if: MILEAGE > ${max_km} / 1.609
    max_reject_pct: 5
"""
    )
    rules = load_rules(f)
    by = {r.name: r for r in rules.rules}
    assert "duplicate_trip" not in by
    assert rules.names[-1] == "long_trip" and by["long_trip"].reject_if == "MILEAGE > 40 / 1.609"
    assert by["long_trip"].description == "more than 40 km"
    assert by["missing_fare"].max_reject_pct == 1.5
    assert by["missing_fare"].reject_if == "FAREAMOUNT IS NULL"  # other fields kept
    assert by["fare_out_of_range"].reject_if.endswith("> 250")
    assert rules.max_total_reject_pct == 60


def test_replace_true_starts_from_nothing():
    rules = load_rules(
        text="replace: true\nrules:\n  - {name: only, description: d, reject_if: FAREAMOUNT > 10}\n"
    )
    assert rules.names == ("only",)
    assert rules.max_total_reject_pct is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "rules:\n  - {name: bad, description: d, reject_if: NO_SUCH_COLUMN > 1}\n",
            "rule 'bad': invalid reject_if",
        ),
        (
            "rules:\n  - {name: x, description: d, reject_if: 'FAREAMOUNT > ${nope}'}\n",
            "unknown parameter ${nope}",
        ),
        ("rules:\n  - {name: Bad-Name, description: d, reject_if: 'true'}\n", "name must match"),
        (
            "rules:\n  - {name: x, description: d, reject_if: 'true', colour: red}\n",
            "unknown key(s) ['colour']",
        ),
        ("rules:\n  - {name: missing_fare, max_reject_pct: 140}\n", "between 0 and 100"),
        ("rulez: []\n", "unknown key(s) ['rulez']"),
        ("rules: [\n", "not valid YAML"),
        ("rules:\n  - {name: x, description: d, reject_if: 'true', scope: table}\n", "scope must be one of"),
    ],
)
def test_bad_rule_files_fail_with_an_actionable_message(text, message):
    with pytest.raises(UserError) as err:
        load_rules(text=text)
    assert message in str(err.value)


def test_threshold_overrides_and_round_trip():
    rules = load_rules().with_thresholds({"missing_fare": 0.1, "total": None})
    assert next(r for r in rules.rules if r.name == "missing_fare").max_reject_pct == 0.1
    assert rules.max_total_reject_pct is None
    assert ruleset_from_yaml(rules.to_yaml()) == rules
    with pytest.raises(UserError, match="unknown rule"):
        rules.with_thresholds({"no_such_rule": 1})
