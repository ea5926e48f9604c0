#!/usr/bin/env bash
# Build the example app as a static binary into build/ and wrap it in a FROM-scratch image.
# Usage: build.sh [IMAGE]   (default: $IMAGE, else ckptd-example-app:latest). Works from any
# directory; running it again rebuilds both. Needs g++ (Debian's build-essential) and docker.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
image=${1:-${IMAGE:-ckptd-example-app:latest}}

die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }
command -v g++ >/dev/null || die "g++ not found (apt-get install build-essential)"
command -v docker >/dev/null || die "docker not found"

mkdir -p "$here/build"
# -static: the image is FROM scratch, so there is no libc to link against at run time.
g++ -std=c++17 -O2 -Wall -Wextra -static -pthread -o "$here/build/app" "$here/app.cpp"
echo "build.sh: built $here/build/app"

# The classic builder needs nothing but the engine: no BuildKit, no registry, no base image.
DOCKER_BUILDKIT=0 docker build -t "$image" "$here"
echo "build.sh: built image $image"
