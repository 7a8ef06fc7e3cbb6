#!/bin/sh
# Prints the stable device path (/dev/disk/...) of this VM's data volume, the one Terraform attaches; exit 1 if
# it is not there (yet). Usage: data-disk-id aws|gcp|azure
set -eu
case "${1:-}" in
  aws)
    # EBS volumes on Nitro are NVMe devices named by volume id; the data volume is the one not holding /.
    root=$(lsblk -no PKNAME "$(findmnt -no SOURCE /)" 2>/dev/null || true)
    for link in /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol*; do
      case "$link" in *-part*) continue ;; esac
      [ -e "$link" ] || continue
      [ "$(basename "$(readlink -f "$link")")" = "$root" ] && continue
      echo "$link"; exit 0
    done ;;
  gcp)
    # the attached disk's device_name is "data"
    [ -e /dev/disk/by-id/google-data ] && { echo /dev/disk/by-id/google-data; exit 0; } ;;
  azure)
    # the data disk is attached at LUN 0 (the Azure VM agent's or azure-vm-utils' udev links)
    for link in /dev/disk/azure/data/by-lun/0 /dev/disk/azure/scsi1/lun0; do
      [ -e "$link" ] && { echo "$link"; exit 0; }
    done ;;
  *) echo "usage: $0 aws|gcp|azure" >&2; exit 2 ;;
esac
echo "no data volume found for $1" >&2
exit 1
