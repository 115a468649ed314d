"""The WeCom boundary: the callback (verify, decrypt, dedupe), the API client and the outbox sender."""
