"""twcactl: a command-line PKI toolkit for RA operators, sysadmins and card holders."""

__version__ = "0.1.0"
