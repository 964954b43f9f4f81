#!/usr/bin/env bash
# Renders the plain manifest deploy/checksum-audit.yaml from the chart with its default values
# (release checksum-audit, namespace kube-system). tests/chart.rs fails when the two disagree, so run
# this after every change to the chart.
set -euo pipefail
cd "$(dirname "$0")/../.."
HELM=${HELM:-/var/cache/checksum-audit/tools/bin/helm}
{
  # The same header tests/chart.rs expects in front of `helm template`'s output.
  echo "# Rendered from deploy/helm/checksum-audit by scripts/k8s/render.sh: do not edit by hand."
  "$HELM" template checksum-audit deploy/helm/checksum-audit --namespace kube-system
} >deploy/checksum-audit.yaml.tmp
mv deploy/checksum-audit.yaml.tmp deploy/checksum-audit.yaml
