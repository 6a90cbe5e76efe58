#!/usr/bin/env bash
# Installs what contrast needs from Debian and checks the Swift toolchain. Idempotent: silent when all is there.
set -euo pipefail

packages=(libopenmpi-dev openmpi-bin libopenblas-dev libzstd-dev zlib1g-dev libjpeg62-turbo-dev libpng-dev libdnnl-dev dataset-fashion-mnist)

missing=()
for package in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$package" 2>/dev/null || true)
    if [[ "$status" != "installed" ]]; then
        missing+=("$package")
    fi
done

if (( ${#missing[@]} > 0 )); then
    if [[ $(id -u) -eq 0 ]]; then
        echo "setup: installing ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    else
        echo "setup: missing Debian packages: ${missing[*]}" >&2
        echo "setup: install them with:" >&2
        echo "  sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
        exit 1
    fi
fi

if ! command -v swift >/dev/null 2>&1; then
    echo "setup: 'swift' is not on PATH; install the Swift 6 toolchain (https://www.swift.org/install/linux/) and add its usr/bin to PATH" >&2
    exit 1
fi
