#!/bin/bash
# EC2 user data for a meshd subnet router: cloud-init runs this once, as
# root, on the instance's first boot. Amazon Linux 2023 or Ubuntu 22.04/24.04,
# arm64 (Graviton) or x86_64: nothing below depends on the architecture.
#
# It installs Node.js 22 if no Node >= 20.19 is present (Amazon Linux: the
# distribution's nodejs22; Ubuntu: the NodeSource apt repository), git, and
# meshd from MESHD_GIT_URL (scripts/install.sh --router: the build tools,
# /opt/meshd, the units, IP forwarding), writes the auth key to
# /etc/meshd/authkey (0600), starts meshd.service and joins the mesh,
# advertising the VPC's prefix.
#
# Needs outbound internet (a NAT gateway or a public IP; or mirrors): the
# package repositories, NodeSource on Ubuntu, the git host, registry.npmjs.org
# for npm ci (and nodejs.org if node-gyp finds no Node headers). Its output is
# in /var/log/cloud-init-output.log; the auth key never is.
#
# On the instance (see "Deploy on EC2" in README.md): disable the
# source/destination check, allow UDP 41641 in, and approve the route
# (`meshd admin routes approve PREFIX`) unless autoApprovers does.
#
# Fill in the settings below. Rendering with Terraform: use replace() or
# prepend your own settings; templatefile() would take every ${...} in this
# script for its own (escape them as $${...} if you use it).
set -euo pipefail

MESHD_GIT_URL="https://github.com/meshd/meshd.git"
MESHD_GIT_REF="main"                   # a branch or tag
LOGIN_SERVER="https://coord.example.com"
# The auth key: a pre-authorized one, e.g.
#   meshd admin keys create --preauthorized --tags tag:router --expiry 90d
# Either paste it here, or (better) keep it in an SSM SecureString parameter
# and name it in AUTHKEY_SSM_PARAMETER: user data is readable by every process
# on the instance through the instance metadata service, and by anyone allowed
# ec2:DescribeInstanceAttribute. The parameter needs the aws CLI (preinstalled
# on Amazon Linux 2023; on Ubuntu: snap install aws-cli --classic) and an
# instance role allowing ssm:GetParameter on it (and kms:Decrypt on its key).
AUTHKEY=""
AUTHKEY_SSM_PARAMETER=""               # e.g. /meshd/router-authkey
VPC_CIDR=""                            # empty: this instance's VPC IPv4 prefixes, from instance metadata
SNAT_SUBNET_ROUTES="true"              # false: the VPC sees mesh addresses; route 100.64.0.0/10 to this instance
MESHD_HOSTNAME=""                      # empty: the instance's hostname
NODE_MAJOR="22"

SRC_DIR=/usr/local/src/meshd
AUTHKEY_FILE=/etc/meshd/authkey
MESHD_SOCKET=/run/meshd/meshd.sock

log() { echo "meshd user-data: $*"; }
die() { echo "meshd user-data: $*" >&2; exit 1; }
# The line only: a command's text could hold a setting.
trap 'echo "meshd user-data: failed at line $LINENO (see above)" >&2' ERR

# Instance metadata (IMDSv2): imds PATH
imds() {
  local token
  token=$(curl -fsS -m 5 -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token) &&
    curl -fsS -m 5 -H "X-aws-ec2-metadata-token: $token" "http://169.254.169.254/latest/meta-data/$1"
}

node_ok() { # is a Node >= 20.19 on PATH?
  local v
  v=$(node --version 2>/dev/null) || return 1
  [[ $v =~ ^v([0-9]+)\.([0-9]+) ]] || return 1
  ((BASH_REMATCH[1] > 20 || (BASH_REMATCH[1] == 20 && BASH_REMATCH[2] >= 19)))
}

install_node_and_git() {
  if command -v dnf >/dev/null; then
    dnf install -y -q git
    node_ok && return 0
    log "installing Node.js $NODE_MAJOR (dnf: nodejs$NODE_MAJOR)"
    dnf install -y -q "nodejs$NODE_MAJOR" "nodejs$NODE_MAJOR-npm"
    # Amazon Linux namespaces Node (node-22, npm-22); /usr/bin/node and npm are
    # alternatives links, which the first Node installed gets.
    alternatives --set node "/usr/bin/node-$NODE_MAJOR" >/dev/null 2>&1 || true
  elif command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    # On a first boot apt-daily may hold the dpkg lock for a while.
    local wait=(-o DPkg::Lock::Timeout=600)
    apt-get "${wait[@]}" update -qq
    apt-get "${wait[@]}" install -y -qq --no-install-recommends git ca-certificates curl gnupg
    node_ok && return 0
    # Ubuntu's own nodejs is older than 20.19 up to 24.04: NodeSource's repository.
    log "installing Node.js $NODE_MAJOR (apt: NodeSource node_$NODE_MAJOR.x)"
    install -d -m 0755 /etc/apt/keyrings
    curl -fsSL https://deb.nodesource.com/gpgkey/nodesource-repo.gpg.key | gpg --dearmor --yes -o /etc/apt/keyrings/nodesource.gpg
    echo "deb [signed-by=/etc/apt/keyrings/nodesource.gpg] https://deb.nodesource.com/node_$NODE_MAJOR.x nodistro main" >/etc/apt/sources.list.d/nodesource.list
    apt-get "${wait[@]}" update -qq
    apt-get "${wait[@]}" install -y -qq nodejs
  else
    die "neither dnf nor apt-get found: this script supports Amazon Linux 2023 and Ubuntu"
  fi
  node_ok || die "Node.js >= 20.19 is still not on PATH after installing it (found: $(node --version 2>&1 || true))"
  command -v npm >/dev/null || die "npm is not on PATH after installing Node.js"
}

fetch_meshd() {
  if [[ -d $SRC_DIR/.git ]]; then
    git -C "$SRC_DIR" fetch -q --depth 1 origin "$MESHD_GIT_REF"
    git -C "$SRC_DIR" checkout -q --force FETCH_HEAD
  else
    git clone -q --depth 1 --branch "$MESHD_GIT_REF" "$MESHD_GIT_URL" "$SRC_DIR"
  fi
  log "meshd $(git -C "$SRC_DIR" rev-parse --short HEAD) from $MESHD_GIT_URL"
}

# write_authkey FILE: the key from AUTHKEY or the SSM parameter into FILE,
# 0600 from the start (umask), through a temporary file renamed into place.
# The key goes from the variable or the aws CLI's stdout straight into the
# file: never into a command's arguments (printf is a shell builtin), the
# log or the terminal.
write_authkey() {
  local file=$1 tmp
  install -d -m 0700 "$(dirname "$file")"
  tmp=$(umask 077 && mktemp "$(dirname "$file")/.authkey.XXXXXX")
  if [[ -n $AUTHKEY_SSM_PARAMETER ]]; then
    local region
    region=$(imds placement/region) || { rm -f "$tmp"; die "cannot read the region from instance metadata"; }
    aws ssm get-parameter --region "$region" --name "$AUTHKEY_SSM_PARAMETER" --with-decryption \
      --query Parameter.Value --output text >"$tmp" ||
      { rm -f "$tmp"; die "cannot read SSM parameter $AUTHKEY_SSM_PARAMETER (instance role: ssm:GetParameter, kms:Decrypt)"; }
  else
    printf '%s\n' "$AUTHKEY" >"$tmp"
  fi
  [[ $(tr -d '[:space:]' <"$tmp") ]] || { rm -f "$tmp"; die "the auth key is empty"; }
  chmod 0600 "$tmp"
  mv -f "$tmp" "$file"
  log "auth key written to $file (0600)"
}

vpc_prefixes() { # this instance's VPC IPv4 prefixes, comma-separated
  local mac
  mac=$(imds mac) && imds "network/interfaces/macs/$mac/vpc-ipv4-cidr-blocks" | paste -sd, -
}

check_settings() { # before anything is installed
  [[ -n $AUTHKEY || -n $AUTHKEY_SSM_PARAMETER ]] || die "set AUTHKEY or AUTHKEY_SSM_PARAMETER at the top of the user data"
  [[ -n $LOGIN_SERVER && -n $MESHD_GIT_URL ]] || die "set LOGIN_SERVER and MESHD_GIT_URL at the top of the user data"
  [[ $SNAT_SUBNET_ROUTES == @(true|false) ]] || die "SNAT_SUBNET_ROUTES must be true or false, not $SNAT_SUBNET_ROUTES"
}

main() {
  check_settings
  export HOME=${HOME:-/root} # cloud-init may give none; npm keeps its cache there
  install_node_and_git
  fetch_meshd
  bash "$SRC_DIR/scripts/install.sh" --router

  write_authkey "$AUTHKEY_FILE"
  AUTHKEY="" # nothing below needs it

  if [[ -z $VPC_CIDR ]]; then
    VPC_CIDR=$(vpc_prefixes) || die "cannot read the VPC prefix from instance metadata; set VPC_CIDR"
  fi

  systemctl enable --now meshd.service
  for _ in $(seq 1 30); do [[ -S $MESHD_SOCKET ]] && break; sleep 1; done
  [[ -S $MESHD_SOCKET ]] || die "meshd.service did not open $MESHD_SOCKET (journalctl -u meshd)"

  local extra=()
  [[ -n $MESHD_HOSTNAME ]] && extra+=(--hostname "$MESHD_HOSTNAME")
  log "joining $LOGIN_SERVER, advertising $VPC_CIDR (SNAT $SNAT_SUBNET_ROUTES)"
  meshd up --login-server "$LOGIN_SERVER" --authkey file:"$AUTHKEY_FILE" \
    --advertise-routes "$VPC_CIDR" --snat-subnet-routes="$SNAT_SUBNET_ROUTES" "${extra[@]}"
  meshd ip -4
}

# Run when executed (cloud-init); sourcing it defines the functions only (the tests do).
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
  main "$@"
fi
