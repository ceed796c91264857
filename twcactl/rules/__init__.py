"""Pure rules of the CA's domain: vocabularies, time and serial formats, identifiers (no cryptography)."""
