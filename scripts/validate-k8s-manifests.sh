#!/usr/bin/env bash
# Validates every Kubernetes manifest `export kubernetes` is pinned to (the insta snapshots of
# src/sandbox/k8s, written by `cargo test`) against Kubernetes' published OpenAPI schemas,
# offline, with kubernetes-validate from PyPI in strict mode (an unknown field fails). Then the
# control: the same manifest with one unknown field must fail, or the check proves nothing.
#
#   scripts/validate-k8s-manifests.sh [kubernetes-version ...]   (default: 1.33.0 1.37.0)
set -euo pipefail
cd "$(dirname "$0")/.."

versions=("$@")
[ ${#versions[@]} -gt 0 ] || versions=(1.33.0 1.37.0)
venv=${KUBERNETES_VALIDATE_VENV:-/tmp/perstack-sandbox-kubernetes-validate}
if ! "$venv/bin/kubernetes-validate" --version 2>/dev/null | grep -qx 1.37.0; then
    python3 -m venv "$venv"
    # Behind a TLS-intercepting gateway pip trusts the host's bundle.
    cert=()
    [ -f /etc/ssl/certs/ca-certificates.crt ] && cert=(--cert /etc/ssl/certs/ca-certificates.crt)
    "$venv/bin/pip" install -q "${cert[@]}" kubernetes-validate==1.37.0
fi
validate() { "$venv/bin/kubernetes-validate" --strict --no-warn -k "$1" "$2"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
shopt -s nullglob
snapshots=(src/sandbox/k8s/snapshots/*.snap)
[ ${#snapshots[@]} -gt 0 ] || { echo "error: no manifest snapshots in src/sandbox/k8s/snapshots" >&2; exit 1; }
for snap in "${snapshots[@]}"; do
    manifest="$work/$(basename "$snap" .snap).yaml"
    # insta's front matter is the first `---`…`---` block; the manifest follows it.
    awk 'n >= 2 { print } /^---$/ && n < 2 { n++ }' "$snap" >"$manifest"
    objects=$(grep -c '^kind: ' "$manifest")
    [ "$objects" -gt 0 ] || { echo "error: no objects in $snap" >&2; exit 1; }
    for version in "${versions[@]}"; do
        echo "== $snap: $objects objects, Kubernetes $version"
        validate "$version" "$manifest"
        # The control: an unknown field in the first container must be refused.
        bad="$work/unknown-field.yaml"
        "$venv/bin/python" - "$manifest" "$bad" <<'PY'
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
job = next(d for d in docs if d["kind"] == "Job")
job["spec"]["template"]["spec"]["containers"][0]["bogusField"] = 1
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
PY
        if validate "$version" "$bad" >/dev/null 2>&1; then
            echo "error: kubernetes-validate accepted an unknown field; the check proves nothing" >&2
            exit 1
        fi
        echo "   control: an unknown field is refused"
    done
done
