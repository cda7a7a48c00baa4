"""DRF authentication by API token: ``Authorization: Token <key>``, as the site agent sends it."""

from __future__ import annotations

from rest_framework.authentication import TokenAuthentication
from rest_framework.exceptions import AuthenticationFailed

from core.tokens import api_token_check


class ApiTokenAuthentication(TokenAuthentication):
    """DRF's header parsing and 401 answer, checked against ``core.ApiToken``'s hashed, expiring keys.

    ``request.auth`` is the ``ApiToken``, so a client can sign out by revoking the token it uses.
    """

    def authenticate_credentials(self, key: str):
        check = api_token_check(key=key)
        if check.token is None:
            raise AuthenticationFailed(check.refusal)
        return check.token.user, check.token
