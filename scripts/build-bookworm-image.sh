#!/usr/bin/env bash
# Builds perstack-sandbox's local Debian bookworm images with no registry: debootstrap a minimal
# root filesystem (variant minbase) from a Debian mirror, strip what a sandbox never reads, and
# `docker import` it. Two images come from the one debootstrap:
#
# - IMAGE (perstack-sandbox/bookworm:local): the workspace image for base-skill (so `exec` has a
#   shell and the usual tools) and the Python base for skills run with `python3`/`uvx`.
# - NODE_IMAGE (perstack-sandbox/bookworm-node:local): the same plus Debian's nodejs 18 and npm
#   9, the Node base for skills run with `node`/`npx`.
#
# Node is an image of its own because npm brings ~25,000 files, and on the fuse-overlayfs engines
# we run on every build step of an image costs time in proportion to the files of its base (the
# engine diffs the whole tree at each commit): measured, 9.5 s a step on the Node image against
# 0.8 s on a `scratch`-based one. Workspace and Python images should not pay for Node.
#
# Cached: when both images exist and their io.perstack.sandbox.recipe label equals the digest of
# the recipe (the steps below the line that says so, and the settings), nothing is done (and
# nothing needs root); the checks above that line can change without a rebuild. Otherwise it needs
# debootstrap and root, since debootstrap chroots: run as a user with passwordless sudo, it
# starts itself again through `sudo -n`; without, it says how to get root. `make test` runs it.
#
#   scripts/build-bookworm-image.sh                  # both images
#   IMAGE=my/bookworm:1 NODE_IMAGE=my/bookworm-node:1 MIRROR=http://… scripts/build-bookworm-image.sh
set -euo pipefail

IMAGE=${IMAGE:-perstack-sandbox/bookworm:local}
NODE_IMAGE=${NODE_IMAGE:-perstack-sandbox/bookworm-node:local}
# The mirror: MIRROR when set, else the one this host's apt already uses for Debian's main
# archive (deb822 `URIs:` in sources.list.d/*.sources, or a `deb` line in sources.list*), so no
# mirror's name is written here.
host_mirror() {
    local f u
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -r "$f" ] || continue
        u=$(awk '
            /^URIs:/ { for (i = 2; i <= NF; i++) if ($i !~ /security/) { print $i; exit } }
            $1 == "deb" { u = ($2 ~ /^\[/) ? $3 : $2; if (u !~ /security/) { print u; exit } }
        ' "$f")
        if [ -n "$u" ]; then
            echo "$u"
            return
        fi
    done
}
MIRROR=${MIRROR:-$(host_mirror)}
SUITE=bookworm
# bash/coreutils/findutils/grep/sed come with minbase; listed so the recipe says what it promises.
PACKAGES=bash,coreutils,findutils,grep,sed,gawk,curl,ca-certificates,git,python3,python3-venv,procps,less
# Installed with apt inside the root afterwards: debootstrap resolves no virtual packages, and
# Debian's npm depends on several (its configure step fails when they are in --include).
NODE_PACKAGES="nodejs npm"

here=$(cd "$(dirname "$0")" && pwd)
self="$here/$(basename "$0")"
recipe_marker='^# ---- the recipe'
recipe=$( { sed -n "/$recipe_marker/,\$p" "$self"; echo "$IMAGE $NODE_IMAGE $MIRROR $SUITE $PACKAGES $NODE_PACKAGES"; } | sha256sum | cut -c1-16)

# fail MESSAGE [MORE-LINES…]
fail() {
    printf 'error: %s\n' "$1" >&2
    shift
    if [ $# -gt 0 ]; then printf '%s\n' "$@" >&2; fi
    exit 1
}

if ! command -v docker >/dev/null; then
    fail "the docker CLI is not installed; install Docker (Debian: \`sudo apt-get install docker.io\`)"
fi
if ! docker version >/dev/null 2>&1; then
    fail "no Docker engine answers (\`docker version\` failed); start one (\`sudo systemctl start docker\`, or \`sudo dockerd\`) and try again"
fi

recipe_of() {
    docker image inspect --format '{{ index .Config.Labels "io.perstack.sandbox.recipe" }}' "$1" 2>/dev/null || true
}
if [ "$(recipe_of "$IMAGE")" = "$recipe" ] && [ "$(recipe_of "$NODE_IMAGE")" = "$recipe" ]; then
    echo "$IMAGE and $NODE_IMAGE are up to date (recipe $recipe)"
    exit 0
fi

if [ -z "$MIRROR" ]; then
    fail "no Debian mirror: MIRROR is not set and this host's apt sources name none" \
        "    MIRROR=http://<your Debian mirror>/debian make test-images"
fi
if ! command -v debootstrap >/dev/null; then
    fail "building $IMAGE and $NODE_IMAGE needs debootstrap, which is not installed:" \
        "    sudo apt-get install debootstrap"
fi
if [ "$(id -u)" -ne 0 ]; then
    if [ -z "${PERSTACK_IMAGES_VIA_SUDO:-}" ] && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        echo "==> building $IMAGE and $NODE_IMAGE needs root (debootstrap chroots): sudo -n"
        # sudo resets the environment: pass on the settings and the proxy variables by hand.
        settings=(PERSTACK_IMAGES_VIA_SUDO=1 "IMAGE=$IMAGE" "NODE_IMAGE=$NODE_IMAGE" "MIRROR=$MIRROR")
        for name in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY DOCKER_HOST; do
            if [ -n "${!name:-}" ]; then
                settings+=("$name=${!name}")
            fi
        done
        exec sudo -n env "${settings[@]}" "$self"
    fi
    fail "building $IMAGE and $NODE_IMAGE needs root (debootstrap chroots), and sudo without a" \
        "password is not available here. Build them once as root, then run this again:" \
        "    sudo make test-images"
fi

# ---- the recipe: everything from this line on is hashed into the images' recipe label ----

started=$(date +%s)
phase=$started
work=$(mktemp -d /tmp/perstack-bookworm.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"

took() {
    echo "    $(( $(date +%s) - phase )) s"
    phase=$(date +%s)
}

trim() {
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/debconf/*-old "$rootfs"/var/log/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* \
        "$rootfs"/usr/share/locale/* "$rootfs"/usr/share/lintian "$rootfs"/usr/share/linda \
        "$rootfs"/tmp/* "$rootfs"/root/.cache "$rootfs"/root/.npm
    find "$rootfs"/usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} +
    # The mirror, for anyone who runs apt in a derived image.
    printf 'deb %s %s main\n' "$MIRROR" "$SUITE" >"$rootfs/etc/apt/sources.list"
}

# import_image IMAGE TITLE DESCRIPTION
import_image() {
    echo "==> docker import $1"
    # Import needs a tag to replace: an older image with this name just loses its tag.
    tar --numeric-owner -C "$rootfs" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["/bin/bash"]' \
        --change "LABEL io.perstack.sandbox.recipe=$recipe" \
        --change "LABEL org.opencontainers.image.title=$2" \
        --change "LABEL org.opencontainers.image.description=\"$3\"" \
        - "$1" >/dev/null
    took
    local size
    size=$(docker image inspect --format '{{.Size}}' "$1")
    echo "    $1: $((size / 1024 / 1024)) MiB, $(find "$rootfs" | wc -l) files"
}

echo "==> debootstrap $SUITE (minbase) from $MIRROR into $rootfs"
debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$MIRROR" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 40 "$work/debootstrap.log" >&2; exit 1; }
took
trim
import_image "$IMAGE" perstack-sandbox/bookworm \
    "Debian $SUITE minbase with a shell, coreutils, curl, git and python3, debootstrapped locally"

echo "==> apt-get install $NODE_PACKAGES"
# From the mirror in sources.list; no recommends (the image stays a toolbox).
{ chroot "$rootfs" apt-get update -q &&
  chroot "$rootfs" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $NODE_PACKAGES
} >"$work/apt.log" 2>&1 || { tail -n 40 "$work/apt.log" >&2; exit 1; }
echo "    node $(chroot "$rootfs" node --version), npm $(chroot "$rootfs" npm --version)"
took
trim
import_image "$NODE_IMAGE" perstack-sandbox/bookworm-node \
    "Debian $SUITE minbase with a shell, coreutils, curl, git, python3, nodejs and npm, debootstrapped locally"

echo "built $IMAGE and $NODE_IMAGE (recipe $recipe) in $(( $(date +%s) - started )) s"
