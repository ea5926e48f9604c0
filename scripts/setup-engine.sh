#!/usr/bin/env bash
# Set up a Docker engine that can checkpoint containers: docker.io, containerd, runc and
# CRIU >= 4.2 from Debian, "experimental" on, daemons running. Idempotent; run as root on
# Debian 12 or 13. Prints what it did; exits non-zero with the reason when checkpointing
# cannot work.
set -euo pipefail

MIN_CRIU=4.2
CRIU_PREFIX=/usr/local
CACHE=/var/cache/ckptd-engine
LOG_DIR=/var/log/ckptd-engine
DAEMON_JSON=/etc/docker/daemon.json
export DEBIAN_FRONTEND=noninteractive
# The engine must find the CRIU built below before any packaged one.
export PATH="$CRIU_PREFIX/sbin:$CRIU_PREFIX/bin:/usr/sbin:/usr/bin:/sbin:/bin"

say() { printf 'setup-engine: %s\n' "$*"; }
die() { printf 'setup-engine: FAILED: %s\n' "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root"
[ -r /etc/os-release ] || die "no /etc/os-release: only Debian 12 and 13 are supported"
# shellcheck disable=SC1091
. /etc/os-release
[ "${ID:-}" = debian ] || die "this is ${ID:-unknown}, not Debian"
say "Debian ${VERSION_ID:-?} (${VERSION_CODENAME:-?}), kernel $(uname -r)"

# version_ge A B: true when version A >= version B.
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

criu_version() { criu --version 2>/dev/null | awk '/^Version:/ {print $2}'; }

apt_updated=no
apt_install() {
  local missing=()
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
      || missing+=("$pkg")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" = no ]; then
    apt-get update -qq
    apt_updated=yes
  fi
  say "installing ${missing[*]}"
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$LOG_DIR/apt.log" 2>&1 \
    || { tail -n 20 "$LOG_DIR/apt.log" >&2; die "apt-get install ${missing[*]} failed"; }
}

# The machine's own Debian mirror: the first URI of a source that carries this release.
debian_mirror() {
  local files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  {
    grep -hsE '^\s*deb\s' "${files[@]}" | awk '{for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) {print $i; break}}'
    grep -hsE '^\s*URIs:' "${files[@]}" | awk '{for (i = 2; i <= NF; i++) print $i}'
  } | grep -vE 'security|updates|backports' | grep -E '/debian/?$' | head -n1 || true
}

build_criu() {
  local mirror src_list lists workdir tarball want_sha
  mirror=$(debian_mirror)
  [ -n "$mirror" ] || die "no Debian mirror found in /etc/apt/sources.list*; cannot fetch CRIU's source"
  say "building CRIU from Debian unstable's source, mirror $mirror"
  apt_install build-essential pkgconf libbsd-dev libcap-dev libgnutls28-dev libnet1-dev \
    libnftables-dev libnl-3-dev libprotobuf-c-dev libprotobuf-dev protobuf-c-compiler \
    protobuf-compiler python3 uuid-dev xz-utils

  mkdir -p "$CACHE/lists/partial" "$CACHE/src"
  src_list="$CACHE/unstable-src.sources"
  printf 'Types: deb-src\nURIs: %s\nSuites: unstable\nComponents: main\nSigned-By: %s\n' \
    "$mirror" /usr/share/keyrings/debian-archive-keyring.gpg >"$src_list"
  lists=(-o "Dir::Etc::sourcelist=$src_list" -o Dir::Etc::sourceparts=- -o "Dir::State::Lists=$CACHE/lists")
  apt-get update -qq "${lists[@]}" || die "cannot read Debian unstable's source index from $mirror"

  workdir="$CACHE/src"
  rm -rf "${workdir:?}"/*
  # Debian's packaging tarball has answered 404 here while the upstream one downloads, and only
  # the upstream one is needed for `make criu`: so a partial download is fine when it has that.
  (cd "$workdir" && apt-get source --download-only -qq "${lists[@]}" criu >"$LOG_DIR/criu-source.log" 2>&1) || true
  tarball=$(find "$workdir" -maxdepth 1 -name 'criu_*.orig.tar.*' | head -n1)
  [ -n "$tarball" ] || { cat "$LOG_DIR/criu-source.log" >&2; die "could not download CRIU's source"; }
  # The .dsc comes from the signed index; check the tarball against it.
  want_sha=$(awk '/^Checksums-Sha256:/ {f = 1; next} /^[A-Z]/ {f = 0} f && $3 ~ /orig/ {print $1; exit}' "$workdir"/criu_*.dsc)
  echo "$want_sha  $tarball" | sha256sum -c --quiet - || die "CRIU source $tarball fails its checksum"

  tar -xf "$tarball" -C "$workdir"
  local dir
  dir=$(find "$workdir" -maxdepth 1 -mindepth 1 -type d -name 'criu-*' | head -n1)
  say "compiling $(basename "$dir") (log: $LOG_DIR/criu-build.log)"
  make -C "$dir" -j"$(nproc)" criu >"$LOG_DIR/criu-build.log" 2>&1 \
    || { tail -n 30 "$LOG_DIR/criu-build.log" >&2; die "make criu failed"; }
  install -D -m 0755 "$dir/criu/criu" "$CRIU_PREFIX/sbin/criu"
  say "installed $CRIU_PREFIX/sbin/criu"
}

ensure_criu() {
  local have candidate
  have=$(criu_version || true)
  if [ -n "$have" ] && version_ge "$have" "$MIN_CRIU"; then
    say "CRIU $have at $(command -v criu): ok"
    return
  fi

  candidate=$(apt-cache policy criu 2>/dev/null | awk '/Candidate:/ {print $2}' | sed 's/-[^-]*$//')
  if [ -n "$candidate" ] && version_ge "$candidate" "$MIN_CRIU"; then
    apt_install criu
  else
    say "Debian's CRIU is ${candidate:-absent} (< $MIN_CRIU: fails on this kernel or with sockets)"
    build_criu
  fi

  have=$(criu_version || true)
  [ -n "$have" ] && version_ge "$have" "$MIN_CRIU" \
    || die "CRIU at $(command -v criu || echo nowhere) is ${have:-missing}; need >= $MIN_CRIU"
  say "CRIU $have at $(command -v criu)"
}

enable_experimental() {
  mkdir -p "$(dirname "$DAEMON_JSON")"
  python3 - "$DAEMON_JSON" <<'PY'
import json, os, sys
path = sys.argv[1]
config = {}
if os.path.exists(path) and os.path.getsize(path) > 0:
    with open(path) as f:
        config = json.load(f)
if config.get("experimental") is True:
    print("setup-engine: experimental already on in " + path)
    sys.exit(0)
config["experimental"] = True
with open(path + ".tmp", "w") as f:
    json.dump(config, f, indent=2)
    f.write("\n")
os.replace(path + ".tmp", path)
print("setup-engine: experimental turned on in " + path)
PY
}

api_up() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

# Start a daemon detached from this shell: its own session, no inherited stdin/stdout, so a
# caller (CI) that waits for our output to close is not held open by it.
start_detached() {
  local name=$1
  shift
  say "starting $name (log: $LOG_DIR/$name.log)"
  setsid "$@" </dev/null >>"$LOG_DIR/$name.log" 2>&1 &
}

wait_for() {
  local what=$1 seconds=$2
  shift 2
  for _ in $(seq "$seconds"); do
    "$@" && return 0
    sleep 1
  done
  die "$what did not come up within ${seconds}s"
}

ensure_daemons() {
  local restart=$1
  if [ -d /run/systemd/system ]; then
    systemctl enable --now containerd docker >/dev/null
    [ "$restart" = yes ] && { say "restarting docker.service"; systemctl restart docker; }
    wait_for "dockerd" 60 api_up
    return
  fi

  if ! pgrep -x containerd >/dev/null; then
    start_detached containerd containerd
    wait_for containerd 30 test -S /run/containerd/containerd.sock
  fi

  if pgrep -x dockerd >/dev/null && [ "$restart" = yes ]; then
    say "restarting dockerd to apply $DAEMON_JSON"
    pkill -x dockerd
    wait_for "dockerd exit" 30 bash -c '! pgrep -x dockerd >/dev/null'
  fi

  if ! pgrep -x dockerd >/dev/null; then
    start_detached dockerd dockerd --containerd=/run/containerd/containerd.sock
  fi
  wait_for dockerd 60 api_up || { tail -n 20 "$LOG_DIR/dockerd.log" >&2; exit 1; }
}

verify() {
  local experimental
  experimental=$(docker version --format '{{.Server.Experimental}}')
  [ "$experimental" = true ] || die "dockerd runs without experimental features; check $DAEMON_JSON"
  criu check >"$LOG_DIR/criu-check.log" 2>&1 \
    || { cat "$LOG_DIR/criu-check.log" >&2; die "criu check fails on kernel $(uname -r)"; }
  say "docker $(docker version --format '{{.Server.Version}}') (experimental), containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1 {print $3}'), CRIU $(criu_version): ready"
}

main() {
  mkdir -p "$LOG_DIR" "$CACHE"
  apt_install docker.io containerd runc iptables python3 ca-certificates
  ensure_criu

  local before after restart=no
  before=$(cat "$DAEMON_JSON" 2>/dev/null || true)
  enable_experimental
  after=$(cat "$DAEMON_JSON")
  [ "$before" != "$after" ] && restart=yes
  ensure_daemons "$restart"
  verify
}

main "$@"
