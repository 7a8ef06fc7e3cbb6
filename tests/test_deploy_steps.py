"""Every Kubernetes manifest platformc writes is in a documented deploy step: the getting-started guide's for its
first region, and each region's own page. The SLO alert rules (a PrometheusRule) and the log retention CronJob
were written to generated/monitoring/<region>/kubernetes/, which no step applied: following the documentation, no
SLO alert was ever evaluated and no log index ever deleted."""

from __future__ import annotations

import re

import yaml

from compiler.emit import emit


def _manifest_dirs(outputs: dict, region: str) -> set[str]:
    """The directories (relative to generated/) of the region's files that hold Kubernetes objects (apiVersion and
    kind at the top of a document), the local Helm charts' templates aside (the helmfile installs those)."""
    dirs = set()
    for rel, (_owner, text) in outputs["generated"].items():
        if not rel.endswith(".yaml") or f"/{region}/" not in f"/{rel}" or "/charts/" in rel:
            continue
        if any(isinstance(d, dict) and "apiVersion" in d and "kind" in d for d in yaml.safe_load_all(text)):
            dirs.add(rel.rsplit("/", 1)[0])
    return dirs


def test_every_manifest_directory_is_applied_by_a_documented_step(any_case):
    outputs, _ = emit(any_case)
    first = any_case.regions[0]
    guide = outputs["docs"]["getting-started.md"][1]
    applied = set(re.findall(r"apply -f generated/(\S+?)/?`", guide))
    wanted = _manifest_dirs(outputs, first.name)
    assert {"kubernetes/" + first.name, f"monitoring/{first.name}/kubernetes"} <= wanted
    assert wanted <= applied, wanted - applied
    for region in any_case.regions:
        page = outputs["docs"][f"regions/{region.name}.md"][1]
        for d in _manifest_dirs(outputs, region.name):
            assert f"generated/{d}/" in page, (region.name, d)


def test_the_region_pages_deploy_steps_come_in_an_order_that_works(any_case):
    """The region page's deploy steps, read in order, never use something a later step makes: the Ansible run that
    publishes the internal CA (the releases' ExternalSecrets read it) and the StorageClasses (the releases' volume
    claims name them) before the helmfile; on AWS, AWS_VPC_ID exported before any helmfile (the load balancer
    controller's values file requires it: without it the whole apply aborts) and the controller and the
    TargetGroupBinding before the full helmfile; the manifests after it (they need its CRDs). The StorageClasses
    file's own header says the same."""
    from compiler.ir.names import STORAGE_CLASSES_FILE, TARGET_GROUP_BINDING_FILE
    outputs, _ = emit(any_case)
    for r in any_case.regions:
        page = outputs["docs"][f"regions/{r.name}.md"][1]
        section = page.split("## Helm releases", 1)[1].split("| release |", 1)[0]
        steps = re.findall(r"^\d+\. (.*)$", section, re.M)
        assert steps, r.name

        def first(pattern: str) -> int:
            return next(i for i, s in enumerate(steps) if re.search(pattern, s))
        full_helmfile = first(r"`helmfile -f \S+ apply`")
        manifests = first(re.escape(f"generated/kubernetes/{r.name}/`"))
        assert full_helmfile < manifests
        if r.hosts:
            assert first(r"ansible-playbook .* site\.yml") < full_helmfile
        storage = f"kubernetes/{r.name}/{STORAGE_CLASSES_FILE}"
        if storage in outputs["generated"]:
            assert first(re.escape(STORAGE_CLASSES_FILE)) < full_helmfile
            assert "Apply before `helmfile" in outputs["generated"][storage][1]
        if r.cloud == "aws":
            vpc = first(r"export AWS_VPC_ID=")
            assert vpc <= first(r"helmfile -f") and vpc < full_helmfile
            assert first(re.escape(TARGET_GROUP_BINDING_FILE)) < full_helmfile
