"""Fleet operations: resolving targets, running actions and batches, auditing them, security findings.

Nothing in here knows about HTTP; :mod:`fleetd.api` maps these to requests and answers.
"""
