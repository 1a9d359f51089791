#!/usr/bin/env bash
# make-oci-image.sh OUT.tar [NAME [CMD-JSON]]: a busybox image as an OCI layout tar, built locally (no
# registry is reachable here). The rootfs is Debian's busybox-static with its applets as hard
# links (as in a real busybox image: masking one applet's path does not mask the shell), plus
# /etc/passwd and /etc/group. One uncompressed layer, sha256-named blobs, and index.json with
# `io.containerd.image.name` (what `ctr image import` names the image by) and
# `org.opencontainers.image.ref.name` (what `podman load` names it by), both NAME
# (default localhost/busybox:latest). CMD-JSON is the image's Cmd (default ["sh"]); a pod's pause
# image is the same rootfs with a Cmd that sleeps forever.
# With DOCKER_ARCHIVE=1 the tar also holds a manifest.json naming the same blobs: `docker load`
# of Docker 20.10 reads only that (docker save's format), ctr and podman read the OCI layout.
set -euo pipefail
out=$1
name=${2:-localhost/busybox:latest}
cmd=${3:-'["sh"]'}
bb=/bin/busybox
[ -x "$bb" ] || { echo "busybox-static is missing (make deps)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,root,var}
chmod 1777 "$root/tmp"
cp "$bb" "$root/bin/busybox"
for applet in $("$bb" --list-full); do
  [ "$applet" = bin/busybox ] || [ -e "$root/$applet" ] || ln "$root/bin/busybox" "$root/$applet"
done
cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
EOF

blobs=$work/oci/blobs/sha256
mkdir -p "$blobs"
# A layer tar that does not depend on who built it or when.
tar -C "$root" --sort=name --owner=0 --group=0 --numeric-owner --mtime='2024-01-01 00:00:00' \
  -cf "$work/layer.tar" .
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }
layer=$(sha "$work/layer.tar")
mv "$work/layer.tar" "$blobs/$layer"

cat > "$work/config.json" <<JSON
{"architecture":"amd64","os":"linux","created":"2024-01-01T00:00:00Z",
 "config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":$cmd,"WorkingDir":"/"},
 "rootfs":{"type":"layers","diff_ids":["sha256:$layer"]},
 "history":[{"created":"2024-01-01T00:00:00Z","created_by":"scripts/make-oci-image.sh"}]}
JSON
config=$(sha "$work/config.json")
config_size=$(size "$work/config.json")
mv "$work/config.json" "$blobs/$config"

cat > "$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
 "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:$config","size":$config_size},
 "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:$layer","size":$(size "$blobs/$layer")}]}
JSON
manifest=$(sha "$work/manifest.json")
manifest_size=$(size "$work/manifest.json")
mv "$work/manifest.json" "$blobs/$manifest"

cat > "$work/oci/index.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json",
 "manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:$manifest","size":$manifest_size,
   "platform":{"architecture":"amd64","os":"linux"},
   "annotations":{"io.containerd.image.name":"$name","org.opencontainers.image.ref.name":"$name"}}]}
JSON
echo '{"imageLayoutVersion":"1.0.0"}' > "$work/oci/oci-layout"
extra=()
if [ "${DOCKER_ARCHIVE:-}" = 1 ]; then
  cat > "$work/oci/manifest.json" <<JSON
[{"Config":"blobs/sha256/$config","RepoTags":["$name"],"Layers":["blobs/sha256/$layer"]}]
JSON
  extra=(manifest.json)
fi

mkdir -p "$(dirname "$out")"
tar -C "$work/oci" --sort=name --owner=0 --group=0 --numeric-owner --mtime='2024-01-01 00:00:00' \
  -cf "$out.tmp" oci-layout index.json "${extra[@]}" blobs
mv "$out.tmp" "$out"
