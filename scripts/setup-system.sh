#!/usr/bin/env bash
# System packages the test suite needs, from Debian: Chromium (the report is opened in a
# headless browser) and Slurm with munge (the Slurm executor's integration tests run against a
# real single-node cluster). Installs only what is missing; needs root or sudo.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium)
command -v slurmctld >/dev/null || need+=(slurmctld)
command -v slurmd >/dev/null || need+=(slurmd)
command -v sbatch >/dev/null || need+=(slurm-client)
command -v munged >/dev/null || need+=(munge)
[ ${#need[@]} -eq 0 ] && exit 0
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "error: installing ${need[*]} needs root (or sudo)" >&2; exit 1; }
  sudo="sudo"
fi
echo "installing ${need[*]} from Debian ..."
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
