#!/usr/bin/env bash
# Copy the files the Helm chart ships from their single source in config/ into charts/zen-flow/files/
# (Helm's .Files cannot read outside the chart directory):
#   config/crd/jobflows.workflow.kube-zen.io.yaml  -> files/crds/   (rendered by templates/crd.yaml)
#   config/crd/cronjobflows.workflow.kube-zen.io.yaml -> files/crds/ (templates/crd.yaml too)
#   config/crd/jobflowtemplates.workflow.kube-zen.io.yaml -> files/crds/ (templates/crd.yaml too)
#   config/crd/clusterjobflowtemplates.workflow.kube-zen.io.yaml -> files/crds/ (templates/crd.yaml too)
#   config/crd/admission-policies.yaml             -> files/crds/   (templates/admission-policies.yaml)
#   config/prometheus/prometheusrule.yaml          -> files/        (templates/prometheusrule.yaml)
#   config/grafana/dashboard.json                  -> files/        (templates/dashboard.yaml)
# Run it after changing any of them (`make manifests`). `--check` changes nothing and exits 1 when a
# copy differs from its source (tests/unit/test_helm_chart.py asserts the same).
set -euo pipefail
cd "$(dirname "$0")/.."

CHART_FILES=charts/zen-flow/files
pairs=(
  "config/crd/jobflows.workflow.kube-zen.io.yaml:${CHART_FILES}/crds/jobflows.workflow.kube-zen.io.yaml"
  "config/crd/cronjobflows.workflow.kube-zen.io.yaml:${CHART_FILES}/crds/cronjobflows.workflow.kube-zen.io.yaml"
  "config/crd/jobflowtemplates.workflow.kube-zen.io.yaml:${CHART_FILES}/crds/jobflowtemplates.workflow.kube-zen.io.yaml"
  "config/crd/clusterjobflowtemplates.workflow.kube-zen.io.yaml:${CHART_FILES}/crds/clusterjobflowtemplates.workflow.kube-zen.io.yaml"
  "config/crd/admission-policies.yaml:${CHART_FILES}/crds/admission-policies.yaml"
  "config/prometheus/prometheusrule.yaml:${CHART_FILES}/prometheusrule.yaml"
  "config/grafana/dashboard.json:${CHART_FILES}/dashboard.json"
)

check=false
[ "${1:-}" = "--check" ] && check=true
stale=0
for pair in "${pairs[@]}"; do
  src="${pair%%:*}" dst="${pair#*:}"
  if cmp -s "${src}" "${dst}"; then
    continue
  fi
  if ${check}; then
    echo "out of date: ${dst} (run tools/sync-chart-files.sh)" >&2
    stale=1
  else
    mkdir -p "$(dirname "${dst}")"
    cp "${src}" "${dst}"
    echo "updated ${dst}"
  fi
done
exit "${stale}"
