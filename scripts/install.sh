#!/usr/bin/env bash
# Installs meshd from this source tree on Debian/Ubuntu (apt) or Amazon Linux
# 2023 (dnf), as root:
#
#   scripts/install.sh [--router] [--prefix /opt/meshd]
#
# - checks Node.js >= 20.19 (it installs no Node itself: see the error, or
#   scripts/ec2-user-data.sh, for where to get it);
# - installs the build tools (g++, make, python3: npm ci compiles the TUN
#   addon, better-sqlite3 and netlink) and what meshd runs (ip, nft, ping);
# - copies the tree to PREFIX (default /opt/meshd), runs `npm ci` (which also
#   builds dist/ and the addon; it needs the devDependencies for that), then
#   `npm prune --omit=dev`;
# - writes /usr/bin/meshd, a wrapper that runs PREFIX with the Node it checked;
# - installs meshd.service, meshd-server.service and meshd@.service into
#   /etc/systemd/system (enables nothing) and creates /etc/meshd (0700);
# - --router: installs /etc/sysctl.d/99-meshd-router.conf (IPv4/IPv6
#   forwarding on) and applies it. meshd.service keeps /proc/sys read-only,
#   so a subnet router needs this.
#
# Running it again changes nothing unless the tree changed (the build is
# skipped while the sources, the lock file and the Node version are the same).
# It never starts, stops or restarts a service.
#
# For tests and offline use:
#   --root DIR     install under DIR instead of / (a throwaway root: no
#                  packages, no systemctl, no sysctl; the wrapper points into
#                  DIR so the result runs in place)
#   --dry-run      print what would change, change nothing
#   --prebuilt     take dist/, node_modules/ and the addon from this tree (it
#                  must have been built here: npm ci) instead of running npm ci
#   --skip-packages  install no distribution packages
# Environment: MESHD_NODE, MESHD_NPM name the node and npm to use (default:
# from PATH); MESHD_INSTALL_PREBUILT=1 is --prebuilt.
set -Eeuo pipefail
umask 022
export LC_ALL=C

PROG=install.sh
NODE_MIN_MAJOR=20
NODE_MIN_MINOR=19

die() { echo "$PROG: $*" >&2; exit 1; }
usage_error() { echo "$PROG: $* (see $PROG --help)" >&2; exit 2; }
# A command that fails unexpectedly: one line naming it (once, not again per subshell).
trap 'rc=$?; ((BASH_SUBSHELL)) || echo "$PROG: failed (exit $rc) at line $LINENO: $BASH_COMMAND" >&2; exit $rc' ERR

ROOT=""
PREFIX=/opt/meshd
ROUTER=0
DRY_RUN=0
PREBUILT=${MESHD_INSTALL_PREBUILT:-0}
SKIP_PACKAGES=0

while (($#)); do
  case $1 in
    --router) ROUTER=1 ;;
    --dry-run | -n) DRY_RUN=1 ;;
    --prebuilt) PREBUILT=1 ;;
    --skip-packages) SKIP_PACKAGES=1 ;;
    --prefix | --root)
      (($# >= 2)) || usage_error "$1 needs a directory"
      [[ $1 == --prefix ]] && PREFIX=$2 || ROOT=$2
      shift ;;
    --prefix=*) PREFIX=${1#*=} ;;
    --root=*) ROOT=${1#*=} ;;
    -h | --help) sed -n '2,/^set -Eeuo/{/^set -Eeuo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) usage_error "unknown option $1" ;;
  esac
  shift
done

[[ $PREFIX == /* ]] || usage_error "--prefix must be an absolute path, not $PREFIX"
PREFIX=${PREFIX%/}
[[ -n $PREFIX && $PREFIX != /usr && $PREFIX != /usr/bin ]] || usage_error "--prefix must be a directory of its own, such as /opt/meshd"
if [[ -n $ROOT ]]; then
  [[ $ROOT == /* ]] || ROOT=$PWD/$ROOT
  ROOT=${ROOT%/}
  [[ -n $ROOT ]] || usage_error "--root / is the default; leave it out"
  SKIP_PACKAGES=1
fi

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEST=$ROOT$PREFIX
CHANGES=0

# ---- helpers: every change goes through these, so --dry-run and the change count see it all

say() { echo "$PROG: $*"; }
changed() { CHANGES=$((CHANGES + 1)); if ((DRY_RUN)); then say "would $*"; else say "$*"; fi; }
# run DESCRIPTION CMD...: a command that changes the system
run() {
  local what=$1; shift
  changed "$what"
  ((DRY_RUN)) || "$@"
}

same_file() { # SRC DST MODE: DST already has SRC's content and MODE
  [[ -f $2 && ! -L $2 ]] && cmp -s "$1" "$2" && [[ $(stat -c %a "$2") == "${3#0}" ]]
}

# put_file SRC DST MODE: copies when the content or mode differs, else nothing.
put_file() {
  same_file "$@" && return 0
  changed "install ${2#"$ROOT"}"
  copy_file "$@"
}

copy_file() { # SRC DST MODE, unconditionally (except in a dry run)
  local src=$1 dst=$2 mode=$3
  ((DRY_RUN)) && return 0
  mkdir -p "$(dirname "$dst")"
  # Into a temporary file and renamed: a running meshd never sees half a file.
  local tmp
  tmp=$(mktemp "$(dirname "$dst")/.install.XXXXXX")
  cat "$src" >"$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$dst"
}

# put_text DST MODE TEXT: put_file from a string.
put_text() {
  local tmp
  tmp=$(mktemp)
  printf '%s' "$3" >"$tmp"
  put_file "$tmp" "$1" "$2" || { rm -f "$tmp"; return 1; }
  rm -f "$tmp"
}

# put_dir DIR MODE
put_dir() {
  local dir=$1 mode=$2
  if [[ -d $dir ]]; then
    [[ $(stat -c %a "$dir") == "${mode#0}" ]] || run "chmod $mode ${dir#"$ROOT"}" chmod "$mode" "$dir"
  else
    run "create ${dir#"$ROOT"} ($mode)" install -d -m "$mode" "$dir"
  fi
}

version_ok() { # "v20.19.0" -> is it at least NODE_MIN_MAJOR.NODE_MIN_MINOR?
  local v=${1#v} major minor
  [[ $v =~ ^([0-9]+)\.([0-9]+) ]] || return 1
  major=${BASH_REMATCH[1]} minor=${BASH_REMATCH[2]}
  ((major > NODE_MIN_MAJOR || (major == NODE_MIN_MAJOR && minor >= NODE_MIN_MINOR)))
}

# ---- 1. preflight: nothing has changed yet when any of these fails

if ((!DRY_RUN)) && [[ -z $ROOT && $(id -u) -ne 0 ]]; then
  die "run as root (sudo $0 ...), or try --dry-run / --root DIR"
fi
[[ -f $SRC/package.json && -f $SRC/package-lock.json && -f $SRC/bin/meshd ]] ||
  die "$SRC is not a meshd source tree (no package.json, package-lock.json or bin/meshd)"

HOW_TO_GET_NODE="Debian/Ubuntu: NodeSource (https://github.com/nodesource/distributions, node_22.x); Amazon Linux 2023: dnf install nodejs22 nodejs22-npm; scripts/ec2-user-data.sh does either"
NODE=${MESHD_NODE:-$(command -v node || true)}
[[ -n $NODE ]] || die "Node.js >= $NODE_MIN_MAJOR.$NODE_MIN_MINOR is required and no node is on PATH; install it: $HOW_TO_GET_NODE"
NODE_VERSION=$("$NODE" --version 2>/dev/null) || die "$NODE --version failed; reinstall Node.js >= $NODE_MIN_MAJOR.$NODE_MIN_MINOR: $HOW_TO_GET_NODE"
version_ok "$NODE_VERSION" ||
  die "Node.js >= $NODE_MIN_MAJOR.$NODE_MIN_MINOR is required, found ${NODE_VERSION:-nothing} at $NODE; upgrade it: $HOW_TO_GET_NODE"
# Pinned by its real path: on Amazon Linux /usr/bin/node is an alternatives
# link that another Node version can take over, and the addons are built for
# this one's ABI.
NODE=$(readlink -f "$NODE")
if [[ -z $ROOT && $NODE == @(/root/*|/home/*) ]]; then
  die "node is $NODE, inside a home directory, which the meshd units cannot see (ProtectHome=yes); install Node.js system-wide: $HOW_TO_GET_NODE"
fi
NPM=${MESHD_NPM:-$(command -v npm || true)}
((PREBUILT)) || [[ -n $NPM ]] || die "npm is not on PATH (Amazon Linux 2023: dnf install nodejs22-npm; Debian's nodejs package: apt-get install npm)"
if ((PREBUILT)); then
  [[ -f $SRC/dist/cli/main.js && -d $SRC/node_modules && -f $SRC/native/build/Release/meshd_native.node ]] ||
    die "--prebuilt: $SRC is not built (needs dist/, node_modules/ and native/build/Release/meshd_native.node: run npm ci there first)"
fi

# ---- 2. distribution packages

install_packages() {
  local ids="" missing=() p
  [[ -r /etc/os-release ]] && ids=" $(. /etc/os-release; echo "${ID:-} ${ID_LIKE:-}") "
  if command -v apt-get >/dev/null && [[ $ids == *" debian "* || $ids == *" ubuntu "* ]]; then
    for p in g++ make python3 iproute2 nftables iputils-ping; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    run "apt-get install ${missing[*]}" env DEBIAN_FRONTEND=noninteractive sh -c \
      'apt-get -o DPkg::Lock::Timeout=600 update -qq && apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "$@"' sh "${missing[@]}"
  elif command -v dnf >/dev/null && [[ $ids == *" amzn "* || $ids == *" fedora "* || $ids == *" rhel "* ]]; then
    for p in gcc-c++ make python3 iproute nftables iputils; do
      rpm -q "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    ((${#missing[@]})) || return 0
    run "dnf install ${missing[*]}" dnf install -y -q "${missing[@]}"
  else
    die "unsupported distribution ($(echo $ids)) (Debian/Ubuntu with apt or Amazon Linux 2023 with dnf); install g++ make python3 iproute2 nftables ping yourself and rerun with --skip-packages"
  fi
}
((SKIP_PACKAGES)) || install_packages

# ---- 3. the tree in PREFIX

# What is copied from the source; dist/, node_modules/ and native/build/ are built in PREFIX.
TREE=(bin src native/src native/binding.gyp native/README.md systemd scripts package.json package-lock.json tsconfig.json README.md LICENSE)

list_tree() { # relative paths of the files of TREE under $1, sorted
  local base=$1 t
  for t in "${TREE[@]}"; do
    [[ -e $base/$t ]] || continue
    (cd "$base" && find "$t" -type f -print)
  done | sort
}

sync_tree() {
  local f mode copied=() stale=()
  put_dir "$DEST" 0755
  while IFS= read -r f; do
    [[ -x $SRC/$f ]] && mode=0755 || mode=0644
    same_file "$SRC/$f" "$DEST/$f" "$mode" || copied+=("$f")
  done < <(list_tree "$SRC")
  # Files a previous version installed that this one no longer has.
  [[ -d $DEST ]] && mapfile -t stale < <(comm -13 <(list_tree "$SRC") <(list_tree "$DEST"))
  if ((${#copied[@]})); then
    changed "copy ${#copied[@]} file(s) of the meshd tree to $PREFIX"
    for f in "${copied[@]}"; do
      [[ -x $SRC/$f ]] && mode=0755 || mode=0644
      copy_file "$SRC/$f" "$DEST/$f" "$mode"
    done
  fi
  if ((${#stale[@]})); then
    changed "remove ${#stale[@]} file(s) from $PREFIX that meshd no longer has"
    if ((!DRY_RUN)); then for f in "${stale[@]}"; do rm -f "$DEST/$f"; done; fi
  fi
}
[[ $SRC == "$DEST" ]] || sync_tree

# The build is redone only when its inputs change: the tree, Node's version
# (the addons are compiled for its ABI) and, for --prebuilt, the build copied.
build_stamp() {
  {
    echo "node $NODE_VERSION prebuilt $PREBUILT"
    (cd "$SRC" && list_tree . | xargs -r -d '\n' sha256sum)
    if ((PREBUILT)); then
      (cd "$SRC" && find dist native/build/Release/meshd_native.node node_modules/.package-lock.json -type f -print 2>/dev/null | sort | xargs -r -d '\n' sha256sum)
    fi
  } | sha256sum | cut -d' ' -f1
}
STAMP_FILE=$DEST/.meshd-build
STAMP=$(build_stamp)

build() {
  if ((PREBUILT)) && [[ $SRC == "$DEST" ]]; then
    : # built in place already
  elif ((PREBUILT)); then
    rm -rf "$DEST/dist" "$DEST/node_modules" "$DEST/native/build"
    cp -a "$SRC/dist" "$DEST/dist"
    mkdir -p "$DEST/native/build/Release"
    cp "$SRC/native/build/Release/meshd_native.node" "$DEST/native/build/Release/"
    cp -a "$SRC/node_modules" "$DEST/node_modules"
    if [[ -n $NPM ]]; then
      (cd "$DEST" && "$NPM" prune --omit=dev --offline --no-audit --no-fund --loglevel=error >/dev/null) ||
        say "warning: could not prune the devDependencies offline; they stay in ${PREFIX}/node_modules"
    fi
    find "$DEST/node_modules" -mindepth 1 -maxdepth 1 -type d -empty -delete
  else
    # HOME: cloud-init may run us without one, and npm keeps its cache there.
    export HOME=${HOME:-/root}
    # --include=dev: the build (prepare: tsc) needs typescript, even with NODE_ENV=production.
    (cd "$DEST" && "$NPM" ci --include=dev --no-audit --no-fund)
    # npm ci's install hook only warns when the addon fails to build; meshd cannot open a TUN without it.
    [[ -f $DEST/native/build/Release/meshd_native.node ]] || (cd "$DEST" && "$NPM" run build:native)
    [[ -f $DEST/dist/cli/main.js ]] || (cd "$DEST" && "$NPM" run build)
    (cd "$DEST" && "$NPM" prune --omit=dev --no-audit --no-fund)
    find "$DEST/node_modules" -mindepth 1 -maxdepth 1 -type d -empty -delete
  fi
  [[ -f $DEST/dist/cli/main.js && -f $DEST/native/build/Release/meshd_native.node ]] ||
    die "the build left no dist/cli/main.js or native addon in $DEST"
  # The dependencies' own addons (SQLite, netlink) load with this Node.
  (cd "$DEST" && "$NODE" -e "new (require('better-sqlite3'))(':memory:').close(); require('netlink')") ||
    die "the native modules in $DEST/node_modules do not load with $NODE $NODE_VERSION (built for another Node? rerun without --prebuilt)"
  printf '%s\n' "$STAMP" >"$STAMP_FILE"
}
if [[ ! -f $STAMP_FILE || $(cat "$STAMP_FILE") != "$STAMP" || ! -f $DEST/dist/cli/main.js ]]; then
  if ((PREBUILT)) && [[ $SRC == "$DEST" ]]; then
    run "use the build already in $PREFIX" build
  elif ((PREBUILT)); then
    run "copy the build (dist, node_modules, addon) from $SRC to $PREFIX, then npm prune --omit=dev" build
  else
    run "build in $PREFIX: npm ci, npm prune --omit=dev" build
  fi
fi

# ---- 4. /usr/bin/meshd, units, config directory, sysctl

# The Node checked above, by absolute path: systemd's PATH may find another one,
# and a rerun of this script (which rebuilds the addons) is what changes it.
printf -v QNODE %q "$NODE"
printf -v QMAIN %q "$DEST/bin/meshd"
put_text "$ROOT/usr/bin/meshd" 0755 "#!/bin/sh
# Written by meshd's scripts/install.sh: runs meshd from $DEST with $NODE.
exec $QNODE $QMAIN \"\$@\"
"

UNITS_CHANGED=0
for unit in meshd.service meshd-server.service meshd@.service; do
  before=$CHANGES
  put_file "$SRC/systemd/$unit" "$ROOT/etc/systemd/system/$unit" 0644
  ((CHANGES == before)) || UNITS_CHANGED=1
done

put_dir "$ROOT/etc/meshd" 0700

if ((ROUTER)); then
  SYSCTL_FILE=$ROOT/etc/sysctl.d/99-meshd-router.conf
  put_file "$SRC/systemd/99-meshd-router.conf" "$SYSCTL_FILE" 0644
  if [[ -z $ROOT ]]; then
    fwd4=$(cat /proc/sys/net/ipv4/ip_forward 2>/dev/null || echo 0)
    fwd6=$(cat /proc/sys/net/ipv6/conf/all/forwarding 2>/dev/null || echo 1) # no IPv6: nothing to do
    if [[ $fwd4 != 1 || $fwd6 != 1 ]]; then
      changed "apply $SYSCTL_FILE (IP forwarding on)"
      ((DRY_RUN)) || sysctl -q -p "$SYSCTL_FILE" >/dev/null 2>&1 || die "could not apply $SYSCTL_FILE with sysctl -p (is /proc/sys read-only here?)"
    fi
  fi
fi

if [[ -z $ROOT ]] && ((UNITS_CHANGED)) && [[ -d /run/systemd/system ]]; then
  run "systemctl daemon-reload" systemctl daemon-reload
fi

# ---- done

if ((CHANGES == 0)); then
  say "nothing to change: meshd in $PREFIX is up to date"
elif ((DRY_RUN)); then
  say "dry run: $CHANGES change(s) not made"
else
  say "meshd installed in $PREFIX ($CHANGES change(s)); next: systemctl enable --now meshd (a node) or meshd-server (the coordination server)"
  if [[ -z $ROOT ]] && command -v systemctl >/dev/null && systemctl is-active --quiet meshd.service 2>/dev/null; then
    say "meshd.service is running the previous version: systemctl restart meshd when convenient"
  fi
fi
