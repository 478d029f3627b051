"""Pure rules of the gateway: routes from proto descriptors, OpenAPI, HTTP error mapping, cache
keys, TOTP."""
