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
