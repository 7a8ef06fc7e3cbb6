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
