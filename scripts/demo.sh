#!/usr/bin/env bash
# demo.sh BIN_DIR: runs a busybox container in its own VM and shows that it sees the guest's
# kernel, not the host's.
set -euo pipefail
bin=$(cd "$1" && pwd)
top=$(cd "$(dirname "$0")/.." && pwd)
bundle=$top/build/demo/bundle
"$top/scripts/make-busybox-bundle.sh" "$bundle" sh -c 'echo "container: kernel $(uname -r), hostname $(hostname), pid 1 is $(cat /proc/1/comm)"'
echo "host:      kernel $(uname -r)"
id="demo-$$"
start=$(date +%s.%N)
"$bin/kata-runtime" --root "$top/build/demo/state" run --bundle "$bundle" "$id"
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" 'BEGIN { printf "kata-runtime run took %.2f s\n", e - s }'
