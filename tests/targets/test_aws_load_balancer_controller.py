"""EKS: the AWS Load Balancer Controller that serves Kong's TargetGroupBinding (the ALB's only way to Kong's pods).

Upstream evidence: kubernetes-sigs/aws-load-balancer-controller docs/deploy/installation.md (IMDSv2 hop limit ->
--aws-region/--aws-vpc-id; the TargetGroupBinding-only IAM subset), docs/deploy/pod_readiness_gate.md (the
namespace label), and the chart 3.5.0 values (../shared/reference/helm/aws-load-balancer-controller/3.5.0)."""

from __future__ import annotations

import yaml

from compiler.ir.edge import lb_target_name
from compiler.targets import helm, kubernetes
from tests.targets.test_identity import REFERENCE, _lib, _module_call, _tf, aws_statements

RELEASE = "aws-load-balancer-controller"
# installation.md, "You only want the LBC to add and remove IPs to already existing target groups"
TGB_ONLY_ACTIONS = {"ec2:DescribeVpcs", "ec2:DescribeSecurityGroups", "ec2:DescribeInstances",
                    "elasticloadbalancing:DescribeTargetGroups", "elasticloadbalancing:DescribeTargetHealth",
                    "elasticloadbalancing:ModifyTargetGroup", "elasticloadbalancing:ModifyTargetGroupAttributes",
                    "elasticloadbalancing:RegisterTargets", "elasticloadbalancing:DeregisterTargets"}
AWS = [r for r in REFERENCE.regions if r.cloud == "aws"]


def _helmfile(region):
    files = helm.emit_region(REFERENCE, region)
    return files, yaml.safe_load(files[f"helm/{region.name}/helmfile.yaml"])


def test_every_aws_region_installs_the_controller_before_kong():
    assert AWS
    for region in AWS:
        _, hf = _helmfile(region)
        names = [r["name"] for r in hf["releases"]]
        assert RELEASE in names, region.name
        rel = hf["releases"][names.index(RELEASE)]
        assert (rel["namespace"], rel["chart"], rel["version"]) == ("kube-system", "eks/aws-load-balancer-controller",
                                                                   "3.5.0")
        assert names.index(RELEASE) < names.index("kong")
        kong = hf["releases"][names.index("kong")]
        assert f"kube-system/{RELEASE}" in kong["needs"]
        assert {"name": "eks", "url": "https://aws.github.io/eks-charts"} in hf["repositories"]
    for region in REFERENCE.regions:
        if region.cloud != "aws":
            assert RELEASE not in [r["name"] for r in _helmfile(region)[1]["releases"]]


def test_values_name_the_cluster_region_and_vpc():
    for region in AWS:
        files, hf = _helmfile(region)
        values = yaml.safe_load(files[f"helm/{region.name}/{RELEASE}.values.yaml"])
        assert values["clusterName"] == region.cluster_name
        assert values["region"] == region.cloud_region
        assert values["replicaCount"] == 2
        assert values["enableServiceMutatorWebhook"] is False  # no Service type LoadBalancer on the platform
        rel = next(r for r in hf["releases"] if r["name"] == RELEASE)
        gotmpl = next(v for v in rel["values"] if v.endswith(".gotmpl"))
        assert yaml.safe_load(files[f"helm/{region.name}/{gotmpl}"]) == {"vpcId": '{{ requiredEnv "AWS_VPC_ID" }}'}
        assert f"output -raw vpc_id" in files[f"helm/{region.name}/helmfile.yaml"]


def test_service_account_role_is_the_terraform_role_trusting_exactly_it():
    for region in AWS:
        files = helm.emit_region(REFERENCE, region)
        sa = yaml.safe_load(files[f"helm/{region.name}/{RELEASE}.values.yaml"])["serviceAccount"]
        ident = region.identity(RELEASE)
        assert sa["name"] == ident.service_account == RELEASE
        assert sa["annotations"]["eks.amazonaws.com/role-arn"] == ident.principal
        assert ident.principal.endswith(f":role/{ident.name}")
        entry = _module_call(_tf(REFERENCE, region), region).get("identities")[RELEASE]
        assert entry["role_name"] == ident.name
        assert (entry["namespace"], entry["service_account"]) == ("kube-system", sa["name"])


def test_iam_policy_is_the_target_group_binding_subset():
    for region in AWS:
        files = _tf(REFERENCE, region)
        entry = dict(_module_call(files, region).get("identities")[RELEASE])
        stmts = aws_statements(_lib(files, "aws"), entry)
        assert {a for s in stmts for a in s["actions"]} == TGB_ONLY_ACTIONS
        for s in stmts:
            if "*" in s["resources"]:
                assert all(a.split(":")[1].startswith("Describe") for a in s["actions"]), s
            else:  # the writes: the region's Kong target group only
                assert s["resources"] == [f"arn:aws:elasticloadbalancing:<expr>:<expr>:targetgroup/"
                                          f"{lb_target_name(region)}/*"], s


def test_kong_namespace_carries_the_readiness_gate_label_with_the_binding():
    for region in AWS:
        files = kubernetes.emit_region(REFERENCE, region)
        text = files[f"kubernetes/{region.name}/kong-target-group-binding.yaml.tmpl"]
        docs = [d for d in yaml.safe_load_all(text) if d]
        assert [d["kind"] for d in docs] == ["Namespace", "TargetGroupBinding"]  # the label before the binding
        assert docs[0]["metadata"]["name"] == docs[1]["metadata"]["namespace"] == "kong"
        assert docs[0]["metadata"]["labels"]["elbv2.k8s.aws/pod-readiness-gate-inject"] == "enabled"
        assert "not deployed by platformc" not in text
