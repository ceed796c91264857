"""X.509 building blocks: PEM/DER loading, keys, names, profiles, CRLs, OCSP, chains, PKCS#12, CMS."""
