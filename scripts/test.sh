#!/usr/bin/env bash
# Runs the whole meshd test suite from a fresh clone, installing what it
# needs first: the system packages the network tests drive (as root on
# Debian/Ubuntu), the npm dependencies, the TypeScript build and the native
# addon. `.ci/run` runs exactly this script.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(iproute2 iputils-ping nftables wireguard-tools wireguard-go iperf3 jq netcat-openbsd systemd python3 gcc libssl-dev)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "scripts/test.sh: missing packages ${missing[*]}; run as root (or install them) first" >&2
    exit 1
  fi
  echo "== installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # --no-install-recommends: wireguard-tools would otherwise pull in a kernel image.
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "== npm ci"
npm ci --no-audit --no-fund

echo "== build"
npm run build
# npm ci's install hook builds the addon; if it could not, fail here loudly.
[[ -f native/build/Release/meshd_native.node ]] || npm run build:native

echo "== tests"
npx vitest run "$@"
