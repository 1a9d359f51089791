#!/usr/bin/env bash
# Fetches Debian's current generic amd64 kernel package (linux-image-<abi>-amd64) into CACHE_DIR
# and prints the .deb's absolute path on stdout, the only line written there; everything else
# goes to stderr so callers can use: deb=$(scripts/fetch-guest-kernel.sh cache/).
#
# The generic flavour is used (not -cloud-amd64) because only it ships 9p as a module.
# The metapackage linux-image-amd64 names the current ABI package through its dependency.
set -euo pipefail

log() { echo "fetch-guest-kernel: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ $# -eq 1 ] || { echo "usage: $0 CACHE_DIR" >&2; exit 2; }
mkdir -p -- "$1"
cache_dir=$(cd -- "$1" && pwd -P)

# Prints linux-image-<abi>-amd64, or nothing when apt knows no such package.
abi_package() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        awk '$1 ~ /Depends:$/ && $2 ~ /^linux-image-[0-9][^ ]*-amd64$/ { print $2; exit }'
}

# Newest .deb of the generic flavour already in the cache; used only when apt cannot tell.
newest_cached() {
    find "$cache_dir" -maxdepth 1 -name 'linux-image-[0-9]*-amd64_*_amd64.deb' -printf '%f\n' |
        sort -V | tail -n 1
}

# A cached file is only trusted if dpkg-deb can read its control data (catches truncation).
deb_ok() {
    dpkg-deb --field "$1" Package >/dev/null 2>&1
}

pkg=$(abi_package || true)
if [ -z "$pkg" ]; then
    log "apt knows no linux-image-<abi>-amd64 yet; running apt-get update"
    if ! apt-get update >&2; then
        log "apt-get update failed"
    fi
    pkg=$(abi_package || true)
fi

if [ -z "$pkg" ]; then
    cached=$(newest_cached)
    if [ -n "$cached" ] && deb_ok "$cache_dir/$cached"; then
        log "warning: apt cannot name the current kernel; using cached $cached"
        echo "$cache_dir/$cached"
        exit 0
    fi
    die "cannot find the package linux-image-amd64 depends on (is a Debian amd64 apt source configured?)"
fi

version=$(apt-cache show --no-all-versions "$pkg" 2>/dev/null | awk '$1 == "Version:" { print $2; exit }')
[ -n "$version" ] || die "apt-cache has no version for $pkg"
# apt-get download encodes an epoch's ':' as %3a in the file name.
deb="$cache_dir/${pkg}_${version//:/%3a}_amd64.deb"

if [ -f "$deb" ] && deb_ok "$deb"; then
    log "$pkg $version already in $cache_dir"
    echo "$deb"
    exit 0
fi
rm -f -- "$deb"

log "downloading $pkg $version into $cache_dir"
# Download into a private directory and move the finished file in, so an interrupted download
# never leaves a truncated .deb under the final name. As root, the directory is handed to apt's
# sandbox user _apt so apt need not fall back to downloading as root (it would warn; harmless).
tmp=$(mktemp -d "$cache_dir/.download.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
chmod 0755 "$tmp"
if [ "$(id -u)" -eq 0 ] && id _apt >/dev/null 2>&1; then
    chown _apt "$tmp" || true
fi
(cd "$tmp" && apt-get download "$pkg=$version" >&2) || die "apt-get download $pkg=$version failed"
got=$(find "$tmp" -maxdepth 1 -name '*.deb' -print -quit)
[ -n "$got" ] || die "apt-get download produced no .deb"
deb_ok "$got" || die "downloaded $got is not a readable .deb"
mv -f -- "$got" "$deb"
echo "$deb"
