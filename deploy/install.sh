#!/usr/bin/env bash
# Install (or remove) fleetd as a systemd service. Run as root; safe to run again (upgrades in place).
#
#   deploy/install.sh [--prefix /opt/fleetd] [--source DIR] [--wheelhouse DIR] [--no-enable] [--no-start]
#   deploy/install.sh --uninstall [--prefix /opt/fleetd]
#
# Installs: a venv at PREFIX with fleetd pip-installed from the source tree (not editable), the system
# user and group "fleetd", the group "docker" if missing (the unit's SupplementaryGroups= needs it),
# /etc/fleetd/fleetd.yaml (only if absent; never overwritten), /etc/fleetd/fleetd.example.yaml (always
# refreshed) and /etc/systemd/system/fleetd.service; then enables and (re)starts the service.
set -euo pipefail

PREFIX=/opt/fleetd
SOURCE="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WHEELHOUSE=""
ENABLE=1
START=1
UNINSTALL=0
PYTHON="${PYTHON:-python3}"

CONF_DIR=/etc/fleetd
STATE_DIR=/var/lib/fleetd
UNIT_PATH=/etc/systemd/system/fleetd.service
UNIT_NAME=fleetd.service
SERVICE_USER=fleetd

usage() { sed -n '2,10s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

say() { printf 'fleetd-install: %s\n' "$*"; }
die() { printf 'fleetd-install: error: %s\n' "$*" >&2; exit 1; }

while [[ $# -gt 0 ]]; do
    case "$1" in
        --prefix) PREFIX="${2:?--prefix needs a directory}"; shift 2 ;;
        --prefix=*) PREFIX="${1#*=}"; shift ;;
        --source) SOURCE="${2:?--source needs a directory}"; shift 2 ;;
        --source=*) SOURCE="${1#*=}"; shift ;;
        --wheelhouse) WHEELHOUSE="${2:?--wheelhouse needs a directory}"; shift 2 ;;
        --wheelhouse=*) WHEELHOUSE="${1#*=}"; shift ;;
        --uninstall) UNINSTALL=1; shift ;;
        --no-enable) ENABLE=0; shift ;;
        --no-start) START=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) printf 'unknown option: %s\n\n' "$1" >&2; usage >&2; exit 2 ;;
    esac
done

[[ $EUID -eq 0 ]] || die "run as root"
PREFIX="${PREFIX%/}"
case "$PREFIX" in
    /*) ;;
    *) die "--prefix must be an absolute path" ;;
esac
[[ "$PREFIX" != "" && "$PREFIX" != "/" && "$PREFIX" != "/usr" ]] || die "refusing --prefix '$PREFIX'"

# sd_booted(3): systemd is PID 1 exactly when /run/systemd/system exists.
have_systemd() { [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; }

uninstall() {
    if have_systemd; then
        if systemctl cat "$UNIT_NAME" >/dev/null 2>&1; then
            systemctl disable --now "$UNIT_NAME" || true
        fi
    else
        say "systemd is not running as PID 1; not stopping anything"
    fi
    if [[ -e "$UNIT_PATH" ]]; then
        rm -f "$UNIT_PATH"
        say "removed $UNIT_PATH"
    fi
    if have_systemd; then
        systemctl daemon-reload
        systemctl reset-failed "$UNIT_NAME" 2>/dev/null || true
    fi
    if [[ -e "$PREFIX" ]]; then
        # Only ever delete what looks like the venv this script made.
        [[ -f "$PREFIX/pyvenv.cfg" && -e "$PREFIX/bin/fleetd" ]] \
            || die "$PREFIX does not look like a fleetd venv; not removing it"
        rm -rf -- "$PREFIX"
        say "removed $PREFIX"
    fi
    say "kept $CONF_DIR (configuration), $STATE_DIR (snapshots) and the user '$SERVICE_USER';"
    say "remove them by hand if wanted: rm -rf $CONF_DIR $STATE_DIR; userdel $SERVICE_USER"
}

ensure_accounts() {
    if ! getent group docker >/dev/null; then
        groupadd --system docker
        say "created system group 'docker'"
    fi
    if ! getent group "$SERVICE_USER" >/dev/null; then
        groupadd --system "$SERVICE_USER"
    fi
    if ! id -u "$SERVICE_USER" >/dev/null 2>&1; then
        local nologin=/usr/sbin/nologin
        [[ -x "$nologin" ]] || nologin=/sbin/nologin
        useradd --system --gid "$SERVICE_USER" --no-create-home --home-dir /nonexistent \
            --shell "$nologin" --comment "fleetd Docker fleet manager" "$SERVICE_USER"
        say "created system user '$SERVICE_USER'"
    fi
}

install_venv() {
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || die "$PYTHON is older than 3.11"
    if [[ ! -x "$PREFIX/bin/python" ]]; then
        "$PYTHON" -m venv "$PREFIX" \
            || die "'$PYTHON -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
        say "created venv $PREFIX"
    fi
    # Build from a copy: the source may be read-only, and the build must not leave files in it.
    local build
    build="$(mktemp -d)"
    # shellcheck disable=SC2064  # expand now: $build is local
    trap "rm -rf -- '$build'" EXIT
    tar -C "$SOURCE" --exclude=./.git --exclude=./.venv --exclude='*.egg-info' --exclude=./build \
        --exclude='__pycache__' --exclude='.*_cache' -cf - . | tar -C "$build" -xf -
    local opts=(--disable-pip-version-check --no-cache-dir --quiet)
    if [[ -n "$WHEELHOUSE" ]]; then
        opts+=(--no-index --find-links "$WHEELHOUSE")
    fi
    # pip always reinstalls from a local directory, so a re-run picks up new code under the same version.
    "$PREFIX/bin/python" -m pip install "${opts[@]}" "$build"
    rm -rf -- "$build"
    trap - EXIT
    install -d -m 0755 "$PREFIX/share/fleetd"
    if [[ -f "$SOURCE/deploy/README.md" ]]; then
        install -m 0644 "$SOURCE/deploy/README.md" "$PREFIX/share/fleetd/"
    fi
    install -m 0644 "$SOURCE/deploy/fleetd.service" "$PREFIX/share/fleetd/"
    say "installed $("$PREFIX/bin/python" -m pip --disable-pip-version-check show fleetd \
        | sed -n 's/^Version: /fleetd /p') into $PREFIX"
}

# Used only when the source tree has no config/fleetd.yaml.
default_config() {
    cat <<'EOF'
# fleetd configuration; every key is described in fleetd.example.yaml.
listen: 127.0.0.1:8080

poll:
  interval: 15s
  timeout: 5s

hosts:
  - name: local
    url: unix:///var/run/docker.sock

snapshots:
  path: fleetd.db   # relative: in $STATE_DIRECTORY (/var/lib/fleetd) under systemd

log:
  level: info
EOF
}

install_config() {
    install -d -m 0755 -o root -g root "$CONF_DIR"
    local tmp
    tmp="$(mktemp)"
    if [[ -f "$SOURCE/config/fleetd.example.yaml" ]]; then
        cp "$SOURCE/config/fleetd.example.yaml" "$tmp"
    else
        default_config >"$tmp"
    fi
    install -m 0640 -o root -g "$SERVICE_USER" "$tmp" "$CONF_DIR/fleetd.example.yaml"
    if [[ -e "$CONF_DIR/fleetd.yaml" ]]; then
        say "kept existing $CONF_DIR/fleetd.yaml"
    else
        if [[ -f "$SOURCE/config/fleetd.yaml" ]]; then
            cp "$SOURCE/config/fleetd.yaml" "$tmp"
        else
            default_config >"$tmp"
        fi
        install -m 0640 -o root -g "$SERVICE_USER" "$tmp" "$CONF_DIR/fleetd.yaml"
        say "installed $CONF_DIR/fleetd.yaml (polls unix:///var/run/docker.sock, API on 127.0.0.1:8080)"
    fi
    rm -f -- "$tmp"
    install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" "$STATE_DIR"
    # As the service user: proves it can read the config and every file the config names.
    if ! runuser -u "$SERVICE_USER" -- env STATE_DIRECTORY="$STATE_DIR" \
        "$PREFIX/bin/fleetd" check-config --config "$CONF_DIR/fleetd.yaml"; then
        die "$CONF_DIR/fleetd.yaml has problems (above); fix it, then run this script again"
    fi
}

install_unit() {
    local tmp
    tmp="$(mktemp)"
    sed "s#/opt/fleetd/#${PREFIX}/#g" "$SOURCE/deploy/fleetd.service" >"$tmp"
    install -m 0644 "$tmp" "$UNIT_PATH"
    rm -f -- "$tmp"
    say "installed $UNIT_PATH"
    if [[ ! -x /bin/kill ]]; then
        say "warning: /bin/kill is missing (Debian: apt-get install procps); 'systemctl reload' needs it"
    fi
    if ! have_systemd; then
        say "systemd is not running as PID 1 here; skipping systemctl."
        say "on a systemd host: systemctl daemon-reload && systemctl enable --now $UNIT_NAME"
        return
    fi
    systemctl daemon-reload
    if [[ $ENABLE -eq 1 ]]; then
        systemctl enable --quiet "$UNIT_NAME"
        say "enabled $UNIT_NAME"
    fi
    if [[ $START -eq 1 ]]; then
        # restart, not start: a re-run after an upgrade must load the new code.
        if systemctl restart "$UNIT_NAME"; then
            say "$UNIT_NAME is $(systemctl is-active "$UNIT_NAME" || true)"
        else
            systemctl --no-pager --lines=20 status "$UNIT_NAME" >&2 || true
            die "$UNIT_NAME failed to start (journalctl -u $UNIT_NAME)"
        fi
    fi
}

if [[ $UNINSTALL -eq 1 ]]; then
    uninstall
    exit 0
fi

[[ -f "$SOURCE/pyproject.toml" && -f "$SOURCE/deploy/fleetd.service" ]] \
    || die "$SOURCE is not a fleetd source tree (use --source)"
ensure_accounts
install_venv
install_config
install_unit
