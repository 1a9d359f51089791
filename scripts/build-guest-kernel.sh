#!/usr/bin/env bash
# Builds the guest kernel from Debian's linux-source-6.1 and the configuration fragments in
# kernel/fragments/, and prints the folder holding the result (vmlinux, config, release) on
# stdout, the only line written there: dir=$(scripts/build-guest-kernel.sh). With --key it
# prints the cache key only; with --check CONFIG it compares a .config with the fragments.
#
# The result is cached outside the repository, keyed by a hash of everything it is made from
# (source package version, the options the fragments ask for, compiler version, the recipe
# below), so a second run, or CI on a machine that built it once, takes seconds; editing a
# fragment's comments does not rebuild. KATA_KERNEL_CACHE overrides the cache root.
#
# The configuration: allnoconfig with the fragments forced (KCONFIG_ALLCONFIG, the kernel's own
# mechanism), then olddefconfig; the build fails when any option a fragment asks for did not end
# up as asked (a typo, or a dependency not met, must never pass silently).
set -euo pipefail

log() { echo "build-guest-kernel: $*" >&2; }
die() { log "error: $*"; exit 1; }

repo=$(cd -- "$(dirname -- "$0")/.." && pwd -P)
fragments_dir="$repo/kernel/fragments"
source_package=linux-source-6.1
source_tarball=/usr/src/$source_package.tar.xz
cache_root=${KATA_KERNEL_CACHE:-/var/cache/kata-rs/kernel}
# Bump when the way the kernel is built changes (the make calls, what is kept): it is part of
# the cache key, so older results are not reused.
recipe=1

[ -f "$source_tarball" ] || die "$source_tarball is missing: install $source_package (make deps does)"
source_version=$(dpkg-query -W -f='${Version}' "$source_package" 2>/dev/null) ||
    die "dpkg does not know $source_package"
compiler=$(gcc --version | head -n 1)
mapfile -t fragments < <(find "$fragments_dir" -maxdepth 1 -name '*.conf' | sort)
[ ${#fragments[@]} -gt 0 ] || die "no fragments in $fragments_dir"

# The requested options, one "NAME VALUE" per line; "# CONFIG_X is not set" and CONFIG_X=n
# both mean "must not be set".
requested() {
    sed -n -E \
        -e 's/^(CONFIG_[A-Za-z0-9_]+)=(.*)$/\1 \2/p' \
        -e 's/^# (CONFIG_[A-Za-z0-9_]+) is not set$/\1 n/p' "$@"
}

key=$({
    echo "source $source_package $source_version"
    echo "compiler $compiler"
    echo "recipe $recipe"
    requested "${fragments[@]}"
} | sha256sum | cut -c1-16)
out="$cache_root/$key"
# --key: the cache key alone (CI caches can be keyed by it).
if [ "${1:-}" = --key ]; then
    echo "$key"
    exit 0
fi

# Prints one line per requested option whose final value differs; nothing when all hold.
check_config() {
    local config=$1 name want got
    while read -r name want; do
        got=$(sed -n -E "s/^$name=(.*)$/\1/p" "$config")
        [ -n "$got" ] || got=n
        if [ "$want" != "$got" ]; then
            echo "$name: asked $want, got $got"
        fi
    done < <(requested "${fragments[@]}")
}

# --check CONFIG: compare a .config with the fragments (what the build does after olddefconfig);
# prints the mismatches and fails when there are any.
if [ "${1:-}" = --check ]; then
    [ -f "${2:-}" ] || die "usage: $0 --check CONFIG"
    mismatches=$(check_config "$2")
    [ -z "$mismatches" ] && exit 0
    echo "$mismatches"
    exit 1
fi

# Results not used for 30 days, and builds interrupted a day ago or more, are removed; a result
# in use is touched each time it is taken.
prune_cache() {
    find "$cache_root" -mindepth 1 -maxdepth 1 -type d -name '[0-9a-f]*' -mtime +30 \
        -exec rm -rf -- {} + 2>/dev/null || true
    find "$cache_root" -mindepth 1 -maxdepth 1 -type d -name '.build.*' -mtime +0 \
        -exec rm -rf -- {} + 2>/dev/null || true
}

if [ -f "$out/vmlinux" ] && [ -f "$out/config" ] && [ -f "$out/release" ] && [ -f "$out/source" ]; then
    touch "$out"
    prune_cache
    log "cached: $(cat "$out/release") in $out"
    echo "$out"
    exit 0
fi

mkdir -p -- "$cache_root"
work=$(mktemp -d "$cache_root/.build.$key.XXXXXX")
trap 'rm -rf -- "$work"' EXIT

started=$(date +%s)
log "building $source_package $source_version (key $key) in $work"
tar -xJf "$source_tarball" -C "$work" --strip-components=1
src=$work

# Reproducible: the build's user, host and time are fixed, not this machine's.
kmake() {
    nice -n 10 make -C "$src" -s \
        KBUILD_BUILD_USER=kata-rs KBUILD_BUILD_HOST=kata-rs \
        KBUILD_BUILD_TIMESTAMP="$source_package $source_version" "$@"
}

cat "${fragments[@]}" >"$work/fragments.config"
kmake allnoconfig KCONFIG_ALLCONFIG="$work/fragments.config" >/dev/null
kmake olddefconfig >/dev/null
mismatches=$(check_config "$src/.config")
if [ -n "$mismatches" ]; then
    log "these options from kernel/fragments/ did not end up as asked (misspelt, or a dependency is missing):"
    echo "$mismatches" | sed 's/^/  /' >&2
    exit 1
fi
log "configuration: $(requested "${fragments[@]}" | wc -l) options asked, all hold; $(grep -c '=y$' "$src/.config") built in"

# The compile, with a progress line every 30 s instead of minutes of silence.
jobs=$(nproc)
kmake -j"$jobs" V=0 KBUILD_VERBOSE=0 vmlinux >"$work/build.log" 2>&1 &
build_pid=$!
while kill -0 "$build_pid" 2>/dev/null; do
    for _ in $(seq 30); do
        kill -0 "$build_pid" 2>/dev/null || break
        sleep 1
    done
    objects=$(find "$src" -name '*.o' 2>/dev/null | wc -l)
    log "compiling: $objects objects, $(( ($(date +%s) - started) / 60 )) min elapsed"
done
if ! wait "$build_pid"; then
    tail -n 40 "$work/build.log" >&2
    die "the kernel build failed (log above)"
fi

mkdir -p -- "$work/result"
cp "$src/vmlinux" "$work/result/vmlinux"
cp "$src/.config" "$work/result/config"
kmake kernelrelease >"$work/result/release"
echo "$source_package $source_version" >"$work/result/source"
echo "$key" >"$work/result/key"
rm -rf -- "$out"
mv -- "$work/result" "$out"
prune_cache
log "built $(cat "$out/release") in $(( $(date +%s) - started )) s: $out"
echo "$out"
