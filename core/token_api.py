"""API tokens over the API: obtain one with a password, list, create and revoke one's own
(officers: anyone's), sign out by revoking the token in use. Thin: ``core.tokens`` holds the rules."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import authenticate
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from core import selectors
from core.api import ScopedViewSet
from core.authentication import ApiTokenAuthentication
from core.choices import TokenRevocation
from core.lockout import lockout_response
from core.models import ApiToken
from core.tokens import IssuedToken, api_token_issue, api_token_revoke

OBTAINED_TOKEN_NAME = "api/auth/token"


class ApiTokenSerializer(serializers.ModelSerializer):
    """A token as lists show it: never its key, which is not stored."""

    user = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "user", "name", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at", "revoked_reason"]
        read_only_fields = fields
        extra_kwargs = {"revoked_reason": {"allow_blank": True}}  # "" while the token lives: the schema's enum must hold it


class IssuedTokenSerializer(ApiTokenSerializer):
    """A new token with its key: shown this once."""

    token = serializers.CharField(
        read_only=True, help_text="The key: send it as 'Authorization: Token <key>'. It is not stored and cannot be shown again."
    )

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields

    @classmethod
    def of(cls, issued: IssuedToken) -> dict:
        return {**ApiTokenSerializer(issued.token).data, "token": issued.key}


class TokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="What the token is for.")
    expires_in_days = serializers.IntegerField(
        required=False, min_value=1, help_text="Lifetime in days: default RADTRUST_API_TOKEN_DAYS, at most RADTRUST_API_TOKEN_MAX_DAYS."
    )

    def validate_expires_in_days(self, value: int) -> int:
        if value > settings.RADTRUST_API_TOKEN_MAX_DAYS:
            raise ValidationError(f"A token lasts at most {settings.RADTRUST_API_TOKEN_MAX_DAYS} days (RADTRUST_API_TOKEN_MAX_DAYS).")
        return value


class TokenObtainSerializer(TokenCreateSerializer):
    username = serializers.CharField(max_length=150)  # the user model's length: longer names exist nowhere, and are not logged
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"}, write_only=True)
    name = serializers.CharField(max_length=100, required=False, default=OBTAINED_TOKEN_NAME)


class ApiTokenViewSet(ScopedViewSet, mixins.ListModelMixin, mixins.RetrieveModelMixin):
    """One's own API tokens (an officer's list holds everyone's); ``POST`` issues a new one."""

    access_resource = "api_token"
    selector = staticmethod(selectors.api_token_list)
    serializer_class = ApiTokenSerializer
    filterset_fields = ["user"]
    ordering_fields = ["created_at", "expires_at", "last_used_at"]

    @extend_schema(request=TokenCreateSerializer, responses={201: IssuedTokenSerializer})
    def create(self, request):
        form = TokenCreateSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        issued = api_token_issue(user=request.user, name=form.validated_data["name"], days=form.validated_data.get("expires_in_days"))
        return Response(IssuedTokenSerializer.of(issued), status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: ApiTokenSerializer})
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        return Response(ApiTokenSerializer(api_token_revoke(token=self.get_object())).data)


class TokenObtainView(APIView):
    """``POST`` a user name and password for a new expiring token; ``DELETE`` with a token revokes it.

    Failed passwords count towards the login lockout (django-axes): a locked-out user name and
    address get 429 with the reason, even with the right password.
    """

    authentication_classes = [ApiTokenAuthentication]  # no session: a password is the credential here

    def get_permissions(self):
        return [IsAuthenticated()] if self.request.method == "DELETE" else [AllowAny()]

    @extend_schema(
        request=TokenObtainSerializer,
        responses={
            200: IssuedTokenSerializer,
            400: OpenApiResponse(description="wrong user name or password"),
            429: OpenApiResponse(description="locked out"),
        },
    )
    def post(self, request):
        form = TokenObtainSerializer(data=request.data)
        form.is_valid(raise_exception=True)
        data = form.validated_data
        # The Django request, so that django-axes marks a lockout where its middleware looks.
        user = authenticate(request._request, username=data["username"], password=data["password"])
        if user is None:
            if getattr(request._request, "axes_locked_out", False):
                return lockout_response(request._request)
            raise ValidationError({"non_field_errors": ["Unable to log in with the user name and password given."]})
        issued = api_token_issue(user=user, name=data["name"], days=data.get("expires_in_days"))
        return Response(IssuedTokenSerializer.of(issued))

    @extend_schema(request=None, responses={204: None})
    def delete(self, request):
        api_token_revoke(token=request.auth, reason=TokenRevocation.SIGNED_OUT)
        return Response(status=status.HTTP_204_NO_CONTENT)
