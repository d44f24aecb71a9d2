"""Access control without HTTP: who is asking, what a request needs, and whether they may.

    auth/
      model.py        Access (type, name, action), Principal, Denial and its Reason
      header.py       the Authorization header, parsed strictly (Basic credentials or a Bearer token)
      htpasswd.py     Distribution's htpasswd file: bcrypt only, re-read on change, constant-time checks
      users.py        adding and removing htpasswd users (`k3sreg htpasswd`)
      scopes.py       scope strings, and REQUIRED: what each registry request needs (the audit table)
      challenge.py    WWW-Authenticate values as Distribution writes them
      keys.py         trust for tokens: root certificates, x5c chains, JWKS, key ids (libtrust, RFC 7638)
      signing.py      the built-in service's signing keys: a generated, rotatable keyring or a given key
      tokens.py       TokenVerifier (Distribution's auth.token checks, cached per token) and sign_token
      rules.py        the `access:` rules: globs over repository names, who may do what
      service.py      the built-in token service (GET/POST /auth/token) as plain data in and out
      ratelimit.py    failed logins per client address (token buckets)
      controller.py   AccessController: one request's decision (Allowed, or Refused with status and headers)
      certs.py        a CA and the certificates it issues (server, node client, token signer)
      certinfo.py     reading certificates: show, expiry, whether one covers a host

Nothing here imports aiohttp or the server, storage, upstream or cli packages (an import-linter contract);
nothing here logs a password, a token or a private key, and no repr of a credential shows one.
"""
