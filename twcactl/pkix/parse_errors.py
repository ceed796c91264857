"""What the parsing libraries raise for malformed input, named once.

Every guard around hostile bytes (a CSR, a certificate, a PFX, a token's
objects) catches one of these tuples and nothing broader, so a bug in
twcactl itself is not mistaken for bad input: it escapes to the CLI's
top-level handler and exits 70 (cli-contract.md, "Exit status").  The sets
were read from the libraries' sources and checked with the fuzz tests
(tests/test_fuzz.py, tests/test_hostile_input.py).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm

#: cryptography's DER/PEM loaders and their lazy accessors (subject, issuer,
#: CRL entries): ``ValueError`` for malformed ASN.1 (``UnicodeDecodeError``
#: included), ``x509.InvalidVersion`` for a version field it does not know,
#: and ``KeyError`` for a name attribute whose string tag it has no type for
#: (cryptography 48: ``KeyError(0)`` for universal tag 0; found by tests/test_fuzz.py).
X509_LOAD_ERRORS: tuple[type[Exception], ...] = (ValueError, KeyError, x509.InvalidVersion)

#: reading ``.extensions`` of a certificate or CSR (parsed on first access):
#: malformed values, a repeated extension, a GeneralName type it cannot
#: represent, a directoryName with an unknown string tag (``KeyError``, as above),
#: and ``TypeError`` from an extension class refusing a decoded value it has no
#: member for (cryptography 48: a TLSFeature with an unknown feature number;
#: found by tests/test_fuzz.py).
X509_EXTENSION_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    KeyError,
    TypeError,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)

#: reading a public key or a signature algorithm: malformed parameters, or an
#: algorithm cryptography does not implement (DSA variants, GOST, odd curves).
KEY_ERRORS: tuple[type[Exception], ...] = (ValueError, UnsupportedAlgorithm)

#: checking a signature with a key read from the input: a wrong signature, a
#: malformed one, or a key/algorithm pair that cannot verify (``TypeError``
#: for a key type the verifier does not take).
SIGNATURE_ERRORS: tuple[type[Exception], ...] = (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm)

#: asn1crypto's lazy parse (values decode on first access): ``ValueError`` and
#: ``TypeError`` from its decoders, ``KeyError`` for an unknown CHOICE
#: alternative, ``OverflowError`` for integers too large for a field,
#: ``AttributeError`` for a damaged optional field left as its ``InstanceOf``
#: placeholder ("'InstanceOf' object has no attribute 'native'"; asn1crypto
#: 1.5, found by tests/test_fuzz.py on a mutated PFX's MacData).
ASN1_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, KeyError, OverflowError, AttributeError)
