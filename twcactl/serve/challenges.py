"""One challenge validated by its type's check (RFC 8555 §8.3 http-01, §8.4 dns-01; RFC 8737 tls-alpn-01): the
:data:`twcactl.authority.acme.Validator` the server uses.  A failure is the problem its class names
(:mod:`twcactl.serve.validation`); a timeout, a refused connection or a bug never leaves a challenge
``processing``."""

from __future__ import annotations

import ssl
import sys

from twcactl.authority.acme import AcmeProblem, Validator
from twcactl.serve.tls_alpn import check_tls_alpn01
from twcactl.serve.validation import Deadline, Failure, Settings, check_dns01, check_http01

__all__ = ["make_validator", "validate"]


def validate(settings: Settings, kind: str, name: str, token: str, key_authorization: str) -> AcmeProblem | None:
    """Check one challenge within ``settings.timeout`` seconds: None when it holds, else its problem."""
    deadline = Deadline(settings.timeout)
    try:
        if kind == "http-01":
            check_http01(name, token, key_authorization, settings, deadline)
        elif kind == "dns-01":
            check_dns01(name, key_authorization, settings, deadline)
        elif kind == "tls-alpn-01":
            check_tls_alpn01(name, key_authorization, settings, deadline)
        else:
            return AcmeProblem("malformed", f"unsupported challenge type {kind}.")
    except Failure as failure:
        return failure.problem(kind)
    except TimeoutError:
        return Failure("timeout", f"the validation did not finish within {settings.timeout:g} s.").problem(kind)
    except (OSError, ssl.SSLError):
        return Failure("refused", "the connection failed.").problem(kind)
    except Exception as exc:  # noqa: BLE001 - a bug must not leave the challenge processing for ever
        sys.stderr.write(f"twcactl serve: {kind} validation failed: {type(exc).__name__}\n")
        return AcmeProblem("serverInternal", f"{kind}: the validation could not be made.", status=500)
    return None


def make_validator(settings: Settings) -> Validator:
    """The :data:`twcactl.authority.acme.Validator` the server uses."""

    def validator(kind: str, name: str, token: str, key_authorization: str) -> AcmeProblem | None:
        return validate(settings, kind, name, token, key_authorization)

    return validator
