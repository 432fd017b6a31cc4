#!/usr/bin/env bash
# TokenHub load bench: nginx as a mock OpenAI upstream, TokenHub in front of it, wrk and
# an aiohttp client as load. Everything listens on 127.0.0.1 and lives in a temp dir.
# TokenHub is measured in three configurations, each a fresh process with its own data
# dir: full (client key + limits + recording), noauth (TOKENHUB_CLIENT_AUTH=false) and
# norec (TOKENHUB_RECORDING=false); BENCH_ROUNDS rounds, the second in reverse order.
#
# Options (environment):
#   BENCH_DURATION=10s       length of each wrk run (a run is about 17 x this + 50 s)
#   BENCH_ROUNDS=2           times each configuration is measured
#   BENCH_CONFIGS="full noauth norec"   which configurations, in round-1 order
#   BENCH_SKIP_INSTALL=1     never apt-get install nginx-light / wrk
#   BENCH_DIRECT_ONLY=1      measure nginx alone (no TokenHub)
#   BENCH_PAIRED_ROUNDS=16   rounds of the paired throughput comparison (0 skips it)
#   BENCH_PAIRED_DURATION=5s length of each burst in a paired round
#   BENCH_TTFT_N=200         sequential streams for time to first content (full config)
#   BENCH_UPDATE_README=1    also write the tables into bench/README.md
#   BENCH_KEEP=1             keep the temp dir (configs, logs, raw results)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH="$ROOT/bench"
PY=${BENCH_PYTHON:-$ROOT/.venv/bin/python}
TOKENHUB=${BENCH_TOKENHUB:-$ROOT/.venv/bin/tokenhub}
DURATION=${BENCH_DURATION:-10s}
TTFT_N=${BENCH_TTFT_N:-200}
ROUNDS=${BENCH_ROUNDS:-2}
PAIRED_ROUNDS=${BENCH_PAIRED_ROUNDS:-16}
PAIRED_DURATION=${BENCH_PAIRED_DURATION:-5s}
read -r -a CONFIGS <<<"${BENCH_CONFIGS:-full noauth norec}"
# post.lua reads the client key from here; set per TokenHub process.
export BENCH_API_KEY=""

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tokenhub-bench.XXXXXX")
RESULTS="$WORK/results"
mkdir -p "$RESULTS"
NGINX_PID=""
TH_PID=""
PAIRED_PIDS=()

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench: FAILED: %s\n' "$*" >&2; exit 1; }

# stop_pid PID: TERM the process group PID leads (started with setsid), KILL after 5 s.
stop_pid() {
    local pid=$1 i
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 50); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$? pid
    stop_pid "$TH_PID"
    for pid in "${PAIRED_PIDS[@]}"; do stop_pid "$pid"; done
    stop_pid "$NGINX_PID"
    if [[ ${BENCH_KEEP:-0} != 0 ]]; then
        log "temp dir kept: $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

find_bin() {
    command -v "$1" 2>/dev/null && return
    [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1" && return
    return 0
}

# Install nginx-light and wrk when missing. A temporary policy-rc.d (the container
# convention) stops the package from starting the system nginx on 0.0.0.0:80: this rig
# only ever listens on loopback.
install_tools() {
    local sudo="" policy=/usr/sbin/policy-rc.d added=0 rc=0
    [[ $(id -u) == 0 ]] || sudo=sudo
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod 755 "$policy"
        added=1
    fi
    log "installing nginx-light and wrk"
    $sudo apt-get update -q || rc=$?
    if [[ $rc == 0 ]]; then
        $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light wrk || rc=$?
    fi
    [[ $added == 1 ]] && $sudo rm -f "$policy"
    return "$rc"
}

ensure_tools() {
    NGINX=$(find_bin nginx)
    WRK=$(find_bin wrk)
    if [[ -z $NGINX || -z $WRK ]]; then
        [[ ${BENCH_SKIP_INSTALL:-0} != 0 ]] && die "nginx or wrk missing and BENCH_SKIP_INSTALL is set"
        install_tools || die "apt-get install nginx-light wrk failed"
        NGINX=$(find_bin nginx)
        WRK=$(find_bin wrk)
    fi
    [[ -n $NGINX && -n $WRK ]] || die "nginx or wrk still missing after install"
    [[ -x $PY ]] || die "$PY not found: run 'make bench' (it creates .venv) or set BENCH_PYTHON"
}

free_port() { "$PY" "$BENCH/load.py" port; }

start_nginx() {
    local dir="$WORK/nginx" user=""
    NGINX_PORT=$(free_port)
    mkdir -p "$dir/tmp"
    # As root, nginx workers would switch to "nobody"; keep them as the current user.
    [[ $(id -u) == 0 ]] && user="user $(id -un) $(id -gn);"
    sed -e "s|@PREFIX@|$dir|g" -e "s|@PORT@|$NGINX_PORT|g" -e "s|@USER@|$user|" \
        "$BENCH/nginx/mock.conf.in" >"$dir/nginx.conf"
    "$NGINX" -t -q -p "$dir" -c "$dir/nginx.conf" -e stderr || die "nginx config test failed"
    setsid "$NGINX" -p "$dir" -c "$dir/nginx.conf" -e stderr 2>"$dir/stderr" &
    NGINX_PID=$!
    if ! "$PY" "$BENCH/load.py" wait "http://127.0.0.1:$NGINX_PORT/v1/models" \
        --timeout 10 --pid "$NGINX_PID"; then
        cat "$dir/stderr" >&2
        die "nginx did not answer on 127.0.0.1:$NGINX_PORT"
    fi
    log "nginx mock upstream on 127.0.0.1:$NGINX_PORT (pid $NGINX_PID)"
}

write_credentials() {
    local file=$1 up="http://127.0.0.1:$NGINX_PORT"
    (umask 077 && cat >"$file" <<EOF
{"providers": [
  {"id": "bench", "type": "openai", "base_url": "$up", "api_key": "sk-bench"},
  {"id": "bench-stream", "type": "openai", "base_url": "$up/stream", "api_key": "sk-bench"}],
 "models": [
  {"id": "bench-model", "provider_id": "bench", "weight": 5, "max_context_tokens": 32000,
   "input_per_1k": 0.001, "output_per_1k": 0.002},
  {"id": "bench-stream-model", "provider_id": "bench-stream", "upstream_id": "bench-model",
   "weight": 5, "max_context_tokens": 32000, "input_per_1k": 0.001, "output_per_1k": 0.002}]}
EOF
    )
    chmod 600 "$file"
}

# config_env CONFIG: the TOKENHUB_* settings that make CONFIG, one per line. Limits are
# raised far above what one core can serve so that the bucket is checked on every
# request but never refuses one.
config_env() {
    echo TOKENHUB_RATE_LIMIT_RPS=1000000
    echo TOKENHUB_RATE_LIMIT_BURST=1000000
    case $1 in
        full) ;;
        noauth) echo TOKENHUB_CLIENT_AUTH=false ;;
        norec) echo TOKENHUB_RECORDING=false ;;
        *) die "unknown configuration '$1' (full, noauth, norec)" ;;
    esac
}

# start_tokenhub CONFIG ROUND: a fresh TokenHub (new data dir, new admin token) in
# CONFIG, and a fresh client key for it in BENCH_API_KEY.
start_tokenhub() {
    local cfg=$1 round=$2 dir="$WORK/tokenhub-$1-$2" unset_args=() v cfg_env=()
    TH_PORT=$(free_port)
    mkdir -p "$dir/data"
    write_credentials "$dir/credentials"
    (umask 077 && od -An -tx1 -N16 /dev/urandom | tr -d ' \n' >"$dir/admin_token")
    mapfile -t cfg_env < <(config_env "$cfg")
    # The caller's own TOKENHUB_* settings must not leak into the measured process.
    for v in $(compgen -e | grep '^TOKENHUB_' || true); do unset_args+=(-u "$v"); done
    # Its own process group, so stopping it also stops anything it spawned.
    setsid env "${unset_args[@]}" \
        TOKENHUB_LISTEN_ADDR="127.0.0.1:$TH_PORT" \
        TOKENHUB_DATA_DIR="$dir/data" \
        TOKENHUB_CREDENTIALS_FILE="$dir/credentials" \
        TOKENHUB_ADMIN_TOKEN="$(cat "$dir/admin_token")" \
        TOKENHUB_LOG_LEVEL=warning \
        TOKENHUB_DEMO=false \
        "${cfg_env[@]}" \
        "$TOKENHUB" >"$dir/stdout" 2>"$dir/stderr" &
    TH_PID=$!
    if ! "$PY" "$BENCH/load.py" wait "http://127.0.0.1:$TH_PORT/healthz" --timeout 30 \
        --pid "$TH_PID"; then
        printf -- '--- TokenHub stderr ---\n' >&2
        cat "$dir/stderr" "$dir/stdout" >&2
        kill -0 "$TH_PID" 2>/dev/null || die "TokenHub exited before becoming healthy"
        die "TokenHub did not answer GET /healthz with 200 within 30 s"
    fi
    # Every configuration sends the same request bytes (the open guard ignores the key).
    BENCH_API_KEY=$("$PY" "$BENCH/load.py" mkkey "http://127.0.0.1:$TH_PORT" \
        --token-file "$dir/admin_token" --name "bench-$cfg-$round") \
        || die "could not create a client key through /admin/v1/apikeys"
    log "TokenHub $cfg (round $round) on 127.0.0.1:$TH_PORT (pid $TH_PID), ${cfg_env[*]}"
}

# run_wrk NAME CONNECTIONS THREADS URL [DURATION]: one wrk run, its BENCH line kept.
run_wrk() {
    local name=$1 conns=$2 threads=$3 url=$4 dur=${5:-$DURATION} out
    out="$RESULTS/$name.txt"
    "$WRK" -t"$threads" -c"$conns" -d"$dur" --latency -s "$BENCH/post.lua" "$url" >"$out" 2>&1 \
        || { cat "$out" >&2; die "wrk $name failed"; }
    grep '^BENCH ' "$out" >&2 || { cat "$out" >&2; die "wrk $name printed no result"; }
}

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

measure_direct() {
    local url="http://127.0.0.1:$NGINX_PORT/v1/chat/completions"
    log "direct: warm-up, then c=1, c=8, c=64 for $DURATION each"
    run_wrk warm_direct 8 2 "$url" 2s
    run_wrk direct_c1 1 1 "$url"
    run_wrk direct_c8 8 2 "$url"
    run_wrk direct_c64 64 2 "$url"
}

# measure_gateway CONFIG ROUND: c=1 latency, c=64 throughput with CPU and RSS; for the
# full configuration also c=8 and the streaming time to first content.
measure_gateway() {
    local cfg=$1 round=$2 base="http://127.0.0.1:$TH_PORT" url before after reqs hz p
    url="$base/v1/chat/completions"
    p="$cfg$round"
    "$PY" "$BENCH/load.py" check "$url" --api-key "$BENCH_API_KEY" >&2 \
        || die "a plain request through TokenHub ($cfg) failed (see above)"
    "$PY" "$BENCH/load.py" check "$url" --stream --model bench-stream-model \
        --api-key "$BENCH_API_KEY" >&2 || die "a streaming request through TokenHub failed"
    log "$cfg round $round: warm-up, then c=1, c=64 for $DURATION each"
    run_wrk "warm_$p" 8 2 "$url" 2s
    run_wrk "${p}_c1" 1 1 "$url"
    if [[ $cfg == full ]]; then
        run_wrk "${p}_c8" 8 2 "$url"
    fi
    before=$(cpu_ticks "$TH_PID")
    run_wrk "${p}_c64" 64 2 "$url"
    after=$(cpu_ticks "$TH_PID")
    reqs=$(sed -n 's/^BENCH requests=\([0-9]*\).*/\1/p' "$RESULTS/${p}_c64.txt")
    hz=$(getconf CLK_TCK)
    awk -v b="$before" -v a="$after" -v n="$reqs" -v hz="$hz" \
        'BEGIN { printf "BENCH cpu_ticks=%d cpu_ms_per_req=%.4f\n", a - b, (a - b) * 1000 / hz / n }' \
        | tee "$RESULTS/${p}_cpu.txt" >&2
    awk '/^VmRSS/ { r = $2 } /^VmHWM/ { h = $2 } END { printf "BENCH rss_kb=%d hwm_kb=%d\n", r, h }' \
        "/proc/$TH_PID/status" | tee "$RESULTS/${p}_rss.txt" >&2
    # Throughput bought by dropping records would be a lie: count what the recorder lost.
    "$PY" "$BENCH/load.py" recorder "$base" --token-file "$WORK/tokenhub-$cfg-$round/admin_token" \
        | tee "$RESULTS/${p}_rec.txt" >&2 || die "could not read the recorder's counters"
    if [[ $cfg == full ]]; then
        log "streaming: $TTFT_N sequential requests, time to first content delta"
        "$PY" "$BENCH/load.py" ttft "$url" --model bench-stream-model -n "$TTFT_N" \
            --api-key "$BENCH_API_KEY" | tee "$RESULTS/${p}_ttft.txt" >&2 \
            || die "streaming time-to-first-content run failed"
    fi
}

# measure_configs: every configuration ROUNDS times, each in a fresh process; even
# rounds run the list backwards so slow drift (a neighbour's load) spreads evenly.
measure_configs() {
    local round cfg order i
    for round in $(seq "$ROUNDS"); do
        order=("${CONFIGS[@]}")
        if ((round % 2 == 0)); then
            order=()
            for ((i = ${#CONFIGS[@]} - 1; i >= 0; i--)); do order+=("${CONFIGS[i]}"); done
        fi
        for cfg in "${order[@]}"; do
            start_tokenhub "$cfg" "$round"
            measure_gateway "$cfg" "$round"
            stop_pid "$TH_PID"
            TH_PID=""
        done
    done
}

# measure_paired: every configuration's gateway up at once, then PAIRED_ROUNDS rounds of
# one c=64 burst against each, in an order that rotates every round. The host's slow
# spells (other tenants, CPU steal) last seconds to minutes and swing throughput by
# +-15% between separate runs; inside a round they hit every configuration alike, so
# the per-round ratios between configurations are far steadier. report.py takes their
# median for the throughput deltas.
measure_paired() {
    local r i n=${#CONFIGS[@]} cfg pid
    local -A port key
    ((PAIRED_ROUNDS > 0)) || return 0
    for cfg in "${CONFIGS[@]}"; do
        start_tokenhub "$cfg" p
        port[$cfg]=$TH_PORT
        key[$cfg]=$BENCH_API_KEY
        PAIRED_PIDS+=("$TH_PID")
        TH_PID=""
        BENCH_API_KEY=${key[$cfg]} run_wrk "warm_paired_$cfg" 8 2 \
            "http://127.0.0.1:${port[$cfg]}/v1/chat/completions" 2s
    done
    log "paired: $PAIRED_ROUNDS rounds of one $PAIRED_DURATION burst per configuration"
    for r in $(seq "$PAIRED_ROUNDS"); do
        for ((i = 0; i < n; i++)); do
            cfg=${CONFIGS[(i + r) % n]}
            BENCH_API_KEY=${key[$cfg]} run_wrk "paired_r${r}_$cfg" 64 2 \
                "http://127.0.0.1:${port[$cfg]}/v1/chat/completions" "$PAIRED_DURATION"
        done
    done
    for cfg in "${CONFIGS[@]}"; do
        "$PY" "$BENCH/load.py" recorder "http://127.0.0.1:${port[$cfg]}" \
            --token-file "$WORK/tokenhub-$cfg-p/admin_token" \
            | tee "$RESULTS/paired_$cfg.txt" >&2 || die "could not read the recorder's counters"
    done
    for pid in "${PAIRED_PIDS[@]}"; do stop_pid "$pid"; done
    PAIRED_PIDS=()
}

report() {
    local args=("$RESULTS" --out "$BENCH/results/latest.md" --duration "$DURATION" --ttft-n "$TTFT_N"
        --paired-duration "$PAIRED_DURATION")
    [[ ${BENCH_UPDATE_README:-0} != 0 ]] && args+=(--readme "$BENCH/README.md")
    rm -rf "$BENCH/results/raw"
    mkdir -p "$BENCH/results/raw"
    cp "$RESULTS"/*.txt "$BENCH/results/raw/"
    echo
    "$PY" "$BENCH/report.py" "${args[@]}"
    log "written to bench/results/latest.md"
}

main() {
    local started=$SECONDS
    cd "$ROOT"
    ensure_tools
    # Other work on the machine shows up in every number: keep the load it started with.
    awk '{ print "BENCH load1=" $1 }' /proc/loadavg >"$RESULTS/load_start.txt"
    log "1-min load average before the bench: $(cut -d' ' -f1 /proc/loadavg)"
    start_nginx
    measure_direct
    if [[ ${BENCH_DIRECT_ONLY:-0} == 0 ]]; then
        measure_configs
        measure_paired
    fi
    report
    log "bench took $((SECONDS - started)) s"
}

# Sourcing this file (for ad-hoc runs) defines the functions without running the bench.
if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    main "$@"
fi
