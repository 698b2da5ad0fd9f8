# Shared helpers for scripts/*: sourced, not run.

# apt_install PKG...: installs Debian packages that are missing (needs root or sudo).
apt_install() {
    local missing=()
    for p in "$@"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null || true
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# venv_python: prints the path of the project's Python venv (target/venv), creating it.
venv_python() {
    local venv="${SHARDMESH_ROOT:-.}/target/venv"
    if [ ! -x "$venv/bin/python" ]; then
        python3 -m venv "$venv" >&2
        "$venv/bin/pip" install -q --upgrade pip >&2 || true
    fi
    echo "$venv/bin/python"
}

# pip_install ARGS...: pip install into the project venv.
pip_install() {
    local py
    py=$(venv_python)
    "$py" -m pip install -q "$@" >&2
}

# wait_port PORT: waits up to 10 s for a listener on 127.0.0.1:PORT; exits
# the script otherwise (its logs are under $RUN, when the caller sets it).
wait_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on port $1; see ${RUN:-the logs}" >&2
    exit 1
}
