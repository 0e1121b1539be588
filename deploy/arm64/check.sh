#!/usr/bin/env bash
# ARM64 without hardware: run edgexfer's runtime inside an emulated aarch64 Debian userland and check that
# its predictions match the x86 ones. Emulated latency means nothing; agreement does.
#
#   deploy/arm64/check.sh            # every step (what `make arm64-check` runs)
#   deploy/arm64/check.sh userland   # only build (or reuse) the cached aarch64 userland
#
# Why each step is the way it is (see ../shared/toolchain.md, "ARM64 under emulation"):
# - The userland takes ~4-5 minutes to build, so it is cached OUTSIDE the repo ($ARM64_CACHE) and reused.
# - Wheels come from PyPI with the x86 pip and every manylinux_2_N_aarch64 tag up to Debian bookworm's glibc
#   (2.36): with too few tags pip silently picks an old ai-edge-litert (1.4 instead of 2.3).
# - onnxruntime segfaults at import under qemu 7.2 when it sees the host's x86 /proc/cpuinfo, so an
#   ARM-looking cpuinfo (Cortex-A72) is bind-mounted over it, in a private mount namespace.
# - LiteRT int8 is wrong under qemu's default CPU model ("max", which advertises SME): QEMU_CPU=cortex-a72.
# - /sys must be mounted too: without it the cpuinfo library fails to initialize, XNNPACK picks other int8
#   kernels, and int8 outputs drift up to ~50 quantization steps from x86 (measured on the demo bundle).
# Needs root (debootstrap, chroot, mounts) and network access to the Debian mirror and PyPI.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
ARM64_CACHE="${ARM64_CACHE:-/var/cache/edgexfer-arm64}"
ROOT="$ARM64_CACHE/bookworm-arm64"
WHEELS="$ARM64_CACHE/wheels"
SITE=/opt/edgexfer-site                      # inside the userland
PY="${PY:-$REPO/.venv/bin/python}"           # x86 interpreter with edgexfer[cpu] (the reference side)
BUNDLE="${BUNDLE:-$REPO/demo/bundle}"
IMAGES="${IMAGES:-$REPO/demo/images/test}"
RESULT="${RESULT:-$REPO/benchmarks/results/arm64_check.json}"
FORMATS="${FORMATS:-tflite,tflite-int8,onnx}"
# The Debian mirror this machine's apt already uses (deb822 sources first, then one-line sources), or $MIRROR.
apt_mirror() {
  awk '/^URIs:/ && $2 !~ /security/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null
  awk '$1 == "deb" && $2 !~ /security/ && $2 !~ /^\[/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null
}
MIRROR="${MIRROR:-$(apt_mirror | sed -n 1p)}"  # sed reads all: `head` under pipefail can SIGPIPE
NICE=(nice -n 19 ionice -c 3)

# pip matches only the platform tags it is given: every manylinux_2_N up to bookworm's glibc 2.36.
PLATFORMS=(--platform manylinux2014_aarch64 --platform linux_aarch64)
for n in $(seq 17 36); do PLATFORMS+=(--platform "manylinux_2_${n}_aarch64"); done

log() { printf '[arm64-check] %s\n' "$*" >&2; }
quiet() { grep -v "is ignored: it is neither a file nor a directory" || true; }  # pip's find-links noise
die() { log "FAILED: $*"; exit 1; }

host_tools() {  # debootstrap, the static aarch64 emulator and binfmt registration, from Debian's packages
  local missing=()
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  [ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
  command -v update-binfmts >/dev/null || missing+=(binfmt-support)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  mountpoint -q /proc/sys/fs/binfmt_misc || mount binfmt_misc -t binfmt_misc /proc/sys/fs/binfmt_misc
  update-binfmts --enable qemu-aarch64 2>/dev/null || true
  [ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || die "qemu-aarch64 is not registered with binfmt_misc"
}

userland() {  # a minimal aarch64 bookworm with Python 3.11, built once and reused
  if [ -f "$ROOT/.edgexfer-ready" ]; then log "reusing userland $ROOT"; return; fi
  log "building aarch64 bookworm userland in $ROOT from $MIRROR (about 5 minutes)"
  rm -rf "$ROOT.partial"; mkdir -p "$ARM64_CACHE"
  "${NICE[@]}" debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip \
    bookworm "$ROOT.partial" "$MIRROR" >"$ARM64_CACHE/debootstrap.log" 2>&1 \
    || die "debootstrap (last lines of $ARM64_CACHE/debootstrap.log): $(tail -5 "$ARM64_CACHE/debootstrap.log")"
  rm -rf "$ROOT"; mv "$ROOT.partial" "$ROOT"; touch "$ROOT/.edgexfer-ready"
}

wheels() {  # aarch64 wheels for edgexfer[cpu], resolved by the x86 pip for the userland's Python and glibc
  local stamp="$WHEELS/.$(sha256sum "$REPO/pyproject.toml" | cut -c1-16)"
  if [ -f "$stamp" ]; then log "reusing wheels in $WHEELS"; else
    log "downloading aarch64 wheels for edgexfer[cpu]"
    rm -rf "$WHEELS"; mkdir -p "$WHEELS"
    "${NICE[@]}" "$PY" -m pip wheel -q --no-deps -w "$WHEELS" "$REPO"
    local project; project="$(ls "$WHEELS"/edgexfer-*.whl)"
    "$PY" -m pip download -q -d "$WHEELS" --only-binary=:all: --python-version 3.11 --implementation cp \
      "${PLATFORMS[@]}" "${project}[cpu]" 2> >(quiet >&2)
    touch "$stamp"
  fi
  log "installing $(ls "$WHEELS"/*.whl | wc -l) wheels into $ROOT$SITE"
  rm -rf "$ROOT$SITE"
  "$PY" -m pip install -q --no-deps --no-compile --target "$ROOT$SITE" --only-binary=:all: \
    --python-version 3.11 --implementation cp "${PLATFORMS[@]}" "$WHEELS"/*.whl 2> >(quiet >&2)
}

reference() {  # x86 side: the held-out inputs and the x86 predictions, saved before anything runs on ARM
  local work="$ROOT/work"
  rm -rf "$work"; mkdir -p "$work"
  cp -r "$BUNDLE" "$work/bundle"; cp "$HERE/compare.py" "$work/"
  "$PY" "$HERE/compare.py" reference --bundle "$BUNDLE" --images "$IMAGES" --formats "$FORMATS" \
    --out "$work/x86.npz"
}

emulated() {  # aarch64 side, in a private mount namespace so no mount outlives this step
  local cpuinfo="$ARM64_CACHE/cpuinfo-cortex-a72"
  "$PY" "$HERE/compare.py" cpuinfo >"$cpuinfo"
  log "running the runtime under qemu-aarch64 (QEMU_CPU=cortex-a72); emulation is 100-200x slower"
  unshare --mount --propagation private bash -euc '
    root=$1; cpuinfo=$2; site=$3
    mount -t proc proc "$root/proc"
    mount --bind "$cpuinfo" "$root/proc/cpuinfo"
    mount -t sysfs sysfs "$root/sys"  # without it cpuinfo init fails and XNNPACK int8 drifts ~50 steps
    mount --rbind /dev "$root/dev"
    exec chroot "$root" /usr/bin/env -i QEMU_CPU=cortex-a72 PYTHONPATH="$site" PYTHONDONTWRITEBYTECODE=1 \
      HOME=/work PATH=/usr/bin:/bin LANG=C.UTF-8 \
      python3 /work/compare.py run --bundle /work/bundle --inputs /work/x86.npz --out /work/arm64.npz
  ' _ "$ROOT" "$cpuinfo" "$SITE" || die "the runtime failed inside the aarch64 userland (see above)"
}

verdict() {  # compare on x86 and write the result with the host's machine record
  mkdir -p "$(dirname "$RESULT")"
  "$PY" "$HERE/compare.py" check --reference "$ROOT/work/x86.npz" --emulated "$ROOT/work/arm64.npz" \
    --out "$RESULT"
}

[ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and mounts)"
[ -n "$MIRROR" ] || die "no Debian mirror found in /etc/apt/sources.list(.d); set MIRROR=URL of a Debian mirror"
[ -f "$BUNDLE/manifest.json" ] || die "no bundle at $BUNDLE (run \`make demo\` first, or set BUNDLE=...)"
[ -d "$IMAGES" ] || die "no held-out images at $IMAGES (run \`make demo\` first, or set IMAGES=...)"
case "${1:-all}" in
  userland) host_tools; userland ;;
  all) host_tools; userland; wheels; reference; emulated; verdict ;;
  *) die "unknown step '$1' (expected: all, userland)" ;;
esac
