"""Deployment: deploy/kubernetes/ validates against the Kubernetes OpenAPI schemas
(kubernetes-validate, strict: unknown fields are errors) for the oldest and newest versions
supported, and agrees with the code: the `recsys` commands and options exist, probe paths are
routes of the Flask app, ports match serving/gunicorn_conf.py, the CronJob and the API share one
work directory and one config."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from code_facts import cli_error, flask_routes, gunicorn_default_bind, option, unknown_env_names
from support import REPO

from recsys.config import load_config

DIR = REPO / "deploy" / "kubernetes"
MANIFESTS = sorted(p for p in DIR.glob("*.yaml") if p.name != "kustomization.yaml")
# CronJob.spec.timeZone and Job.spec.podFailurePolicy are GA from 1.31; the newest bundled schema.
VERSIONS = ["1.31.0", kubernetes_validate.latest_version()]


def load(name: str) -> dict:
    (resource,) = yaml.safe_load_all((DIR / name).read_text())
    return resource


def pod_spec(resource: dict) -> dict:
    if resource["kind"] == "CronJob":
        return resource["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return resource["spec"]["template"]["spec"]


def container(resource: dict) -> dict:
    (only,) = pod_spec(resource)["containers"]
    return only


def env(resource: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container(resource).get("env", [])}


def mounts(resource: dict) -> dict[str, dict]:
    """mountPath -> the volume mounted there."""
    volumes = {v["name"]: v for v in pod_spec(resource)["volumes"]}
    return {m["mountPath"]: volumes[m["name"]] for m in container(resource)["volumeMounts"]}


def volume_under(resource: dict, path: str) -> tuple[str, dict]:
    """(mountPath, volume) of the mount that holds `path`."""
    found = [(m, v) for m, v in mounts(resource).items() if Path(path).is_relative_to(m)]
    assert found, f"{path} is on no volume of {resource['metadata']['name']}"
    return max(found, key=lambda pair: len(pair[0]))


def validate(resource: dict, version: str) -> None:
    kubernetes_validate.validate(resource, version, strict=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_strictly(path, version):
    resources = list(yaml.safe_load_all(path.read_text()))
    assert resources
    for resource in resources:
        validate(resource, version)


@pytest.mark.parametrize(
    "breakage",
    ["misspelled field", "wrong type", "missing required"],
)
def test_the_validator_refuses_a_broken_manifest(breakage):
    deployment = copy.deepcopy(load("deployment.yaml"))
    api = container(deployment)
    if breakage == "misspelled field":
        api["readinesProbe"] = api.pop("readinessProbe")
    elif breakage == "wrong type":
        deployment["spec"]["replicas"] = "two"
    else:
        del api["image"], api["name"]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, VERSIONS[-1])


def test_kustomization_applies_every_manifest_and_names_the_image():
    kustomization = yaml.safe_load((DIR / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == [p.name for p in MANIFESTS]
    (image,) = kustomization["images"]
    for name in ("cronjob.yaml", "deployment.yaml"):
        assert container(load(name))["image"].rpartition(":")[0] == image["name"]


def test_cronjob_runs_the_nightly_once_at_a_time():
    cronjob = load("cronjob.yaml")
    assert cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    nightly = container(cronjob)
    argv = nightly["args"]
    assert nightly["command"] == ["recsys"] and argv[0] == "nightly"
    assert cli_error(argv) is None, cli_error(argv)
    # Retries resume a failed run; bad data (65) and usage errors (2) would fail again.
    rule = cronjob["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"][0]
    assert rule["action"] == "FailJob" and set(rule["onExitCodes"]["values"]) == {2, 65}
    assert rule["onExitCodes"]["containerName"] == nightly["name"]


def test_api_probes_ports_and_token_agree_with_the_app(tmp_path):
    deployment = load("deployment.yaml")
    api = container(deployment)
    argv = api["args"]
    assert api["command"] == ["recsys"] and argv[0] == "serve"
    assert cli_error(argv) is None, cli_error(argv)
    (port,) = api["ports"]
    _, default_port = gunicorn_default_bind()
    assert int(option(argv, "--port")) == port["containerPort"] == default_port
    assert option(argv, "--host") == "0.0.0.0"  # reachable from the Service, not loopback only
    routes = flask_routes(tmp_path / "var")
    probes = {kind: api[kind]["httpGet"] for kind in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in [*probes.values(), api["startupProbe"]["httpGet"]]:
        assert probe["path"] in routes and probe["port"] == port["name"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] in routes
    assert int(annotations["prometheus.io/port"]) == port["containerPort"]
    token = env(deployment)["RECSYS_ADMIN_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert token["name"] and token["key"]
    assert {"/admin/reload", "/admin/rollback"} <= routes
    assert api["resources"]["requests"] and api["resources"]["limits"]["memory"]


def test_service_and_budget_select_the_api_pods():
    deployment = load("deployment.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = load("service.yaml")
    assert service["spec"]["selector"].items() <= labels.items()
    (port,) = service["spec"]["ports"]
    assert port["targetPort"] == container(deployment)["ports"][0]["name"]
    assert load("pdb.yaml")["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_nightly_and_api_share_one_work_directory_and_config():
    cronjob, deployment, claim = load("cronjob.yaml"), load("deployment.yaml"), load("pvc.yaml")
    assert "ReadWriteMany" in claim["spec"]["accessModes"]  # pods on several nodes mount it
    workdirs = {r["kind"]: env(r)["RECSYS_WORKDIR"]["value"] for r in (cronjob, deployment)}
    assert len(set(workdirs.values())) == 1, workdirs
    configmap = load("configmap.yaml")
    for resource in (cronjob, deployment):
        _, work = volume_under(resource, workdirs["CronJob"])
        assert work["persistentVolumeClaim"]["claimName"] == claim["metadata"]["name"]
        config_path = option(container(resource)["args"], "--config")
        mount, volume = volume_under(resource, config_path)
        assert volume["configMap"]["name"] == configmap["metadata"]["name"]
        assert str(Path(config_path).relative_to(mount)) in configmap["data"]
    data = option(container(cronjob)["args"], "--data")
    assert volume_under(cronjob, data)[1]["persistentVolumeClaim"]["claimName"] == "recsys-work"


def test_configmap_config_is_a_valid_recsys_config(tmp_path):
    (text,) = load("configmap.yaml")["data"].values()
    tomllib.loads(text)
    path = tmp_path / "recsys.toml"
    path.write_text(text)
    config = load_config(path)
    assert config.serving.poll_seconds > 0  # API pods notice a new CURRENT by polling


def test_every_recsys_variable_set_is_read_by_the_code():
    names = {
        name
        for path in MANIFESTS
        for resource in yaml.safe_load_all(path.read_text())
        if resource["kind"] in ("CronJob", "Deployment")
        for name in env(resource)
        if name.startswith("RECSYS_")
    }
    assert names and not unknown_env_names(names), unknown_env_names(names)
