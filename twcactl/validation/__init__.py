"""Domain validation, CAA and multi-perspective corroboration: the CA's validation authority (issue 26).

An area apart from the books (as Boulder keeps its validation authority apart from its RA): it looks at the
outside world (DNS, HTTP, the remote perspectives) and at certificates before they are signed, and answers what
it saw; the authority area records the answers and decides issuance.  May import foundation, policy and pkix.
"""
