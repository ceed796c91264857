// The npm package acme-client (https://github.com/publishlab/node-acme-client) against `twcactl serve`:
// an account with External Account Binding, an http-01 order (the key authorization written into WEBROOT,
// which the test serves), a renewal (a second order, a new key), and the revocation of the renewed
// certificate (reason superseded).  Prints one JSON line: {"first": PEM, "second": PEM, "revoked": true}.
// Environment: ACME_DIRECTORY, EAB_KID, EAB_HMAC, DOMAIN, WEBROOT; NODE_EXTRA_CA_CERTS trusts the test CA.
'use strict';
const fs = require('fs');
const path = require('path');
const acme = require('acme-client');

async function order(client, domain, webroot) {
  const [, csr] = await acme.crypto.createCsr({ commonName: domain }, await acme.crypto.createPrivateEcdsaKey('P-256'));
  return client.auto({
    csr,
    email: 'ops@example.test',
    termsOfServiceAgreed: true,
    challengePriority: ['http-01'],
    skipChallengeVerification: true,
    challengeCreateFn: async (authz, challenge, keyAuthorization) => {
      fs.writeFileSync(path.join(webroot, challenge.token), keyAuthorization);
    },
    challengeRemoveFn: async (authz, challenge) => {
      fs.rmSync(path.join(webroot, challenge.token), { force: true });
    },
  });
}

async function main() {
  const env = process.env;
  const client = new acme.Client({
    directoryUrl: env.ACME_DIRECTORY,
    accountKey: await acme.crypto.createPrivateKey(2048),
    externalAccountBinding: { kid: env.EAB_KID, hmacKey: env.EAB_HMAC },
  });
  const first = await order(client, env.DOMAIN, env.WEBROOT);
  const second = await order(client, env.DOMAIN, env.WEBROOT);
  await client.revokeCertificate(second, { reason: 4 });
  process.stdout.write(JSON.stringify({ first, second, revoked: true }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`acme-client failed: ${err && err.stack ? err.stack : err}\n`);
  process.exit(1);
});
