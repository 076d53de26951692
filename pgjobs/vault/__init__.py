"""How provider secrets are kept: AES-256-GCM ciphertext bound to its row (cipher.py), the keys
and where they come from (keys.py), key rotation and retirement (rotation.py), the tenant's
credential rows, listed masked (credentials.py), and keeping plaintext out of logs and error
texts (redaction.py). Plaintext exists only inside a worker while a handler uses it
(pgjobs/worker/credentials.py is the one decrypt path)."""
