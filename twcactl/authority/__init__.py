"""The CA's workflows over its records: the home, accounts, operators, issue/renew/revoke, checks."""
