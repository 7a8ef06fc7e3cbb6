"""What each cloud does when a cluster's Kubernetes minor version leaves its standard support, from the spec's
`kubernetes.version_support` (compiler/model/infra.py), for the Terraform modules and `platformc cost`.

- EKS (aws_eks_cluster `upgrade_policy.support_type`; EKS API UpgradePolicyRequest: STANDARD | EXTENDED, the API's
  default EXTENDED): STANDARD upgrades the cluster at the end of standard support; EXTENDED keeps it on its version
  for up to 12 more months at the extended-support price ($0.60 a cluster-hour instead of $0.10).
- GKE (google_container_cluster `release_channel.channel`): the REGULAR channel upgrades at the end of standard
  support; the EXTENDED channel keeps a minor version for up to 24 months from its release, with an additional
  cluster management fee while the version is in its extended support period.
- AKS (azurerm_kubernetes_cluster `support_plan`): KubernetesOfficial is the community support window. Long-term
  support (AKSLongTermSupport) needs the Premium tier and refuses clusters with the Application Gateway ingress
  controller or the KMS add-on (Microsoft Learn, "Long-term support for AKS versions", unsupported add-ons), which
  every Azure region of this platform runs: `extended` is refused on Azure (rule R063).
"""

from __future__ import annotations

EKS_SUPPORT_TYPE = {"standard": "STANDARD", "extended": "EXTENDED"}
GKE_RELEASE_CHANNEL = {"standard": "REGULAR", "extended": "EXTENDED"}
AKS_SUPPORT_PLAN = {"standard": "KubernetesOfficial"}
# The clouds on which the platform's clusters can take extended support.
EXTENDED_SUPPORT_CLOUDS = ("aws", "gcp")
