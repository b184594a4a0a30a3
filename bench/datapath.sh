#!/usr/bin/env bash
# Datapath benchmark (issues 4 and 7). One run, one topology: two network
# namespaces joined by one veth (offloads as the kernel defaults them), both
# tunnel ends and iperf3 on this machine, tunnel MTU 1420 for every
# implementation. The set-ups are alternated within every round, the order
# rotating by one each round, so the machine's noise falls on all of them.
#
# Per set-up and round: iperf3 TCP, 1 stream and 4 streams, each direction
# (client in the sending namespace); iperf3 UDP with 1392-byte payloads, each
# direction, unlimited rate (-b 0): packets/s received and loss; ping RTT
# (20 pings at 50 ms, median); CPU seconds of the two daemons per Gbit
# received (utime+stime around each TCP run); their idle RSS; TCP retransmits.
# Prints one line per set-up per round, then a Markdown table of the medians,
# each figure also as a ratio to wireguard-go <-> wireguard-go of this run.
#
# Usage (root, after npm run build):
#   bash bench/datapath.sh [--rounds N] [--secs S] [--setups "LIST"] [--quick] [--keep]
#   ROUNDS=3 SECS=5 SETUPS="veth wggo meshd-js" bash bench/datapath.sh
#   bash bench/datapath.sh 3 5          # old form: ROUNDS SECS
# Set-ups (space- or comma-separated): veth | IMPL | IMPL/IMPL, where IMPL is
# wggo, meshd-js or meshd-native and the left one runs in namespace A
# (A->B columns: left sends). Default:
#   veth wggo meshd-js meshd-native meshd-native/wggo
# --quick = 1 round of 2 s. --keep keeps the temp dir (daemon logs, iperf3 JSON).
# Flags win over the environment (ROUNDS, SECS, SETUPS, KEEP).
# Needs iproute2, wireguard-tools, wireguard-go, iperf3, jq.
set -uo pipefail

CMDLINE="bash $0"; (($#)) && CMDLINE+=$(printf ' %q' "$@")
for v in KEEP SECS ROUNDS SETUPS; do [[ -n ${!v:-} ]] && CMDLINE="$v=$(printf '%q' "${!v}") $CMDLINE"; done
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-5}
SETUPS=${SETUPS:-"veth wggo meshd-js meshd-native meshd-native/wggo"}
KEEP=${KEEP:-0}
usage() { sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
POS=()
while (($#)); do
  case $1 in
    --rounds) ROUNDS=$2; shift ;;
    --secs) SECS=$2; shift ;;
    --setups) SETUPS=$2; shift ;;
    --quick) ROUNDS=1; SECS=2 ;;
    --keep) KEEP=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "unknown option $1" >&2; usage >&2; exit 2 ;;
    *) POS+=("$1") ;;
  esac
  shift
done
((${#POS[@]} > 0)) && ROUNDS=${POS[0]}
((${#POS[@]} > 1)) && SECS=${POS[1]}
[[ $ROUNDS =~ ^[1-9][0-9]*$ && $SECS =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS and SECS must be positive integers" >&2; exit 2; }
((EUID == 0)) || { echo "run as root (network namespaces)" >&2; exit 2; }
for c in ip wg wireguard-go iperf3 jq ping timeout ss awk; do
  command -v $c >/dev/null || { echo "missing $c (apt-get install -y --no-install-recommends iproute2 wireguard-tools wireguard-go iperf3 jq)" >&2; exit 2; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
MESHD="$ROOT/bin/meshd"
# `meshd daemon --datapath js|native` is passed only if the option exists
# (checked again before each meshd set-up, in case meshd is rebuilt mid-run;
# without it meshd runs its default datapath and meshd-native fails).
has_datapath() { HAS_DATAPATH=0; "$MESHD" daemon --help 2>/dev/null | grep -q -- '--datapath' && HAS_DATAPATH=1; }
has_datapath

# Normalize the set-up list: IMPL -> IMPL/IMPL, wggo/wggo -> wggo.
LIST=()
for s in ${SETUPS//,/ }; do
  case $s in veth) LIST+=(veth); continue ;; esac
  [[ $s == */* ]] || s="$s/$s"
  a=${s%/*}; b=${s#*/}
  for i in "$a" "$b"; do
    [[ $i =~ ^(wggo|meshd-js|meshd-native)$ ]] || { echo "unknown implementation '$i' in set-up '$s' (veth, wggo, meshd-js, meshd-native, or IMPL/IMPL)" >&2; exit 2; }
  done
  [[ $a == "$b" ]] && s=$a
  LIST+=("$s")
done
((${#LIST[@]})) || { echo "no set-ups" >&2; exit 2; }

ID=$$
NSA=dpA$ID; NSB=dpB$ID; VA=dvA$ID; VB=dvB$ID
UA=192.168.200.1; UB=192.168.200.2   # underlay (veth), inside the namespaces only
TA=10.200.0.1; TB=10.200.0.2         # tunnel
MTU=1420
PORT=51820; IPORT=5201
TMP=$(mktemp -d /tmp/datapath.$ID.XXXX)
RES=$TMP/results.tsv; : > "$RES"     # setup \t round \t key \t value
declare -A LIVE=()                   # background processes we started and have not reaped
IFS_USED=()                          # tunnel interface names (UAPI sockets)
N=0                                  # set-up instance counter (unique interface names)
TICK=$(getconf CLK_TCK)

cleanup() {
  trap - EXIT INT TERM
  local p
  for p in "${!LIVE[@]}"; do kill "$p" 2>/dev/null; done
  for p in "${!LIVE[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$p" 2>/dev/null; wait "$p" 2>/dev/null
  done
  ip netns del $NSA 2>/dev/null; ip netns del $NSB 2>/dev/null
  for p in "${IFS_USED[@]:-}"; do [[ -n $p ]] && rm -f "/var/run/wireguard/$p.sock"; done
  if [[ $KEEP == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT TERM

ip netns add $NSA && ip netns add $NSB || exit 1
ip link add $VA netns $NSA type veth peer name $VB netns $NSB || exit 1
ip -n $NSA addr add $UA/24 dev $VA; ip -n $NSB addr add $UB/24 dev $VB
for ns in $NSA $NSB; do ip -n $ns link set lo up; done
ip -n $NSA link set $VA up; ip -n $NSB link set $VB up

umask 077
wg genkey > "$TMP/ka"; wg genkey > "$TMP/kb"
PUBA=$(wg pubkey < "$TMP/ka"); PUBB=$(wg pubkey < "$TMP/kb")

# ---------------------------------------------------------------- helpers
ticks() { # utime+stime of a process (all threads), clock ticks
  [[ -r /proc/$1/stat ]] || { echo 0; return; }
  sed 's/^.*) //' /proc/$1/stat | awk '{print $12 + $13}'
}
rss_mib() { # VmRSS|VmHWM pid -> MiB
  awk -v k="$1:" '$1 == k {printf "%.1f", $2 / 1024; f = 1} END {if (!f) print "NA"}' /proc/$2/status 2>/dev/null || echo NA
}
put() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$RES"; }
alive() { kill -0 "$1" 2>/dev/null; }
logtail() { # file...
  local f
  for f in "$@"; do [[ -s $f ]] && { echo "    --- tail of $(basename "$f")"; tail -n 8 "$f" | sed 's/^/    | /'; }; done
}

start_daemon() { # impl ns ifname keyfile peerpub myip peerip peerunderlay -> sets DPID
  local impl=$1 ns=$2 ifn=$3 key=$4 peer=$5 me=$6 them=$7 under=$8
  local log=$TMP/$ifn.log
  IFS_USED+=("$ifn")
  DPID=
  case $impl in
    meshd-js|meshd-native)
      cat > "$TMP/$ifn.conf" <<EOC
[Interface]
PrivateKey = $(cat "$key")
ListenPort = $PORT
Address = $me/24
MTU = $MTU
[Peer]
PublicKey = $peer
AllowedIPs = $them/32
Endpoint = $under:$PORT
EOC
      local dp=()
      if [[ $impl == meshd-native ]]; then dp=(--datapath native)   # fails (and is reported) without the option
      elif ((HAS_DATAPATH)); then dp=(--datapath js); fi
      echo "+ meshd daemon --tun $ifn --config $ifn.conf ${dp[*]} --log-level warn" > "$log"
      ip netns exec $ns "$MESHD" daemon --tun $ifn --config "$TMP/$ifn.conf" "${dp[@]}" --log-level warn >> "$log" 2>&1 &
      DPID=$!; LIVE[$DPID]=1
      ;;
    wggo)
      ip netns exec $ns env WG_PROCESS_FOREGROUND=1 wireguard-go $ifn > "$log" 2>&1 &
      DPID=$!; LIVE[$DPID]=1
      local i
      for i in $(seq 50); do [[ -S /var/run/wireguard/$ifn.sock ]] && break; alive $DPID || break; sleep 0.1; done
      [[ -S /var/run/wireguard/$ifn.sock ]] || { echo "no UAPI socket" >> "$log"; return 1; }
      { ip netns exec $ns wg set $ifn private-key "$key" listen-port $PORT peer "$peer" allowed-ips $them/32 endpoint $under:$PORT &&
        ip -n $ns addr add $me/24 dev $ifn && ip -n $ns link set $ifn mtu $MTU up; } >> "$log" 2>&1 || return 1
      ;;
  esac
}

wait_if() { # ns ifname pid: link up with an address and MTU 1420, bounded 10 s
  local i
  for i in $(seq 100); do
    alive $3 || { echo "daemon exited" >> "$TMP/$2.log"; return 1; }
    if ip -n $1 -o addr show dev $2 2>/dev/null | grep -q 'inet ' && ip -n $1 link show $2 2>/dev/null | grep -q 'state UP\|,UP'; then
      local m; m=$(ip -n $1 -o link show $2 | sed -n 's/.* mtu \([0-9]*\).*/\1/p')
      [[ $m == "$MTU" ]] || echo "warning: $2 has mtu $m, not $MTU" | tee -a "$TMP/$2.log" >&2
      return 0
    fi
    sleep 0.1
  done
  echo "interface $2 not up after 10 s" >> "$TMP/$2.log"; return 1
}

wait_ping() { # ns dst log: one reply within 15 tries of 1 s
  local i
  for i in $(seq 15); do ip netns exec $1 ping -n -c 1 -W 1 $2 > /dev/null 2>&1 && return 0; done
  echo "no ping reply from $2 within 15 s" >> "$3"; return 1
}

stop_daemons() { # pid...
  local p
  for p in "$@"; do [[ -n $p ]] && kill "$p" 2>/dev/null; done
  for p in "$@"; do
    [[ -n $p ]] || continue
    for _ in $(seq 25); do alive $p || break; sleep 0.2; done
    alive $p && { echo "  (pid $p did not exit on TERM; killed)"; kill -9 $p 2>/dev/null; }
    wait $p 2>/dev/null; unset "LIVE[$p]"
  done
}

# iperf3: server (one test) in one namespace, client in the other; JSON to a file.
iperf() { # out.json server-ns client-ns server-ip client-args...
  local out=$1 sns=$2 cns=$3 sip=$4; shift 4
  local lim=$((SECS + 20))
  ip netns exec $sns timeout -k 2 $lim iperf3 -s -1 -p $IPORT -J > "$out.server" 2>&1 &
  local sp=$!; LIVE[$sp]=1
  local i
  for i in $(seq 30); do ip netns exec $sns ss -Hltn "sport = :$IPORT" 2>/dev/null | grep -q . && break; sleep 0.1; done
  # In the background + wait, so that a trapped ctrl-c interrupts at once.
  ip netns exec $cns timeout -k 2 $lim iperf3 -c $sip -p $IPORT --connect-timeout 3000 -t $SECS -J "$@" > "$out" 2> "$out.err" &
  local cp=$!; LIVE[$cp]=1
  wait $cp; local rc=$?; unset "LIVE[$cp]"
  for i in $(seq 20); do alive $sp || break; sleep 0.1; done
  kill $sp 2>/dev/null; wait $sp 2>/dev/null; unset "LIVE[$sp]"
  return $rc
}

tcp_test() { # setup round key server-ns client-ns server-ip pidA pidB [-P 4] -> puts key, retr_key, gbit_key, ticks_key
  local s=$1 r=$2 k=$3 sns=$4 cns=$5 sip=$6 pa=$7 pb=$8; shift 8
  local f=$TMP/$k.r$r.$N.json c0=0 c1=0
  [[ $pa != - ]] && c0=$(( $(ticks $pa) + $(ticks $pb) ))
  iperf "$f" $sns $cns $sip "$@"
  [[ $pa != - ]] && c1=$(( $(ticks $pa) + $(ticks $pb) ))
  local bps retr bytes
  read -r bps retr bytes < <(jq -r '[(.end.sum_received.bits_per_second // "NA"), (.end.sum_sent.retransmits // "NA"), (.end.sum_received.bytes // "NA")] | @tsv' "$f" 2>/dev/null)
  if [[ -z ${bps:-} || $bps == NA ]]; then
    echo "  $s: iperf3 TCP $k failed: $(jq -r '.error // empty' "$f" 2>/dev/null)$(tail -n 2 "$f.err" 2>/dev/null)"
    return 1
  fi
  put "$s" $r $k "$bps"; put "$s" $r retr_$k "$retr"; put "$s" $r bytes_$k "$bytes"; put "$s" $r ticks_$k $((c1 - c0))
}

udp_test() { # setup round key server-ns client-ns server-ip
  local s=$1 r=$2 k=$3 f=$TMP/$3.r$2.$N.json
  iperf "$f" $4 $5 $6 -u -l 1392 -b 0
  local pps loss
  # The receiver's view (the server's JSON): datagrams up to the highest sequence
  # number seen, of which lost_packets never arrived.
  read -r pps loss < <(jq -r '.end.sum | if .packets then [((.packets - .lost_packets) / .seconds), .lost_percent] else ["NA","NA"] end | @tsv' "$f.server" 2>/dev/null)
  if [[ -z ${pps:-} || $pps == NA ]]; then
    echo "  $s: iperf3 UDP $k failed: $(jq -r '.error // empty' "$f" 2>/dev/null)$(tail -n 2 "$f.err" 2>/dev/null)"
    return 1
  fi
  put "$s" $r $k "$pps"; put "$s" $r loss_$k "$loss"
}

ping_rtt() { # setup round ns dst: 20 pings at 50 ms -> median and mean rtt (ms)
  local out med avg
  out=$(ip netns exec $3 timeout 10 ping -n -c 20 -i 0.05 -W 1 $4 2>/dev/null | sed -n 's/.* time=\([0-9.]*\) ms/\1/p')
  [[ -n $out ]] || { echo "  $1: ping failed"; return 1; }
  med=$(sort -g <<< "$out" | awk '{a[NR] = $1} END {print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2)}')
  avg=$(awk '{s += $1} END {printf "%.3f", s / NR}' <<< "$out")
  put "$1" $2 rtt "$med"; put "$1" $2 rtt_avg "$avg"
}

get() { awk -F'\t' -v s="$1" -v r="$2" -v k="$3" '$1 == s && $2 == r && $3 == k {print $4; f = 1} END {if (!f) print "NA"}' "$RES"; }

label() {
  case $1 in
    veth) echo "plain veth" ;;
    */*) echo "$(impl_name ${1%/*}) ↔ $(impl_name ${1#*/})" ;;
    *) echo "$(impl_name $1) ↔ $(impl_name $1)" ;;
  esac
}
impl_name() { [[ $1 == wggo ]] && echo wireguard-go || echo "$1"; }

measure() { # setup round
  local s=$1 r=$2 ia ib pa=- pb=- ipA=$TA ipB=$TB ifa ifb
  N=$((N + 1))
  if [[ $s == veth ]]; then
    ipA=$UA; ipB=$UB
  else
    if [[ $s == */* ]]; then ia=${s%/*}; ib=${s#*/}; else ia=$s; ib=$s; fi
    ifa=tA${ID}n$N; ifb=tB${ID}n$N
    [[ $s == *meshd* ]] && has_datapath
    local ok=1
    start_daemon $ia $NSA $ifa "$TMP/ka" "$PUBB" $TA $TB $UB && pa=$DPID || { pa=${DPID:--}; ok=0; }
    if ((ok)); then start_daemon $ib $NSB $ifb "$TMP/kb" "$PUBA" $TB $TA $UA && pb=$DPID || { pb=${DPID:--}; ok=0; }; fi
    ((ok)) && wait_if $NSA $ifa $pa && wait_if $NSB $ifb $pb && wait_ping $NSA $TB "$TMP/$ifa.log" || ok=0
    if ((!ok)); then
      printf 'r%-2s %-30s FAILED: tunnel did not come up\n' $r "$(label $s)"
      logtail "$TMP/$ifa.log" "$TMP/${ifb:-none}.log"
      put "$s" $r ok 0
      stop_daemons ${pa/-/} ${pb/-/}
      return
    fi
    sleep 1   # let it settle after the handshake
    put "$s" $r rss_a "$(rss_mib VmRSS $pa)"; put "$s" $r rss_b "$(rss_mib VmRSS $pb)"
  fi
  ping_rtt "$s" $r $NSA $ipB
  tcp_test "$s" $r tcp1_ab $NSB $NSA $ipB $pa $pb
  tcp_test "$s" $r tcp1_ba $NSA $NSB $ipA $pa $pb
  tcp_test "$s" $r tcp4_ab $NSB $NSA $ipB $pa $pb -P 4
  tcp_test "$s" $r tcp4_ba $NSA $NSB $ipA $pa $pb -P 4
  udp_test "$s" $r udp_ab $NSB $NSA $ipB
  udp_test "$s" $r udp_ba $NSA $NSB $ipA
  local died=0
  if [[ $pa != - ]]; then
    put "$s" $r hwm_a "$(rss_mib VmHWM $pa)"; put "$s" $r hwm_b "$(rss_mib VmHWM $pb)"
    alive $pa && alive $pb || died=1
    stop_daemons $pa $pb
  fi
  if ((died)); then
    printf 'r%-2s %-30s FAILED: a daemon exited during the measurements\n' $r "$(label $s)"
    logtail "$TMP/$ifa.log" "$TMP/$ifb.log"
    put "$s" $r ok 0
    return
  fi
  put "$s" $r ok 1
  # CPU s/Gbit over both directions of each stream count (ticks / Gbit received).
  local k
  for k in 1 4; do
    if [[ $pa != - ]]; then
      put "$s" $r cpu$k "$(awk -v a="$(get "$s" $r ticks_tcp${k}_ab)" -v b="$(get "$s" $r ticks_tcp${k}_ba)" \
        -v x="$(get "$s" $r bytes_tcp${k}_ab)" -v y="$(get "$s" $r bytes_tcp${k}_ba)" -v t=$TICK \
        'BEGIN {g = (x + y) * 8 / 1e9; if (a == "NA" || b == "NA" || x == "NA" || y == "NA" || g <= 0) print "NA"; else printf "%.3f", (a + b) / t / g}')"
    fi
  done
  awk -F'\t' -v s="$s" -v r=$r -v l="$(label $s)" '
    $1 == s && $2 == r {v[$3] = $4}
    function g(k) { return (k in v && v[k] != "NA") ? sprintf("%.3f", v[k] / 1e9) : "NA" }
    function n(k, f) { return (k in v && v[k] != "NA") ? sprintf(f, v[k]) : "NA" }
    END {
      printf "r%-2s %-30s tcp1 %s/%s tcp4 %s/%s Gbit/s  retr %s/%s/%s/%s  udp %s/%s kpps loss %s/%s %%  rtt %s ms  cpu %s/%s s/Gbit  rss %s/%s MiB (peak %s/%s)\n", r, l,
        g("tcp1_ab"), g("tcp1_ba"), g("tcp4_ab"), g("tcp4_ba"),
        n("retr_tcp1_ab", "%d"), n("retr_tcp1_ba", "%d"), n("retr_tcp4_ab", "%d"), n("retr_tcp4_ba", "%d"),
        n("udp_ab", "%.1f") == "NA" ? "NA" : sprintf("%.1f", v["udp_ab"] / 1000), n("udp_ba", "%.1f") == "NA" ? "NA" : sprintf("%.1f", v["udp_ba"] / 1000),
        n("loss_udp_ab", "%.1f"), n("loss_udp_ba", "%.1f"), n("rtt", "%.3f"),
        n("cpu1", "%.2f"), n("cpu4", "%.2f"), n("rss_a", "%.1f"), n("rss_b", "%.1f"), n("hwm_a", "%.1f"), n("hwm_b", "%.1f")
    }' "$RES"
}

# ---------------------------------------------------------------- run
CPU=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n1)
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD -- src native 2>/dev/null || echo "+dirty")
ADDON=no; [[ -f $ROOT/native/build/Release/meshd_native.node ]] && ADDON=yes
HEADER="$(date -u '+%F %T UTC') · Linux $(uname -r) · ${CPU:-unknown CPU} · nproc $(nproc) · wireguard-go $(dpkg-query -W -f='${Version}' wireguard-go 2>/dev/null) (Debian) · node $(node --version) · $(iperf3 --version | head -n1 | cut -d' ' -f1,2) · meshd $COMMIT, addon built: $ADDON, meshd --datapath option: $( ((HAS_DATAPATH)) && echo yes || echo no)"
echo "# datapath: $HEADER"
echo "# command: $CMDLINE"
echo "# $ROUNDS round(s), ${SECS} s per iperf3 test, set-ups: ${LIST[*]}; MTU $MTU; UDP -l 1392 -b 0"
echo "# per round: tcp1/tcp4 = TCP 1/4 streams A->B/B->A; retr = retransmits tcp1 A->B/B->A, tcp4 A->B/B->A; udp = kpps received A->B/B->A; cpu = both daemons' CPU s per Gbit, 1/4 streams"
T0=$SECONDS
n=${#LIST[@]}
for r in $(seq 1 $ROUNDS); do
  echo "## round $r/$ROUNDS"
  for i in $(seq 0 $((n - 1))); do
    measure "${LIST[$(( (i + r - 1) % n ))]}" $r
  done
done
echo "# measured in $((SECONDS - T0)) s"

# ---------------------------------------------------------------- medians
med() { # setup key -> median over rounds where the set-up came up, or NA
  awk -F'\t' -v s="$1" -v k="$2" '
    $1 == s && $3 == "ok" {ok[$2] = $4}
    $1 == s && $3 == k && $4 != "NA" {v[$2] = $4}
    END {
      n = 0; for (r in v) if (ok[r] == 1) a[++n] = v[r] + 0
      if (!n) { print "NA"; exit }
      for (i = 2; i <= n; i++) { x = a[i]; for (j = i - 1; j >= 1 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x }
      print (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2)
    }' "$RES"
}
cell() { # value base scale fmt unit -> "X unit (R.RRx)"
  awk -v v="$1" -v b="$2" -v s="$3" -v f="$4" -v u="$5" 'BEGIN {
    if (v == "NA") { print "failed"; exit }
    out = sprintf(f, v / s) u
    if (b != "NA" && b + 0 != 0) out = out sprintf(" (%.2fx)", v / b)
    print out }'
}
BASE=wggo
HAVE_BASE=0; for s in "${LIST[@]}"; do [[ $s == "$BASE" ]] && HAVE_BASE=1; done
bm() { if ((HAVE_BASE)); then med $BASE "$1"; else echo NA; fi; }
declare -A B
for k in tcp1_ab tcp1_ba tcp4_ab tcp4_ba udp_ab udp_ba rtt cpu1 cpu4 rss_a rss_b; do B[$k]=$(bm $k); done
B[rss]=$(awk -v a="${B[rss_a]}" -v b="${B[rss_b]}" 'BEGIN {print (a == "NA" || b == "NA") ? "NA" : a + b}')

echo
echo "## medians of $ROUNDS round(s), ratio to wireguard-go ↔ wireguard-go$( ((HAVE_BASE)) || echo ' (not measured: no ratios)')"
echo
echo "$HEADER · \`$CMDLINE\`"
echo
echo "| link | TCP 1 stream A→B | TCP 1 stream B→A | TCP 4 streams A→B | TCP 4 streams B→A | UDP A→B received, loss | UDP B→A received, loss | ping RTT (median) | CPU s/Gbit, both daemons, 1 / 4 streams | idle RSS A / B | TCP retransmits 1 stream A→B, B→A / 4 streams A→B, B→A | rounds up |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for s in "${LIST[@]}"; do
  up=$(awk -F'\t' -v s="$s" '$1 == s && $3 == "ok" {n++; u += $4} END {printf "%d/%d", u, n}' "$RES")
  if [[ $up == 0/* ]]; then
    echo "| $(label $s) $(printf '| failed %.0s' $(seq 10))| $up |"
    continue
  fi
  row="| $(label $s) "
  for k in tcp1_ab tcp1_ba tcp4_ab tcp4_ba; do row+="| $(cell "$(med $s $k)" "${B[$k]}" 1e9 %.3f ' Gbit/s') "; done
  for k in udp_ab udp_ba; do
    l=$(med $s loss_$k)
    row+="| $(cell "$(med $s $k)" "${B[$k]}" 1000 %.1f ' kpps')$([[ $l != NA ]] && printf ', %.1f %% lost' "$l") "
  done
  row+="| $(cell "$(med $s rtt)" "${B[rtt]}" 1 %.3f ' ms') "
  if [[ $s == veth ]]; then
    row+="| – | – "
  else
    row+="| $(cell "$(med $s cpu1)" "${B[cpu1]}" 1 %.2f '') / $(cell "$(med $s cpu4)" "${B[cpu4]}" 1 %.2f '') "
    ra=$(med $s rss_a); rb=$(med $s rss_b)
    rs=$(awk -v a="$ra" -v b="$rb" 'BEGIN {print (a == "NA" || b == "NA") ? "NA" : a + b}')
    row+="| $(awk -v a="$ra" -v b="$rb" 'BEGIN {if (a == "NA" || b == "NA") print "failed"; else printf "%.1f / %.1f MiB", a, b}')$(awk -v v="$rs" -v b="${B[rss]}" 'BEGIN {if (v != "NA" && b != "NA" && b + 0 != 0) printf " (%.2fx)", v / b}') "
  fi
  rt=""; for k in tcp1_ab tcp1_ba tcp4_ab tcp4_ba; do v=$(med $s retr_$k); rt+="$([[ $v == NA ]] && echo NA || printf '%.0f' "$v")"; case $k in tcp1_ab|tcp4_ab) rt+=", " ;; tcp1_ba) rt+=" / " ;; esac; done
  row+="| $rt "
  row+="| $up |"
  echo "$row"
done
echo
echo "A is the left-hand implementation (its namespace runs the A→B iperf3 client). UDP: iperf3 -u -l 1392 -b 0, packets/s the receiver got; ratios in parentheses are to wireguard-go ↔ wireguard-go of this run (for RSS: the sum of both daemons). CPU: utime+stime of both daemons during the TCP runs of both directions, per Gbit received. Medians over the rounds in which the set-up came up."
