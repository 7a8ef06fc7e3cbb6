"""What an EKS cluster lacks out of the box and the other targets' output relies on: the metrics API every HPA reads
(metrics-server add-on), a provisioner and StorageClass for kube-prometheus-stack's Prometheus volumes (the EBS
CSI driver add-on with its IRSA role, the kubernetes target's encrypted default class), add-ons created over
EKS's bootstrap copies (resolve_conflicts_on_create), and the GPU label cluster-autoscaler needs on GPU pools."""

from __future__ import annotations

import io
import re

import pytest
import yaml

from compiler.ir.identity import EBS_CSI_DRIVER, EBS_CSI_SERVICE_ACCOUNT, aws_role_name
from compiler.ir.machines import AWS_GPU_LABEL, aws_gpu_accelerator
from compiler.ir.names import EBS_CSI_PROVISIONER, EBS_STORAGE_CLASS, SYSTEM_NAMESPACE
from compiler.targets import helm, kubernetes, terraform
from compiler.targets.terraform.values import node_pools
from tests.conftest import require_module
from tests.targets.hcl_support import unquote


def uq(values) -> list:
    return [unquote(v) for v in values]


def _blocks(doc: dict, kind: str):
    for entry in doc.get(kind, []):
        for rtype, body in entry.items():
            for name, inner in body.items():
                yield unquote(rtype), unquote(name), inner


@pytest.fixture(scope="module")
def aws_module(reference):
    """The AWS kubernetes module's main.tf, parsed."""
    hcl2 = require_module("hcl2")
    text = terraform.emit_global(reference)["terraform/modules/aws/kubernetes/main.tf"]
    return hcl2.load(io.StringIO(text))


def _aws_regions(plan):
    regions = [r for r in plan.regions if r.cloud == "aws"]
    assert regions
    return regions


def _addons(doc) -> dict[str, dict]:
    """add-on name -> its resource body (for_each sets expanded)."""
    out = {}
    for rtype, _, body in _blocks(doc, "resource"):
        if rtype != "aws_eks_addon":
            continue
        name = unquote(body["addon_name"])
        if name == "${each.key}":
            fe = unquote(body["for_each"])
            for n in re.findall(r'"([^"]+)"', fe) if isinstance(fe, str) else fe:
                out[n] = body
        else:
            out[name] = body
    return out


def test_eks_gets_the_metrics_server_and_ebs_csi_add_ons(aws_module):
    """By the names CreateAddon accepts (EKS user guide: community add-ons; Amazon EBS CSI driver)."""
    addons = _addons(aws_module)
    assert {"metrics-server", "aws-ebs-csi-driver", "vpc-cni", "coredns", "kube-proxy"} <= set(addons)
    assert unquote(addons["aws-ebs-csi-driver"]["service_account_role_arn"]) == "${aws_iam_role.ebs_csi.arn}"


def test_every_add_on_overwrites_the_bootstrap_copy_on_create(aws_module):
    """vpc-cni with enableNetworkPolicy over EKS's own aws-node fails with ConfigurationConflict without it."""
    for name, body in _addons(aws_module).items():
        assert unquote(body.get("resolve_conflicts_on_create")) == "OVERWRITE", name
        assert unquote(body.get("resolve_conflicts_on_update")) == "OVERWRITE", name


def test_ebs_csi_role_trusts_exactly_the_controller_service_account(aws_module, reference):
    trust = next(body for t, n, body in _blocks(aws_module, "data")
                 if (t, n) == ("aws_iam_policy_document", "ebs_csi_assume"))
    statement = trust["statement"][0]
    assert uq(statement["actions"]) == ["sts:AssumeRoleWithWebIdentity"]
    conditions = {unquote(c["variable"]).rsplit(":", 1)[1]: c for c in statement["condition"]}
    assert uq(conditions["sub"]["values"]) == [
        "system:serviceaccount:${var.ebs_csi_service_account.namespace}:${var.ebs_csi_service_account.name}"]
    assert unquote(conditions["sub"]["test"]) == unquote(conditions["aud"]["test"]) == "StringEquals"
    assert uq(conditions["aud"]["values"]) == ["sts.amazonaws.com"]
    for region in _aws_regions(reference):
        args = terraform.aws.args(reference, region)["kubernetes"]
        assert args["ebs_csi_service_account"] == {"namespace": SYSTEM_NAMESPACE, "name": EBS_CSI_SERVICE_ACCOUNT}
        assert args["ebs_csi_role_name"] == aws_role_name(region.cluster_name, EBS_CSI_DRIVER)
        assert (SYSTEM_NAMESPACE, EBS_CSI_SERVICE_ACCOUNT) == ("kube-system", "ebs-csi-controller-sa")


def test_ebs_csi_role_has_the_driver_policy_and_the_regions_key_only(aws_module):
    attachment = next(body for t, n, body in _blocks(aws_module, "resource")
                      if (t, n) == ("aws_iam_role_policy_attachment", "ebs_csi"))
    assert unquote(attachment["policy_arn"]).endswith("/service-role/AmazonEBSCSIDriverPolicy")
    key = next(body for t, n, body in _blocks(aws_module, "data")
               if (t, n) == ("aws_iam_policy_document", "ebs_csi_key"))
    grants, crypto = key["statement"]
    assert uq(grants["resources"]) == uq(crypto["resources"]) == ["${var.kms_key_arn}"]
    assert set(uq(grants["actions"])) == {"kms:CreateGrant", "kms:ListGrants", "kms:RevokeGrant"}
    cond = grants["condition"][0]
    assert (unquote(cond["test"]), unquote(cond["variable"]), uq(cond["values"])) == (
        "Bool", "kms:GrantIsForAWSResource", ["true"])
    assert set(uq(crypto["actions"])) == {"kms:Decrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*", "kms:DescribeKey"}
    assert unquote(crypto["condition"][0]["variable"]) == "kms:ViaService"


def _storage_classes(plan, region) -> list[dict]:
    """Every StorageClass of the region's applied manifests (the `.yaml` files, not the binding template)."""
    files = kubernetes.emit_region(plan, region)
    return [d for path, text in files.items() if path.endswith(".yaml")
            for d in yaml.safe_load_all(text) if isinstance(d, dict) and d.get("kind") == "StorageClass"]


def test_prometheus_claims_name_an_encrypted_class_the_region_defines(reference):
    for region in reference.regions:
        values = yaml.safe_load(helm.emit_region(reference, region)[f"helm/{region.name}/kube-prometheus-stack.values.yaml"])
        claim = values["prometheus"]["prometheusSpec"]["storageSpec"]["volumeClaimTemplate"]["spec"]
        classes = {c["metadata"]["name"]: c for c in _storage_classes(reference, region)}
        if region.cloud != "aws":
            # GKE and AKS ship a working default class
            assert "storageClassName" not in claim and not classes
            continue
        assert claim["storageClassName"] == EBS_STORAGE_CLASS
        sc = classes[EBS_STORAGE_CLASS]
        account = reference.spec.clouds["aws"].account
        assert sc["provisioner"] == EBS_CSI_PROVISIONER == "ebs.csi.aws.com"
        assert sc["parameters"] == {"type": "gp3", "encrypted": "true",
                                    "kmsKeyId": f"arn:aws:kms:{region.cloud_region}:{account}:alias/{region.cluster_name}"}
        assert sc["volumeBindingMode"] == "WaitForFirstConsumer" and sc["allowVolumeExpansion"] is True
        assert sc["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
        # the alias the class names is the one the kms module creates for the region (alias/<name prefix>)
        kms = terraform.emit_global(reference)["terraform/modules/aws/kms/main.tf"]
        assert 'name          = "alias/${var.name}"' in kms
        root = terraform.emit_region(reference, region)[f"terraform/regions/{region.name}/main.tf"]
        assert re.search(rf'^\s+name\s+=\s+"{re.escape(region.cluster_name)}"$', root, re.M)
        assert re.search(r'module "kms" \{[^}]*name\s+=\s+local\.name', root)


def test_aws_gpu_pools_carry_the_accelerator_label(reference):
    seen = 0
    for region in reference.regions:
        spec_pools = region.settings.kubernetes.node_pools
        for name, pool in node_pools(region).items():
            gpu = spec_pools[name].gpus > 0
            if region.cloud == "aws" and gpu:
                assert pool["labels"][AWS_GPU_LABEL] == aws_gpu_accelerator(pool["instance_type"])
                seen += 1
            else:
                assert AWS_GPU_LABEL not in pool["labels"]
    assert seen
    assert aws_gpu_accelerator("g5.2xlarge") == "nvidia-a10g"
    assert aws_gpu_accelerator("p3.8xlarge") == "nvidia-tesla-v100"


def test_an_unknown_gpu_family_is_refused():
    with pytest.raises(ValueError, match="g4ad"):
        aws_gpu_accelerator("g4ad.xlarge")

