#!/usr/bin/env bash
# meshd in one command: a small zero-trust mesh in network namespaces on this
# machine, shown working, then left running until Ctrl-C.
#
#   sudo bash scripts/demo.sh           build it, show it, keep it running until Ctrl-C
#   sudo bash scripts/demo.sh --check   the same, then tear down at once; non-zero exit if
#                                       anything did not turn out as expected (CI runs this)
#   sudo bash scripts/demo.sh --down    tear down a demo left running
#
# What it builds (every name starts with a random prefix, mdemo-XXXX-):
#   net      an underlay router joining the four hosts below (192.168.N.0/24 each)
#   server   `meshd server`, SQLite in a temp dir, with a default-deny policy
#   router   a subnet router advertising 10.0.0.0/16, in front of
#   vpc      a private host 10.0.1.10 with a web server on :80 and a "db" on :5432,
#            reachable only through the router
#   alice    alice's laptop (--accept-routes)
#   bob      bob's laptop (--accept-routes)
#
# Like scripts/test.sh it first installs what is missing (apt packages with
# --no-install-recommends, then `npm ci` and the build only when node_modules or
# dist/ are missing or older than their sources). MESHD_DEMO_SKIP_SETUP=1 skips
# that step (the test suite sets it: it has built dist/ already).
#
# Every wait has a deadline. Teardown always runs (EXIT, INT, TERM, HUP, PIPE traps):
# processes stopped by PID (SIGTERM, then SIGKILL), namespaces deleted, the temp
# dir and WireGuard UAPI sockets removed. Each demo is recorded in
# /run/meshd-demo/<prefix>.state, so --down finds one whose script is gone.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MESHD="$REPO/bin/meshd"
STATE_DIR=/run/meshd-demo
UAPI_DIR=/var/run/wireguard
PREFIX_RE='^mdemo-[0-9a-f]{4}$'
PACKAGES=(iproute2 iputils-ping nftables wireguard-tools python3)

usage() {
  sed -n '5,8p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

MODE=run
case "${1:-}" in
  '') ;;
  --check) MODE=check ;;
  --down) MODE=down ;;
  -h | --help) usage; exit 0 ;;
  *) echo "demo.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
esac
(($# <= 1)) || { echo "demo.sh: one option at most" >&2; usage >&2; exit 2; }

if [[ $(id -u) -ne 0 ]]; then
  echo "demo.sh: needs root (it creates network namespaces and TUN devices): sudo bash scripts/demo.sh${1:+ $1}" >&2
  exit 1
fi

# ---------------------------------------------------------------------------
# Small helpers

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# wait_until SECONDS DESCRIPTION CMD...: polls CMD every 0.2 s until it succeeds;
# returns 1 (after saying what it waited for) once the deadline has passed.
wait_until() {
  local limit=$1 what=$2
  shift 2
  local deadline=$(($(now_ms) + limit * 1000))
  while :; do
    # In a subshell: a trap that fires meanwhile still prints to our own stdout.
    if ("$@") >/dev/null 2>&1; then return 0; fi
    if (($(now_ms) >= deadline)); then
      echo "  timed out after ${limit} s waiting for $what" >&2
      return 1
    fi
    sleep 0.2
  done
}

# A process is gone once /proc has no entry for it or it is a zombie.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [[ ${stat:0:1} != Z ]]
}

# stop_pids PID...: SIGTERM, up to 5 s grace, then SIGKILL and up to 2 s more.
stop_pids() {
  local pid left=() deadline
  for pid in "$@"; do alive "$pid" && kill -TERM "$pid" 2>/dev/null && left+=("$pid"); done
  ((${#left[@]})) || return 0
  deadline=$(($(now_ms) + 5000))
  while (($(now_ms) < deadline)); do
    local still=()
    for pid in "${left[@]}"; do alive "$pid" && still+=("$pid"); done
    ((${#still[@]})) || return 0
    left=("${still[@]}")
    sleep 0.1
  done
  for pid in "${left[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  deadline=$(($(now_ms) + 2000))
  while (($(now_ms) < deadline)); do
    local still=()
    for pid in "${left[@]}"; do alive "$pid" && still+=("$pid"); done
    ((${#still[@]})) || return 0
    left=("${still[@]}")
    sleep 0.1
  done
}

demo_namespaces() { # PREFIX: the namespaces that exist with that prefix
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$1-" || true
}

# teardown PREFIX DIR [PID...]: everything a demo made, whether or not its
# script is still alive. Idempotent; never fails.
teardown() {
  local prefix=$1 dir=$2
  shift 2
  [[ $prefix =~ $PREFIX_RE ]] || return 0
  local pids=() pid ns
  # A recorded PID counts only while it is still one of ours (its command line
  # names the demo's dir): after a crash the number may belong to another process.
  if [[ -n $dir ]]; then
    for pid in "$@"; do grep -qaF -- "$dir" "/proc/$pid/cmdline" 2>/dev/null && pids+=("$pid"); done
  fi
  for ns in $(demo_namespaces "$prefix"); do
    # Anything still living in a demo namespace belongs to the demo.
    local more=()
    mapfile -t more < <(ip netns pids "$ns" 2>/dev/null || true)
    pids+=("${more[@]}")
  done
  ((${#pids[@]})) && stop_pids "${pids[@]}"
  for ns in $(demo_namespaces "$prefix"); do ip netns del "$ns" 2>/dev/null || true; done
  rm -f "$UAPI_DIR/$prefix"-*.sock
  if [[ $dir =~ ^/tmp/$prefix\.[A-Za-z0-9]+$ ]]; then rm -rf "$dir"; fi
  rm -f "$STATE_DIR/$prefix.state"
}

# ---------------------------------------------------------------------------
# --down: tear down demos left running

state_get() { # FILE KEY
  sed -n "s/^$2=//p" "$1" | head -n 1
}

if [[ $MODE == down ]]; then
  shopt -s nullglob
  found=0
  for f in "$STATE_DIR"/mdemo-*.state; do
    prefix=$(state_get "$f" prefix)
    owner=$(state_get "$f" owner)
    mode=$(state_get "$f" mode)
    dir=$(state_get "$f" dir)
    read -r -a pids <<<"$(state_get "$f" pids)"
    [[ $prefix =~ $PREFIX_RE ]] || { echo "ignoring malformed $f" >&2; continue; }
    if [[ $mode == check && -n $owner ]] && alive "$owner"; then
      echo "$prefix: a --check run still in progress (pid $owner); it removes itself"
      continue
    fi
    found=1
    echo "== tearing down $prefix"
    # Let its own script clean up first (it is waiting for Ctrl-C), then sweep.
    if [[ -n $owner ]] && alive "$owner" && grep -qa demo.sh "/proc/$owner/cmdline" 2>/dev/null; then
      kill -TERM "$owner" 2>/dev/null || true
      wait_until 20 "the demo script (pid $owner) to finish" test ! -e "$f" || true
    fi
    teardown "$prefix" "$dir" "${pids[@]}"
    remaining=$(demo_namespaces "$prefix")
    if [[ -n $remaining ]]; then echo "  could not delete: $remaining" >&2; exit 1; fi
    echo "   processes stopped, namespaces $prefix-* deleted, $dir removed"
  done
  ((found)) || echo "no demo running (nothing in $STATE_DIR)"
  exit 0
fi

# ---------------------------------------------------------------------------
# Setup: system packages, npm dependencies, build (each only when needed)

setup() {
  local missing=() p
  if command -v dpkg-query >/dev/null; then
    for p in "${PACKAGES[@]}"; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
      echo "== installing ${missing[*]}"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      # --no-install-recommends: wireguard-tools would otherwise pull in a kernel image.
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
  fi
  for p in ip nft python3; do
    command -v "$p" >/dev/null || { echo "demo.sh: '$p' not found; install ${PACKAGES[*]}" >&2; exit 1; }
  done
  if ! command -v node >/dev/null || ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
    echo "demo.sh: needs Node.js >= 20.19 on root's PATH (with nvm: sudo env PATH=\"\$PATH\" bash scripts/demo.sh)" >&2
    exit 1
  fi

  cd "$REPO"
  local log=/tmp/meshd-demo-setup.log
  : >"$log"
  # quiet STEP CMD...: runs CMD with its output in $log, shown only if it fails.
  quiet() {
    local step=$1
    shift
    echo "== $step (output in $log)"
    if ! "$@" >>"$log" 2>&1; then
      tail -n 40 "$log" >&2
      echo "demo.sh: $step failed; the whole output is in $log" >&2
      exit 1
    fi
  }
  if [[ ! -d node_modules || package-lock.json -nt node_modules/.package-lock.json ]]; then
    command -v npm >/dev/null || { echo "demo.sh: npm not found on root's PATH" >&2; exit 1; }
    quiet "npm ci: dependencies, native addon and build, about a minute" npm ci --no-audit --no-fund
  fi
  if [[ ! -f dist/cli/main.js || tsconfig.json -nt dist/cli/main.js || -n $(find src -newer dist/cli/main.js -name '*.ts' -print -quit) ]]; then
    quiet "build" npm run build
  fi
  # npm ci's install hook builds the addon; if it could not, fail here loudly.
  if [[ ! -f native/build/Release/meshd_native.node || -n $(find native/src native/binding.gyp -newer native/build/Release/meshd_native.node -print -quit) ]]; then
    quiet "build the native addon" npm run build:native
  fi
}

if [[ ${MESHD_DEMO_SKIP_SETUP:-} == 1 ]]; then
  [[ -f $REPO/dist/cli/main.js ]] || { echo "demo.sh: MESHD_DEMO_SKIP_SETUP=1 but $REPO/dist is not built (npm ci)" >&2; exit 1; }
else
  setup
fi
[[ -c /dev/net/tun ]] || modprobe tun 2>/dev/null || true
[[ -c /dev/net/tun ]] || { echo "demo.sh: /dev/net/tun is missing (in a container: --device /dev/net/tun --cap-add NET_ADMIN)" >&2; exit 1; }

# ---------------------------------------------------------------------------
# The demo's names, temp dir and state file

for _ in 1 2 3 4 5 6 7 8; do
  P=mdemo-$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
  [[ -z $(demo_namespaces "$P") && ! -e $STATE_DIR/$P.state ]] && ! compgen -G "$UAPI_DIR/$P-*" >/dev/null && break
done
DIR=
PIDS=()

on_exit() {
  local rc=$?
  set +e
  trap - EXIT
  trap '' INT TERM HUP PIPE # teardown is bounded; let it finish
  echo
  echo "== tearing down $P"
  teardown "$P" "$DIR" "${PIDS[@]}"
  local left
  left=$(demo_namespaces "$P")
  if [[ -n $left ]]; then
    echo "   could not delete namespaces: $left" >&2
    ((rc)) || rc=1
  else
    echo "   processes stopped, namespaces $P-* deleted, temp files removed"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE # output piped into `head`, say

# Made only now, with the traps in place.
DIR=$(mktemp -d "/tmp/$P.XXXXXX")
LOGS=$DIR/logs
mkdir -p "$LOGS" "$DIR/keys"
[[ -d $STATE_DIR ]] || mkdir -m 0700 "$STATE_DIR"
STARTED_MS=$(now_ms)

save_state() {
  printf 'prefix=%s\nowner=%s\nmode=%s\ndir=%s\npids=%s\n' "$P" "$$" "$MODE" "$DIR" "${PIDS[*]}" >"$STATE_DIR/$P.state.tmp"
  mv -f "$STATE_DIR/$P.state.tmp" "$STATE_DIR/$P.state"
}
save_state

die() {
  echo "demo.sh: $*" >&2
  local f
  for f in "$LOGS"/*.log; do
    [[ -s $f ]] || continue
    echo "----- last lines of $(basename "$f")" >&2
    tail -n 15 "$f" >&2
  done
  exit 1
}

# nsrun NS CMD...: run CMD inside the demo namespace NS, bounded to 60 s.
nsrun() { local ns=$1; shift; timeout -k 2 60 ip netns exec "$P-$ns" "$@"; }

# bg NAME NS CMD...: start CMD in NS in the background, output to logs/NAME.log.
bg() {
  local name=$1 ns=$2
  shift 2
  ip netns exec "$P-$ns" "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
  save_state
}

indent() { sed 's/^/    /'; }

# Expectations: each is printed and counted; --check exits non-zero if any failed.
PASSED=0
FAILED=()
expect() { # ok|fail DESCRIPTION
  if [[ $1 == ok ]]; then PASSED=$((PASSED + 1)); else FAILED+=("$2"); echo "    ^ NOT AS EXPECTED: $2"; fi
}

# ---------------------------------------------------------------------------
# 1. The network

echo "meshd demo: namespaces $P-*, files in $DIR"
echo
echo "== 1. A network of namespaces"

mkns() {
  ip netns add "$P-$1"
  ip -n "$P-$1" link set lo up
  # No IPv6 duplicate address detection: addresses are usable at once.
  ip netns exec "$P-$1" sh -c 'echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad; echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad'
}

# veth NS_A NAME_A NS_B NAME_B: a veth pair, created under unique names, then renamed.
veth() {
  ip link add "$P-x" netns "$P-$1" type veth peer name "$P-y" netns "$P-$3"
  ip -n "$P-$1" link set "$P-x" name "$2"
  ip -n "$P-$3" link set "$P-y" name "$4"
  ip -n "$P-$1" link set "$2" up
  ip -n "$P-$3" link set "$4" up
}

HOSTS=(server router alice bob)
mkns net
ip netns exec "$P-net" sh -c 'echo 1 > /proc/sys/net/ipv4/ip_forward; echo 1 > /proc/sys/net/ipv6/conf/all/forwarding'
for i in 1 2 3 4; do
  h=${HOSTS[i - 1]}
  mkns "$h"
  veth "$h" eth0 net "to-$h"
  ip -n "$P-net" addr add "192.168.$i.254/24" dev "to-$h"
  ip -n "$P-net" -6 addr add "fd00:$i::fe/64" dev "to-$h" nodad
  ip -n "$P-$h" addr add "192.168.$i.1/24" dev eth0
  ip -n "$P-$h" -6 addr add "fd00:$i::1/64" dev eth0 nodad
  ip -n "$P-$h" route add default via "192.168.$i.254"
  ip -n "$P-$h" -6 route add default via "fd00:$i::fe"
done
# The VPC: one more namespace, wired only to the router host.
mkns vpc
veth vpc eth0 router vpc0
ip -n "$P-router" addr add 10.0.1.1/24 dev vpc0
ip -n "$P-vpc" addr add 10.0.1.10/24 dev eth0

cat >"$DIR/vpc-services.py" <<'EOF'
# The VPC host's services: a web server on :80 that says who it sees, and a "db" on :5432.
import http.server, socketserver, sys, threading
class Web(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from the VPC web server 10.0.1.10 (it sees you as %s)\n" % self.client_address[0]).encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, fmt, *args):
        print("web: %s %s" % (self.client_address[0], fmt % args), flush=True)
class Db(socketserver.StreamRequestHandler):
    def handle(self):
        print("db: connection from %s" % self.client_address[0], flush=True)
        self.wfile.write(b"db ready\n")
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer.daemon_threads = True
web = http.server.ThreadingHTTPServer(("10.0.1.10", 80), Web)
db = socketserver.ThreadingTCPServer(("10.0.1.10", 5432), Db)
threading.Thread(target=db.serve_forever, daemon=True).start()
print("listening", flush=True)
web.serve_forever()
EOF
bg vpc-services vpc python3 -u "$DIR/vpc-services.py"
wait_until 10 "the VPC services" grep -q listening "$LOGS/vpc-services.log" || die "the VPC services did not start"

cat <<EOF
    $P-net      underlay router joining the hosts (each 192.168.N.1, gateway .254)
    $P-server   192.168.1.1   coordination server
    $P-router   192.168.2.1   subnet router, also 10.0.1.1 on the VPC
    $P-alice    192.168.3.1   alice's laptop
    $P-bob      192.168.4.1   bob's laptop
    $P-vpc      10.0.1.10     private host: web on :80, "db" on :5432; reachable only via the router
EOF

# ---------------------------------------------------------------------------
# 2. The coordination server and its policy

echo
echo "== 2. Coordination server"
SERVER_ADDR=192.168.1.1:8080
bg server server "$MESHD" server --listen "$SERVER_ADDR" --state-dir "$DIR/server"
SERVER_PID=$LAST_PID
wait_until 20 "meshd server to start" grep -q '"meshd server running"' "$LOGS/server.log" || die "meshd server did not start"
alive "$SERVER_PID" || die "meshd server exited"
SERVER_KEY=$(sed -n 's/.*"serverKey":"\([^"]*\)".*/\1/p' "$LOGS/server.log" | head -n 1)
[[ -n $SERVER_KEY ]] || die "no serverKey in the server's start-up log"
# The login URL pins the server's public key (base64url, so it survives a query string).
LOGIN_URL="http://$SERVER_ADDR/?key=$(printf %s "$SERVER_KEY" | tr '+/' '-_' | tr -d =)"
echo "    meshd server --listen $SERVER_ADDR --state-dir $DIR/server   (embedded SQLite: server/meshd.db)"
echo "    nodes log in at $LOGIN_URL"

admin() { nsrun server "$MESHD" admin --server "http://$SERVER_ADDR" --token-file "$DIR/server/admin.token" "$@"; }
json_field() { node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{let v=JSON.parse(s);for(const k of process.argv[1].split("."))v=v?.[k];console.log(v??"")})' "$1"; }

echo
echo "== 3. Policy: default deny, a few rules, and tests it must pass"
cat >"$DIR/policy.json" <<'EOF'
{
  // Nothing passes unless a rule says so.
  "groups":    { "group:staff": ["alice", "bob"] },
  "tagOwners": { "tag:router": [] },
  "hosts":     { "web": "10.0.1.10" },
  "acls": [
    // alice may use the VPC web server (only port 80) and ping the subnet router
    { "action": "accept", "src": ["alice"], "dst": ["web:80"], "proto": "tcp" },
    { "action": "accept", "src": ["alice"], "dst": ["tag:router:*"], "proto": "icmp" },
    // alice and bob may ssh to and ping each other's laptops
    { "action": "accept", "src": ["group:staff"], "dst": ["group:staff:22"], "proto": "tcp" },
    { "action": "accept", "src": ["group:staff"], "dst": ["group:staff:*"], "proto": "icmp" }
  ],
  // Checked by the server before it accepts the policy.
  "tests": [
    { "src": "alice", "accept": ["web:80", "bob:22"], "deny": ["web:5432", "web:22"] },
    { "src": "bob",   "accept": ["alice:22"],         "deny": ["web:80", "web:5432"] }
  ]
}
EOF
indent <"$DIR/policy.json"
echo "  \$ meshd admin policy set policy.json"
if out=$(admin policy set "$DIR/policy.json" 2>&1); then
  [[ -n $out ]] && indent <<<"$out"
  expect ok
else
  indent <<<"$out"
  die "the policy was refused"
fi

# ---------------------------------------------------------------------------
# 3. Nodes join

echo
echo "== 4. Nodes join (meshd daemon, then meshd up with an auth key)"
declare -A TUN=([router]=$P-rt [alice]=$P-al [bob]=$P-bo)
declare -A HOST=([router]=router [alice]=alice-laptop [bob]=bob-laptop)
sock() { echo "$DIR/$1.sock"; }
cli() { local n=$1; shift; nsrun "$n" "$MESHD" "$@" --socket "$(sock "$n")"; }

start_node() { # NAME
  mkdir -m 0700 "$DIR/$1"
  bg "$1" "$1" "$MESHD" daemon --tun "${TUN[$1]}" --state-dir "$DIR/$1" --socket "$(sock "$1")"
  local pid=$LAST_PID
  wait_until 20 "$1's daemon" bash -c "[[ -S '$(sock "$1")' ]] && grep -q 'waiting for commands' '$LOGS/$1.log'" || die "$1's daemon did not start"
  alive "$pid" || die "$1's daemon exited"
}

join() { # NAME DESCRIPTION KEYFLAGS -- UPFLAGS
  local name=$1 what=$2
  shift 2
  local keyflags=() upflags=()
  while (($#)) && [[ $1 != -- ]]; do keyflags+=("$1"); shift; done
  shift
  upflags=("$@")
  admin keys create --preauthorized "${keyflags[@]}" --json | json_field key >"$DIR/keys/$name.key" || die "could not create $name's auth key"
  chmod 0600 "$DIR/keys/$name.key"
  start_node "$name"
  echo "  $what:"
  echo "  \$ meshd up --login-server URL --authkey file:$name.key --hostname ${HOST[$name]} ${upflags[*]}"
  local out
  out=$(cli "$name" up --login-server "$LOGIN_URL" --authkey "file:$DIR/keys/$name.key" --hostname "${HOST[$name]}" "${upflags[@]}" --timeout 30 2>&1) || { indent <<<"$out"; die "meshd up on $name failed"; }
  indent <<<"$out"
}

join router "the subnet router (key tagged tag:router)" --tags tag:router -- --advertise-routes 10.0.0.0/16
join alice "alice's laptop (key for user alice)" --user alice -- --accept-routes
join bob "bob's laptop (key for user bob)" --user bob -- --accept-routes

# ---------------------------------------------------------------------------
# 4. Route approval

echo
echo "== 5. The router's route does nothing until an admin approves it"
route_state() { admin routes list --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const r=JSON.parse(s).routes.find(x=>x.prefix==="10.0.0.0/16");console.log(r?r.state:"none")})'; }
route_is() { [[ $(route_state) == "$1" ]]; }
if wait_until 10 "the advertised route to reach the server" route_is pending; then expect ok; else expect fail "10.0.0.0/16 is listed as pending before approval"; fi
echo "  \$ meshd admin routes list"
admin routes list 2>&1 | indent || true
echo "  \$ meshd admin routes approve 10.0.0.0/16"
admin routes approve 10.0.0.0/16 2>&1 | indent || true
if route_is primary; then expect ok; else expect fail "10.0.0.0/16 is primary after approval"; fi
echo "  \$ meshd admin routes list"
admin routes list 2>&1 | indent || true
has_route() { [[ -n $(nsrun alice ip -4 route show 10.0.0.0/16 dev "${TUN[alice]}") ]]; }
if wait_until 10 "alice's laptop to get the route" has_route; then
  echo "    alice's laptop now routes 10.0.0.0/16 into ${TUN[alice]}"
  expect ok
else
  expect fail "alice's laptop routes 10.0.0.0/16 into its TUN"
fi

# ---------------------------------------------------------------------------
# 5. What it shows

sees() { cli "$1" status --json | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{const p=JSON.parse(s).peers.map(x=>x.name).sort().join(",");process.exit(p===process.argv[1]?0:1)})' "$2"; }

echo
echo "== 6. meshd status, on alice's laptop"
if wait_until 10 "alice to see the router and bob" sees alice bob-laptop,router; then expect ok; else expect fail "alice's laptop sees exactly the router and bob"; fi
echo "  \$ meshd status"
cli alice status 2>&1 | indent || true
echo "    (bob's laptop sees only alice: the policy gives bob nothing behind the router)"
if sees bob alice-laptop; then expect ok; else expect fail "bob's laptop sees only alice"; fi

echo
echo "== 7. meshd ping router, from alice's laptop (through the tunnel; the policy allows ICMP)"
echo "  \$ meshd ping router"
if out=$(cli alice ping router --count 10 --timeout 1 2>&1); then expect ok; else expect fail "meshd ping router answers"; fi
indent <<<"$out"

echo
echo "== 8. alice fetches http://10.0.1.10/ through the subnet router"
cat >"$DIR/fetch.py" <<'EOF'
import sys, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never a proxy from the environment
try:
    with opener.open(sys.argv[1], timeout=float(sys.argv[2])) as r:
        print("HTTP %d: %s" % (r.status, r.read().decode().strip()))
except Exception as e:
    print("failed: %s" % getattr(e, "reason", e))
    sys.exit(1)
EOF
cat >"$DIR/connect.py" <<'EOF'
import socket, sys
host, port, t = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
try:
    c = socket.create_connection((host, port), timeout=t)
except socket.timeout:
    print("no answer within %g s" % t)
    sys.exit(1)
except OSError as e:
    print(e.strerror or e)
    sys.exit(1)
c.settimeout(1)
try:
    banner = c.recv(100).decode(errors="replace").strip()
except OSError:
    banner = ""
print("connected" + (": " + banner if banner else ""))
EOF
fetch() { nsrun alice python3 "$DIR/fetch.py" http://10.0.1.10/ 2 >"$DIR/fetch.out" 2>&1; }
echo "  \$ python3 fetch.py http://10.0.1.10/    (urllib, like curl)"
if wait_until 15 "the web server to answer alice" fetch && grep -q '^HTTP 200: hello from the VPC web server' "$DIR/fetch.out"; then
  expect ok
  indent <"$DIR/fetch.out"
  echo "    (10.0.1.1 is the router's VPC address: it masquerades mesh traffic into the VPC)"
else
  indent <"$DIR/fetch.out"
  expect fail "alice fetches http://10.0.1.10/"
fi

echo
echo "== 9. What the policy refuses"
# refused WHO PORT LABEL: expects the connection to fail.
refused() {
  local who=$1 port=$2 label=$3 out
  if out=$(nsrun "$who" python3 "$DIR/connect.py" 10.0.1.10 "$port" 3 2>&1); then
    printf '  %-32s CONNECTED, not refused   [%s]\n' "$label:" "$out"
    expect fail "$label is refused"
  else
    printf '  %-32s refused by policy (as intended)   [%s]\n' "$label:" "$out"
    expect ok
  fi
}
if out=$(nsrun vpc python3 "$DIR/connect.py" 10.0.1.10 5432 2 2>&1); then
  echo "    (the db is up: inside the VPC, 10.0.1.10:5432 answers \"${out#connected: }\")"
  expect ok
else
  expect fail "the db answers inside the VPC ($out)"
fi
refused alice 5432 "alice -> 10.0.1.10:5432 (db)"
refused bob 80 "bob   -> 10.0.1.10:80 (web)"
drops=$(cli router status --json | json_field drops.filtered) || drops=0
echo "    the router's packet filter has dropped ${drops:-0} packet(s) (meshd status --json: drops.filtered)"
if ((${drops:-0} > 0)); then expect ok; else expect fail "the router counted the packets it refused"; fi
if [[ -z $(nsrun bob ip -4 route show 10.0.0.0/16) ]]; then
  echo "    bob's laptop has no route to 10.0.0.0/16 at all: it was never told about the router"
  expect ok
else
  expect fail "bob's laptop has no route to 10.0.0.0/16"
fi

# ---------------------------------------------------------------------------
# Summary, then --check ends here; otherwise wait for Ctrl-C.

took=$((($(now_ms) - STARTED_MS) / 1000))
echo
if ((${#FAILED[@]})); then
  echo "== ${#FAILED[@]} result(s) NOT as expected (${PASSED} as expected, ${took} s):"
  printf '    %s\n' "${FAILED[@]}"
  echo "   logs: $LOGS"
  if [[ $MODE == check ]]; then
    for f in "$LOGS"/*.log; do echo "----- last lines of $(basename "$f")"; tail -n 20 "$f"; done
    exit 1
  fi
else
  echo "== all ${PASSED} results as expected (${took} s)"
fi
[[ $MODE == check ]] && exit 0

x="sudo ip netns exec"
cat <<EOF

== The demo is running. Poke at it:
    $x $P-alice $MESHD status --socket $(sock alice)
    $x $P-alice $MESHD ping bob-laptop --socket $(sock alice)
    $x $P-alice python3 $DIR/fetch.py http://10.0.1.10/ 2
    $x $P-bob   python3 $DIR/connect.py 10.0.1.10 80 3
    $x $P-router wg show ${TUN[router]}
    $x $P-router nft list table inet meshd
    $x $P-server $MESHD admin --server http://$SERVER_ADDR --token-file $DIR/server/admin.token nodes list
    $x $P-server $MESHD admin --server http://$SERVER_ADDR --token-file $DIR/server/admin.token policy get
    logs: $LOGS/
   Ctrl-C here (or: sudo bash scripts/demo.sh --down) removes it all.
EOF
while [[ -e /run/netns/$P-net ]]; do
  sleep 1 &
  wait $! || true
done
echo "the demo's namespaces were removed from outside (--down?)"
