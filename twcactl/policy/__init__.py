"""The request policy: which subjects and names an account may have certified (domain.md §1-§2)."""
