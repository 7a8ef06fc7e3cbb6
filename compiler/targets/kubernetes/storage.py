"""The region's StorageClass where the cluster has no usable default (compiler/ir/names.py STORAGE_CLASS_CLOUDS).

EKS: the EBS CSI driver's class (the Terraform kubernetes module installs the aws-ebs-csi-driver add-on), gp3,
every volume encrypted with the region's customer-managed key like the nodes' root volumes. WaitForFirstConsumer:
an EBS volume lives in one zone, so it is created in the zone the pod is scheduled to, not in one the pod's node
pool may have no room in. Marked default, so a chart's claim without a class gets it too.
"""

from __future__ import annotations

from compiler.ir import PlatformPlan, RegionPlan
from compiler.ir.names import EBS_CSI_PROVISIONER, EBS_STORAGE_CLASS, STORAGE_CLASS_CLOUDS, kms_key_alias_arn

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def storage_classes(plan: PlatformPlan, region: RegionPlan) -> list[dict]:
    if region.cloud not in STORAGE_CLASS_CLOUDS:
        return []
    key = kms_key_alias_arn(region.cloud_region, plan.spec.clouds["aws"].account, region.cluster_name)
    return [{
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": EBS_STORAGE_CLASS, "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": EBS_CSI_PROVISIONER,
        # the driver's parameters (aws-ebs-csi-driver docs/parameters.md) are strings
        "parameters": {"type": "gp3", "encrypted": "true", "kmsKeyId": key},
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
    }]
