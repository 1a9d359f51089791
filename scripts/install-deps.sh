#!/usr/bin/env bash
# Installs the Debian packages that building and testing need, only those missing.
# Runs as root on Debian 12 (the project's machine kind); safe to run again.
set -euo pipefail

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

have_cmd qemu-system-x86_64 || need+=(qemu-system-x86)
have_pkg busybox-static || need+=(busybox-static)
have_cmd dpkg-deb || need+=(dpkg)
have_cmd cpio || need+=(cpio)
have_cmd runc || need+=(runc)   # the conformance runner compares against it
have_cmd ip || need+=(iproute2)  # pkg/network's tests set up namespaces, veths and tc
# CRI port-forward: the forwarder's redirect rule in the pod's network namespace.
have_cmd iptables || need+=(iptables)
# The real callers of the integration tests (integration/): containerd 1.6 with ctr, the v1
# containerd-shim and the runc v2 shim, podman 4 with conmon.
have_cmd containerd && have_cmd ctr && have_cmd containerd-shim && have_cmd containerd-shim-runc-v2 \
  || need+=(containerd)
have_cmd podman || need+=(podman)
have_cmd conmon || need+=(conmon)
# Pods through containerd's CRI plugin: CNI's bridge + host-local plugins make the pod's
# network namespace; the test's CRI client is generated from the CRI protobuf at build time.
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || need+=(containernetworking-plugins)
have_cmd protoc || need+=(protobuf-compiler)
# The storage tests make ext4 images on loop devices.
have_cmd mkfs.ext4 || need+=(e2fsprogs)
have_cmd losetup || need+=(mount)
# The guest kernel (scripts/build-guest-kernel.sh): Debian's kernel source and what building a
# vmlinux from it takes; kata-osbuilder strips it with objcopy (binutils).
have_pkg linux-source-6.1 || need+=(linux-source-6.1)
have_cmd flex || need+=(flex)
have_cmd bison || need+=(bison)
have_cmd bc || need+=(bc)
have_pkg libelf-dev || need+=(libelf-dev)
have_cmd make || need+=(make)
have_cmd gcc || need+=(gcc)
have_cmd xz || need+=(xz-utils)
have_cmd objcopy || need+=(binutils)
have_pkg libssl-dev || need+=(libssl-dev)

# Docker Engine 20.10 (integration/tests/docker.rs starts a dockerd of its own). Its package
# would start the host's docker service: a policy-rc.d that refuses every start stops that
# (and is put back as it was afterwards).
have_cmd dockerd && [ -x /usr/bin/docker ] || need+=(docker.io)

if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  policy=/usr/sbin/policy-rc.d
  saved=
  if [ -e "$policy" ]; then
    saved=$(mktemp)
    cp -p "$policy" "$saved"
  fi
  printf '#!/bin/sh\n# install-deps.sh: no service starts during the install\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  restore() {
    if [ -n "$saved" ]; then mv "$saved" "$policy"; else rm -f "$policy"; fi
  }
  trap restore EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
