#!/usr/bin/env bash
# Builds perstack-sandbox's local Debian bookworm image with no registry: debootstrap a minimal
# root filesystem (variant minbase) from a Debian mirror, strip what a sandbox never reads, and
# `docker import` it. It is the workspace image for base-skill (so `exec` has a shell and the
# usual tools), the Python base for skills run with `python3`/`uvx`, and the Node base for skills
# run with `node`/`npx` (Debian's nodejs 18 and npm 9).
#
# Cached: when an image with this name exists and its io.perstack.sandbox.recipe label equals the
# digest of this script and its settings, nothing is done. Needs root (debootstrap chroots).
#
#   scripts/build-bookworm-image.sh                  # perstack-sandbox/bookworm:local
#   IMAGE=my/bookworm:1 MIRROR=http://… scripts/build-bookworm-image.sh
set -euo pipefail

IMAGE=${IMAGE:-perstack-sandbox/bookworm:local}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=bookworm
# bash/coreutils/findutils/grep/sed come with minbase; listed so the recipe says what it promises.
PACKAGES=bash,coreutils,findutils,grep,sed,gawk,curl,ca-certificates,git,python3,python3-venv,procps,less
# Installed with apt inside the new root afterwards: debootstrap resolves no virtual packages,
# and Debian's npm depends on several (its configure step fails when they are in --include).
APT_PACKAGES="nodejs npm"

here=$(cd "$(dirname "$0")" && pwd)
recipe=$( { cat "$here/$(basename "$0")"; echo "$IMAGE $MIRROR $SUITE $PACKAGES $APT_PACKAGES"; } | sha256sum | cut -c1-16)

existing=$(docker image inspect --format '{{ index .Config.Labels "io.perstack.sandbox.recipe" }}' "$IMAGE" 2>/dev/null || true)
if [ "$existing" = "$recipe" ]; then
    echo "$IMAGE is up to date (recipe $recipe)"
    exit 0
fi

if ! command -v debootstrap >/dev/null; then
    echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "error: debootstrap needs root; run this script as root (or with sudo)" >&2
    exit 1
fi

started=$(date +%s)
work=$(mktemp -d /tmp/perstack-bookworm.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

echo "==> debootstrap $SUITE (minbase) from $MIRROR into $rootfs"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 40 "$work/debootstrap.log" >&2; exit 1; }
echo "    $(( $(date +%s) - started )) s"

echo "==> apt-get install $APT_PACKAGES"
phase=$(date +%s)
# The mirror debootstrap wrote to sources.list; no recommends (the image stays a toolbox).
{ chroot "$rootfs" apt-get update -q &&
  chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $APT_PACKAGES
} >"$work/apt.log" 2>&1 || { tail -n 40 "$work/apt.log" >&2; exit 1; }
echo "    $(( $(date +%s) - phase )) s: $(chroot "$rootfs" node --version), npm $(chroot "$rootfs" npm --version)"

echo "==> trimming"
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/* \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
    "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/lintian "$rootfs"/usr/share/linda \
    "$rootfs"/tmp/* "$rootfs"/root/.cache
find "$rootfs"/usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} +
# The mirror, for anyone who runs apt in a derived image.
printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$rootfs/etc/apt/sources.list"

echo "==> docker import $IMAGE"
phase=$(date +%s)
# Import needs a tag to replace: an older image with this name just loses its tag.
tar --numeric-owner -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL io.perstack.sandbox.recipe=$recipe" \
    --change "LABEL org.opencontainers.image.title=perstack-sandbox/bookworm" \
    --change "LABEL org.opencontainers.image.description=\"Debian $SUITE minbase with a shell, coreutils, curl, git, python3, nodejs and npm, debootstrapped locally\"" \
    - "$IMAGE" >/dev/null

echo "    $(( $(date +%s) - phase )) s"
size=$(docker image inspect --format '{{.Size}}' "$IMAGE")
echo "built $IMAGE (recipe $recipe, $((size / 1024 / 1024)) MB) in $(( $(date +%s) - started )) s"
