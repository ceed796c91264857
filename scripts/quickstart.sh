#!/usr/bin/env bash
# The main job on a throw-away local CA, with twcactl alone:
# install into .venv, init a CA, add an account, make a key and CSR,
# issue, export the cert.zip bundle, export a PFX; then say where it all is.
# Run as root on a fresh Debian 12 machine: bash scripts/quickstart.sh
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check .
tw=.venv/bin/twcactl

work=$(mktemp -d /tmp/twcactl-demo.XXXXXX)
export TWCACTL_HOME="$work/ca"
umask 077
# Throw-away secrets in 0600 files: twcactl reads them as file:PATH SOURCEs.
python3 -c 'import secrets; print(secrets.token_urlsafe(18))' > "$work/ca-passphrase.txt"
python3 -c 'import secrets; print(secrets.token_urlsafe(12))' > "$work/pfx-password.txt"
umask 022

echo "== 1. a local CA (root + issuing intermediate) in $TWCACTL_HOME"
$tw ca init --org "twcactl Demo" --country TW --ca-passphrase "file:$work/ca-passphrase.txt"
echo "== 2. an RA account with 10 certificate-years"
$tw account add 70759028-01 --org TWCA --domain twca.com.tw --quota 10
echo "== 3. a key and a CSR"
$tw csr new --cn www.twca.com.tw --org TWCA --ou SYSTEM --locality Taipei --state Taiwan --country TW \
  --key-out "$work/www.key" --no-passphrase --out "$work/www.csr"
echo "== 4. issue"
$tw --json cert issue "$work/www.csr" --account 70759028-01 --years 1 \
  --ca-passphrase "file:$work/ca-passphrase.txt" > "$work/issue.json"
serial=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["certificates"][0]["serial"])' "$work/issue.json")
$tw cert show "$serial"
echo "== 5. the bundle: root.cer, uca.cer, server.cer, cert.zip"
$tw cert export "$serial" --out-dir "$work/bundle"
echo "== 6. a PFX with the key and the whole chain"
$tw pfx export --cert "$work/bundle/server.cer" --key "$work/www.key" --out "$work/www.pfx" \
  --password "file:$work/pfx-password.txt"

cat <<TXT

Done. Everything is in $work:
  CA home        $work/ca            (CA key passphrase in $work/ca-passphrase.txt)
  key and CSR    $work/www.key  $work/www.csr
  certificate    $work/ca/certs/$serial.pem
  bundle         $work/bundle/root.cer  uca.cer  server.cer  cert.zip
  PFX            $work/www.pfx       (password in $work/pfx-password.txt)
Try: TWCACTL_HOME=$work/ca $tw cert list
TXT
