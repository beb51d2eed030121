"""Canary rollouts: the InferenceService with a candidate (checked against KServe 0.21's schema),
the check against two real model servers over HTTP, and the promote/roll-back flow (its API
calls against the fake; KServe's controller, which makes the canary ready, cannot run here)."""

from __future__ import annotations

import math

import pytest

from components.cluster import canary, core, serving
from components.common import k8s, k8s_api
from components.common.errors import UserError
from tests.k8s_fakes import FakeCustomObjects
from tests.manifests import k8s_schema

NEW, OLD = "s3://b/models/new/", "s3://b/models/old/"
# model.json's model_version of each (a digest of the weights)
VERSIONS = {NEW: "9f8e7d6c5b4a", OLD: "0a1b2c3d4e5f"}


def settings(**kw) -> core.ClusterSettings:
    return core.ClusterSettings(**kw)


# --- the object ----------------------------------------------------------------------------


def test_a_canary_is_a_second_predictor_that_differs_only_in_its_model():
    cand = k8s.Canary("m-1", NEW, 20)
    isvc = serving.inference_service_object(settings(), "taxi-fare", OLD, predictor_name="m-0", canary=cand)
    k8s_schema.validate(isvc)
    stable = isvc["spec"]["predictor"]
    (entry,) = isvc["spec"]["canary"]
    assert stable["name"] == "m-0" and stable["model"]["storageUri"] == OLD
    assert entry["trafficPercent"] == 20 and entry["predictor"]["name"] == "m-1"
    assert entry["predictor"]["model"] == {**stable["model"], "storageUri": NEW}
    # KServe refuses replica and autoscaling settings on a canary (validateCanarySpecs).
    assert set(entry["predictor"]) == {"name", "model"}
    assert k8s.predictor_service("taxi-fare", "m-1") == "taxi-fare-m-1-predictor"
    assert k8s.predictor_service("taxi-fare") == "taxi-fare-predictor"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deployment_mode": "Knative", "min_replicas": 0}, "Standard mode only"),
        ({"predictor_name": "m-1"}, "other than the stable predictor's"),
    ],
)
def test_canary_settings_kserve_would_refuse_are_refused_in_one_line(kwargs, message):
    with pytest.raises(UserError, match=message):
        k8s.inference_service("taxi-fare", OLD, canary=k8s.Canary("m-1", NEW, 10), **kwargs)


@pytest.mark.parametrize(("name", "pct"), [("M_1", 10), ("m-1", 101), ("m-1", -1)])
def test_a_canary_needs_a_dns_name_and_a_percentage(name, pct):
    with pytest.raises(UserError):
        k8s.Canary(name, NEW, pct)


# --- the check, over HTTP against real model servers ----------------------------------------


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two `python -m components.serve` processes: a model and a retrain of it (another seed)."""
    from tests.components.serve.conftest import train_model_dir
    from tests.components.serve.harness import running_server

    root = tmp_path_factory.mktemp("canary")
    dirs = {
        "stable": train_model_dir(root / "stable", seed=0),
        "retrain": train_model_dir(root / "retrain", seed=1),
    }
    from contextlib import ExitStack

    with ExitStack() as stack:
        yield {
            k: stack.enter_context(running_server(d, root / f"{k}.log")).url for k, d in dirs.items()
        }  # fmt: skip


def predictor(url: str):
    return canary.http_predictor(url, "taxi-fare")


@pytest.mark.slow
def test_a_retrained_model_passes_the_check(servers):
    verdict = canary.compare(
        predictor(servers["stable"]), predictor(servers["retrain"]), canary.CanaryCheck(requests=5)
    )
    assert verdict.promote, verdict.reason
    assert verdict.error_rate == 0.0 and verdict.max_abs_diff <= 2.0
    assert len(verdict.stable_fares) == len(canary.REFERENCE_TRIPS) == len(verdict.candidate_fares)


@pytest.mark.slow
def test_fares_outside_the_tolerance_fail_the_check(servers):
    """The same two models, with a tolerance tighter than their real difference."""
    loose = canary.compare(
        predictor(servers["stable"]), predictor(servers["retrain"]), canary.CanaryCheck(requests=1)
    )
    assert loose.max_abs_diff > 0
    tight = canary.CanaryCheck(requests=1, abs_tolerance=loose.max_abs_diff / 2, rel_tolerance=0.0)
    verdict = canary.compare(predictor(servers["stable"]), predictor(servers["retrain"]), tight)
    assert not verdict.promote
    assert "reference trips off the stable model's fare" in verdict.reason


def test_a_candidate_that_does_not_answer_fails_the_check(servers):
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    verdict = canary.compare(predictor(servers["stable"]), predictor(dead), canary.CanaryCheck(requests=2))
    assert not verdict.promote and verdict.error_rate == 1.0
    assert "every call to the candidate failed" in verdict.reason and math.isnan(verdict.max_abs_diff)


def test_one_failing_call_in_many_is_over_a_zero_error_budget():
    calls = iter([RuntimeError] + [None] * 9)

    def flaky(trips):
        if next(calls) is RuntimeError:
            raise UserError("HTTP 503")
        return [10.0] * len(trips)

    verdict = canary.compare(lambda t: [10.0] * len(t), flaky, canary.CanaryCheck(requests=10))
    assert not verdict.promote and verdict.error_rate == pytest.approx(0.1)
    assert "1/10 calls failed: HTTP 503" in verdict.reason
    lenient = canary.compare(
        lambda t: [10.0] * len(t), lambda t: [10.5] * len(t), canary.CanaryCheck(requests=2)
    )
    assert lenient.promote


# --- the flow -------------------------------------------------------------------------------


class Cluster:
    """The fake API plus what KServe's controller would report about the canary."""

    def __init__(self):
        self.api = FakeCustomObjects()
        self.deployed: list[dict] = []
        self.canary_ready = True
        self.years: dict[str, tuple[int, int]] = {}
        self.versions = dict(VERSIONS)

    def version_of(self, uri):
        return self.versions.get(uri)

    def build(self, uri, predictor_name=None, canary=None, model_version=None):
        return serving.inference_service_object(
            settings(),
            "taxi-fare",
            uri,
            predictor_name=predictor_name,
            canary=canary,
            model_version=model_version,
        )

    def deploy(self, obj):
        self.deployed.append(obj)
        k8s_api.apply(obj, api=self.api)
        return {
            "name": "taxi-fare",
            "namespace": "fareflow",
            "storage_uri": obj["spec"]["predictor"]["model"]["storageUri"],
        }

    def stored(self):
        return self.api.store[("serving.kserve.io", "v1beta1", "fareflow", "inferenceservices", "taxi-fare")]

    def get_with_status(self):
        original = self.api.get_namespaced_custom_object

        def get(group, version, ns, plural, name):
            obj = original(group, version, ns, plural, name)
            if (obj.get("spec") or {}).get("canary"):
                self.api.seen_canary = obj["spec"]
                self.api.seen_canary_labels = obj["metadata"].get("labels") or {}
            entries = (obj.get("spec") or {}).get("canary") or []
            statuses = [{"name": e["predictor"]["name"], "ready": self.canary_ready, "trafficPercent": e["trafficPercent"]} for e in entries]  # fmt: skip
            return {**obj, "status": {"canaryStatuses": statuses}}

        self.api.get_namespaced_custom_object = get


@pytest.fixture
def cluster():
    c = Cluster()
    c.get_with_status()
    return c


def run(cluster, uri, stable_fares, candidate_fares, **check):
    """A rollout where the predictor named for ``uri`` answers ``candidate_fares`` and any
    other predictor ``stable_fares``."""

    def predictor_url(pname):
        return "candidate" if pname == canary.canary_name(uri) else "stable"

    def predictor_for(url):
        answer = candidate_fares if url == "candidate" else stable_fares
        return lambda trips: list(answer)[: len(trips)]

    ticks = iter(range(0, 10_000, 100))
    return canary.rollout(
        cluster.build, uri, canary.CanaryCheck(**check), deploy=cluster.deploy, predictor_url=predictor_url,
        model_name="taxi-fare", api=cluster.api, poll=0, sleep=lambda s: None, clock=lambda: next(ticks),
        predictor_for=predictor_for, years=lambda uri: cluster.years.get(uri, (2014, 2016)),
        version_of=lambda uri: cluster.version_of(uri),
    )  # fmt: skip


def fares(x: float) -> list[float]:
    return [x] * len(canary.REFERENCE_TRIPS)


def test_the_first_model_is_deployed_without_a_canary(cluster):
    out = run(cluster, OLD, fares(10), fares(10))
    assert out["action"] == "deployed" and "nothing to compare" in out["reason"]
    assert "canary" not in cluster.stored()["spec"]


def test_a_good_candidate_is_promoted_without_a_restart(cluster):
    run(cluster, OLD, fares(10), fares(10))
    out = run(cluster, NEW, fares(10), fares(10.4))
    assert out["action"] == "promoted", out["reason"]
    assert out["previous"] == OLD and out["error_rate"] == 0.0
    stored = cluster.stored()["spec"]
    # KServe's promotion: the stable predictor takes the canary's name and model; no canary left.
    assert stored["predictor"]["name"] == canary.canary_name(NEW)
    assert stored["predictor"]["model"]["storageUri"] == NEW and "canary" not in stored
    # On the way, the candidate served beside the untouched stable model.
    beside = cluster.api.seen_canary
    assert beside["predictor"]["model"]["storageUri"] == OLD
    assert beside["canary"][0]["predictor"]["model"]["storageUri"] == NEW


def test_a_bad_candidate_is_rolled_back_and_the_stable_model_keeps_serving(cluster):
    run(cluster, OLD, fares(10), fares(10))
    out = run(cluster, NEW, fares(10), fares(25))
    assert out["action"] == "rolled back" and "off the stable model's fare" in out["reason"]
    stored = cluster.stored()["spec"]
    assert stored["predictor"]["model"]["storageUri"] == OLD and "canary" not in stored


def test_a_candidate_that_never_gets_ready_is_rolled_back_after_its_timeout(cluster):
    run(cluster, OLD, fares(10), fares(10))
    cluster.canary_ready = False
    out = run(cluster, NEW, fares(10), fares(10), ready_timeout_s=300)
    assert out["action"] == "rolled back" and "not ready after 300s" in out["reason"]
    assert "canary" not in cluster.stored()["spec"]


def test_the_model_already_serving_is_left_as_it_is(cluster):
    run(cluster, OLD, fares(10), fares(10))
    out = run(cluster, OLD, fares(10), fares(99))
    assert out["action"] == "unchanged"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--summary-json", "/nope/s.json"],
            "--summary-json /nope/s.json: /nope is not a writable directory",
        ),
        ([], "no Kubernetes configuration"),
    ],
)
def test_deploy_cli_errors_are_one_line(tmp_path, monkeypatch, capsys, extra, message):
    from components.cluster.__main__ import main

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert main(["--model-uri", NEW, *extra]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("fareflow deploy: error: ") and message in line


def test_reference_trips_use_a_year_both_models_price(tmp_path):
    assert canary.pick_year((2014, 2016), (2015, 2018)) == 2016
    assert canary.pick_year((2014, 2016), (2018, 2020)) is None
    assert {t["ORIGINDATETIME_TR"][6:10] for t in canary.reference_trips(2017)} == {"2017"}
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.json").write_text('{"extent": {"year": [2015, 2015]}}')
    assert canary.model_years(str(model)) == (2014, 2016)  # the serving margin of one year
    (model / "model.json").write_text("{}")
    assert canary.model_years(str(model)) == canary.CONTRACT_YEARS  # a model without an extent
    with pytest.raises(UserError, match="no model.json"):
        canary.model_years(str(tmp_path / "none"))


def test_models_with_no_common_year_are_judged_on_the_error_rate_alone(cluster):
    run(cluster, OLD, fares(10), fares(10))
    cluster.years = {OLD: (2014, 2016), NEW: (2018, 2020)}
    out = run(cluster, NEW, fares(10), fares(99))
    assert out["action"] == "promoted" and "fares not compared" in out["reason"]


# --- the models' versions in the decision (issue 17) ----------------------------------------


def label(obj: dict) -> str | None:
    return (obj["metadata"].get("labels") or {}).get(serving.MODEL_VERSION_LABEL)


def test_the_decision_names_the_candidates_and_the_serving_models_versions(cluster):
    first = run(cluster, OLD, fares(10), fares(10))
    assert (
        first["decision"] == "deployed model version 0a1b2c3d4e5f"
        and first["model_version"] == "0a1b2c3d4e5f"
    )
    assert label(cluster.stored()) == "0a1b2c3d4e5f"

    bad = run(cluster, NEW, fares(10), fares(25))
    assert bad["decision"] == "rolled back model version 9f8e7d6c5b4a, serving 0a1b2c3d4e5f"
    assert (bad["model_version"], bad["candidate_version"], bad["previous_version"]) == (
        "0a1b2c3d4e5f", "9f8e7d6c5b4a", "0a1b2c3d4e5f",
    )  # fmt: skip
    # beside the candidate, the InferenceService's label still names the stable model it serves
    assert cluster.api.seen_canary_labels[serving.MODEL_VERSION_LABEL] == "0a1b2c3d4e5f"
    assert label(cluster.stored()) == "0a1b2c3d4e5f"

    good = run(cluster, NEW, fares(10), fares(10.4))
    assert good["decision"] == "promoted model version 9f8e7d6c5b4a over 0a1b2c3d4e5f"
    assert (good["model_version"], good["previous_version"]) == ("9f8e7d6c5b4a", "0a1b2c3d4e5f")
    assert label(cluster.stored()) == "9f8e7d6c5b4a"

    same = run(cluster, NEW, fares(10), fares(10))
    assert same["decision"] == "unchanged: model version 9f8e7d6c5b4a already serves"


def test_a_candidate_not_ready_is_rolled_back_by_its_version(cluster):
    run(cluster, OLD, fares(10), fares(10))
    cluster.canary_ready = False
    out = run(cluster, NEW, fares(10), fares(10), ready_timeout_s=60)
    assert out["decision"] == "rolled back model version 9f8e7d6c5b4a, serving 0a1b2c3d4e5f"


def test_a_stable_model_without_the_label_is_named_by_its_model_json_or_as_unversioned(cluster):
    """An InferenceService deployed before the label: the serving model's version comes from its
    model.json; a model from before versions (or whose directory is gone) reads "unversioned"."""
    serving_old_without_label(cluster)  # no label
    out = run(cluster, NEW, fares(10), fares(10))
    assert out["decision"] == "promoted model version 9f8e7d6c5b4a over 0a1b2c3d4e5f"

    serving_old_without_label(cluster)
    cluster.versions = {NEW: "9f8e7d6c5b4a"}  # the old model has no version
    out = run(cluster, NEW, fares(10), fares(25))
    assert out["decision"] == "rolled back model version 9f8e7d6c5b4a, serving unversioned"

    def gone(uri):
        if uri == OLD:
            raise UserError(f"{uri}: no model.json (not a fareflow model directory)")
        return "9f8e7d6c5b4a"

    serving_old_without_label(cluster)
    cluster.version_of = gone
    out = run(cluster, NEW, fares(10), fares(25))
    assert out["decision"] == "rolled back model version 9f8e7d6c5b4a, serving unversioned"


def serving_old_without_label(cluster: Cluster) -> None:
    cluster.api.store.clear()
    cluster.deploy(serving.inference_service_object(settings(), "taxi-fare", OLD))
    assert label(cluster.stored()) is None


def test_model_version_reads_model_json(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.json").write_text('{"model_version": "3f1c0e9a2b7d"}')
    assert canary.model_version(str(model)) == "3f1c0e9a2b7d"
    (model / "model.json").write_text("{}")
    assert canary.model_version(str(model)) is None
    with pytest.raises(UserError, match="no model.json"):
        canary.model_version(str(tmp_path / "none"))


@pytest.mark.parametrize(
    ("summary", "code", "line"),
    [
        (
            {"action": "rolled back", "decision": "rolled back model version 9f8e7d6c5b4a, serving 0a1b2c3d4e5f",
             "reason": "error rate 10.0% > 0.0%"},
            3,
            "InferenceService fareflow/taxi-fare: rolled back model version 9f8e7d6c5b4a, serving 0a1b2c3d4e5f: "
            "error rate 10.0% > 0.0%",
        ),
        (
            {"action": "promoted", "decision": "promoted model version 9f8e7d6c5b4a over 0a1b2c3d4e5f",
             "reason": "error rate 0.0%, reference fares within tolerance (worst diff $0.40)"},
            0,
            "InferenceService fareflow/taxi-fare: promoted model version 9f8e7d6c5b4a over 0a1b2c3d4e5f: "
            "error rate 0.0%, reference fares within tolerance (worst diff $0.40)",
        ),
    ],
)  # fmt: skip
def test_deploy_cli_prints_the_decision_with_both_versions(monkeypatch, capsys, summary, code, line):
    from components.cluster.__main__ import main

    monkeypatch.setattr(core, "load_settings", lambda ns: core.ClusterSettings(namespace=ns))
    monkeypatch.setattr(serving, "deploy_canary", lambda *a, **kw: dict(summary))
    assert main(["--model-uri", NEW, "--canary-percent", "20"]) == code
    assert capsys.readouterr().out.strip().splitlines()[-1] == line
