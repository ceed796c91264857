#!/usr/bin/env bash
# Install everything the tests need (system packages included) and run the whole suite.
# Run as root on a fresh Debian 12 machine: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

# The real components the tests drive: openssl, keytool (JRE), javac (JDK), certtool (GnuTLS),
# pk12util (NSS), SoftHSM2 / opencryptoki / OpenSC, pcscd + vpcd; gcc and headers for pyscard;
# the ACME clients of the serve tests (lego, caddy, dehydrated, acme-tiny; node for npm's acme-client);
# dnsmasq + nginx for domain validation (issue 26).
packages=(openssl default-jre-headless default-jdk-headless gnutls-bin libnss3-tools softhsm2 opencryptoki opensc pcscd
          vsmartcard-vpcd libpcsclite-dev gcc python3-dev python3-venv easy-rsa lego
          postgresql faketime caddy dehydrated acme-tiny uacme nodejs ca-certificates curl util-linux dnsmasq-base nginx-light)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# The card tests start their own pcscd and pkcsslotd (one of each per machine); on a CI machine a
# package's post-install may have started them already.
if [ "${CI:-}" = "true" ]; then
  pkill -x pcscd 2>/dev/null || true
  pkill -x pkcsslotd 2>/dev/null || true
  # caddy's package starts a system service on port 80; the tests run their own Caddy
  systemctl disable --now caddy 2>/dev/null || true
fi

# npm's acme-client (tests/clients/acme_client_node.js) in a project-local, gitignored directory
command -v npm >/dev/null || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null; }
[ -d .cache/npm/node_modules/acme-client ] || npm install -q --prefix .cache/npm --no-audit --no-fund acme-client@5.4.0

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[card,test,serve]'
# Lint and type-check before the tests: either failing fails the run.
echo "ruff: $(.venv/bin/ruff --version)"
.venv/bin/ruff check twcactl tests bench
echo "mypy: $(.venv/bin/mypy --version)"
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
