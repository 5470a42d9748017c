"""The Flask-free core that makes an authenticator authenticate.

config: the decrypted configuration and its tokens; outbound: safe HTTP; tokens: OAuth 2.0
token requests; login: the start of an authorization-code login; apply: credentials on a
request; conditions: failure rules; redact: secret masking; testing: one test of an
authenticator, step by step.
"""
