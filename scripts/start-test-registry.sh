#!/usr/bin/env bash
# Starts the registry the versioned-image tests push to: Debian's `docker-registry` on
# 127.0.0.1:5000 with scripts/test-registry.yml (no auth, storage in /tmp). Does nothing when a
# registry answers there already. Docker allows plain HTTP to registries on localhost.
#
# Run by `make test`; a missing package is named with its apt-get line.
set -euo pipefail
cd "$(dirname "$0")/.."
url=http://127.0.0.1:5000/v2/
if ! command -v curl >/dev/null; then
    printf 'error: %s\n    %s\n' "starting the test registry needs curl, which is not installed:" \
        "sudo apt-get install curl" >&2
    exit 1
fi
if curl -fsS -m 2 "$url" >/dev/null 2>&1; then
    echo "a registry answers on 127.0.0.1:5000"
    exit 0
fi
if ! command -v docker-registry >/dev/null; then
    printf 'error: %s\n    %s\n' \
        "the versioned-image tests need a registry on 127.0.0.1:5000, and docker-registry is not installed:" \
        "sudo apt-get install docker-registry" >&2
    exit 1
fi
# Debian's service uses /etc/docker/registry/config.yml, which asks for htpasswd auth; ours
# does not, so start it ourselves (also where there is no systemd).
nohup docker-registry serve scripts/test-registry.yml >/tmp/perstack-sandbox-test-registry.log 2>&1 &
for _ in $(seq 1 30); do
    if curl -fsS -m 2 "$url" >/dev/null 2>&1; then
        echo "registry started on 127.0.0.1:5000 (log: /tmp/perstack-sandbox-test-registry.log)"
        exit 0
    fi
    sleep 0.5
done
echo "error: the registry did not answer on 127.0.0.1:5000:" >&2
tail -n 20 /tmp/perstack-sandbox-test-registry.log >&2 || true
exit 1
