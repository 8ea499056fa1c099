#!/usr/bin/env bash
# Installs what the test suites need beyond the Rust toolchain, idempotently:
# OpenSSH's server, for the Cosmos test host (tests/src/cosmos_host), which runs a private
# sshd on 127.0.0.1. Only the binary is wanted: the service must not start, and on these
# machines /usr/sbin/policy-rc.d (exit 101) already stops apt from starting it.
set -euo pipefail

if [[ ! -x /usr/sbin/sshd ]]; then
    sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        sudo=(sudo)
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt_install=("${sudo[@]}" apt-get install -y -q --no-install-recommends openssh-server)
    if ! "${apt_install[@]}"; then
        # The package lists may be missing or stale; refresh them once and try again.
        "${sudo[@]}" apt-get update -q
        "${apt_install[@]}"
    fi
fi

# sshd refuses to start as root without its privilege separation directory.
if [[ ! -d /run/sshd ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        sudo mkdir -p /run/sshd
    else
        mkdir -p /run/sshd
    fi
fi
