"""People signing in (SignInService): password + TOTP, OIDC, enrolment and user sessions, in the
service's usual shape (api, commands, store, domain/)."""
