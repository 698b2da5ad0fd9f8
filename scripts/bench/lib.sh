# Helpers shared by the sidecar benchmark scripts (sourced after
# scripts/lib/common.sh). They expect RUN, PROXY_CPU, WRK_CPU and PIDS=()
# to be set; NICE defaults to 0.

NICE=${NICE:-0}

# stop_pid PID: SIGTERM, then SIGKILL if it is still there after 5 s (bounded).
stop_pid() {
    kill "$1" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
}

# stop_all: stops every process started with `start` (the EXIT trap).
stop_all() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
}

# start NAME CMD...: starts CMD on PROXY_CPU in the background, logs to RUN/NAME.log.
start() {
    start_on "$PROXY_CPU" "$@"
}

# start_on CPUS NAME CMD...: starts CMD on CPUS in the background, logs to RUN/NAME.log.
start_on() {
    local cpus=$1 name=$2
    shift 2
    nice -n "$NICE" taskset -c "$cpus" "$@" >"$RUN/$name.log" 2>&1 &
    PIDS+=($!)
    LAST_PID=$!
}

# port_free PORT: fails when something already listens there.
port_free() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        echo "port $1 is in use: another benchmark running?" >&2
        exit 1
    fi
}

# to_us VALUE: wrk's "123.45us" / "1.20ms" / "1.01s" in microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) m = 1; else if (v ~ /ms$/) m = 1000; else if (v ~ /s$/) m = 1000000; else m = 1
        printf "%.0f", n * m
    }'
}

# wrk_run OUT CONNS DURATION PORT [wrk args...]: one wrk run pinned to WRK_CPU.
# The URL comes before the extra args so that "-s SCRIPT -- ARGS" works.
wrk_run() {
    local out=$1 conns=$2 dur=$3 port=$4
    shift 4
    timeout 120 nice -n "$NICE" taskset -c "$WRK_CPU" wrk -t1 -c"$conns" -d"$dur" --latency \
        -H 'x-shardmesh-service: bench' "http://127.0.0.1:$port/bench" "$@" >"$out"
}

# wrk_field FILE NAME: requests, req_s, p50, p99, errors from a wrk output file.
wrk_field() {
    case $2 in
        requests) awk '/requests in/ { print $1 }' "$1" ;;
        req_s) awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$1" ;;
        p50) to_us "$(awk '$1 == "50%" { print $2 }' "$1")" ;;
        p99) to_us "$(awk '$1 == "99%" { print $2 }' "$1")" ;;
        errors) awk '/Non-2xx|Socket errors/ { gsub(/[^0-9 ]/, " "); for (i = 1; i <= NF; i++) s += $i } END { print s + 0 }' "$1" ;;
    esac
}

